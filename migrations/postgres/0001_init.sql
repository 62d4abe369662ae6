-- Same schema as migrations/sqlite; identity ids use the C collation so ORDER BY id is byte (ULID) order.
-- Times are unix milliseconds. Meta is JSON text. Ids are prefixed ULIDs, so ordering by id is creation order.
CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE root_keys (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    key_hash     TEXT NOT NULL UNIQUE,
    permissions  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE identities (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    external_id  TEXT COLLATE "C" NOT NULL,
    meta         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT,
    deleted_at   BIGINT
);

-- The arbiter of "already exists": one live identity per (workspace, externalId); tombstones do not count,
-- so a deleted externalId can be created again at once.
CREATE UNIQUE INDEX identities_live_external_id ON identities (workspace_id, external_id) WHERE deleted_at IS NULL;
CREATE INDEX identities_live_by_workspace ON identities (workspace_id, id) WHERE deleted_at IS NULL;

CREATE TABLE identity_ratelimits (
    id            TEXT PRIMARY KEY,
    identity_id   TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    name          TEXT COLLATE "C" NOT NULL,
    request_limit BIGINT NOT NULL,
    duration_ms   BIGINT NOT NULL,
    auto_apply    BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT,
    UNIQUE (identity_id, name)
);
