-- identities.listKeys pages through an identity's keys in id order: with the id in the index, a page is a
-- range scan, not a sort of every key the identity has.
DROP INDEX keys_by_identity;
CREATE INDEX keys_by_identity ON keys (identity_id, id);
