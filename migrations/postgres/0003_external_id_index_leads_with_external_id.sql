-- Lead the live-externalId index with external_id, so it is the only index that fully matches an
-- externalId lookup. With workspace_id first it tied with identities_live_by_workspace, and PostgreSQL,
-- before the first ANALYZE of a freshly grown table, could pick the latter and scan the whole workspace.
-- ON CONFLICT (workspace_id, external_id) infers this index whatever the column order.
DROP INDEX identities_live_external_id;
CREATE UNIQUE INDEX identities_live_external_id ON identities (external_id, workspace_id) WHERE deleted_at IS NULL;
