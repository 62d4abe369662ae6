-- One index serves what two did: the unique live-externalId index and the folded one behind a 404's case
-- hint, as SQLite's 0013 says. The folded externalId is a stored column, as SQLite's is a generated one, so
-- that both databases' statements name it alike. Adding it rewrites the table, and the index build blocks
-- writes to identities while it runs: upgrade at a quiet time.
--
-- It is folded in the database's default collation, as `lower($1)` folds the externalId a lookup is given:
-- folded in the "C" collation of external_id, `ÄB` was stored as `Äb` and looked up as `äb`, and no
-- identity whose externalId holds a capital beyond ASCII could be found by it. Compared and indexed, it is
-- "C", bytes.
ALTER TABLE identities ADD COLUMN external_id_folded TEXT COLLATE "C"
    GENERATED ALWAYS AS (lower(external_id COLLATE "default")) STORED;
DROP INDEX identities_live_external_id;
DROP INDEX identities_live_external_id_folded;
CREATE UNIQUE INDEX identities_live_external_id ON identities (external_id_folded, external_id, workspace_id)
    WHERE deleted_at IS NULL;
