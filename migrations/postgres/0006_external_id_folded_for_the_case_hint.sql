-- A getIdentity that finds no externalId looks for one that differs only in case, to say so in its 404:
-- case sensitivity is the most common mistake behind that 404. Without this index the look would read every
-- identity of the workspace, on every miss.
CREATE INDEX identities_live_external_id_folded ON identities (workspace_id, lower(external_id))
    WHERE deleted_at IS NULL;
-- Not CONCURRENTLY: nodes starting together wait for the migration under sqlx's advisory lock, and a
-- concurrent build waits for their waiting statements in turn, which PostgreSQL ends as a deadlock (seen
-- in the test suite). The build blocks writes to identities while it runs: upgrade at a quiet time.
