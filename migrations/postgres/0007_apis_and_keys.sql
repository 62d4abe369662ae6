-- APIs own keys; a key may belong to an identity. Deleting an API or a key is soft (deleted_at), as Unkey's.
CREATE TABLE apis (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    deleted_at   BIGINT
);
CREATE INDEX apis_by_workspace ON apis (workspace_id, id);

-- Only a key's hash is stored (SHA-256 of the whole key, standard base64, as Unkey stores it), never the
-- key. Ids are in the "C" collation, as identities' are, so that pages in id order agree with SQLite's.
-- identity_id names the identity the key was linked to, live or not: a key never moves to a later
-- identity with the same externalId. credits and ratelimits are kept for keys.verifyKey.
CREATE TABLE keys (
    id                TEXT COLLATE "C" PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id),
    api_id            TEXT COLLATE "C" NOT NULL REFERENCES apis (id),
    hash              TEXT NOT NULL UNIQUE,
    start             TEXT NOT NULL,
    name              TEXT,
    meta              TEXT,
    identity_id       TEXT COLLATE "C" REFERENCES identities (id),
    expires           BIGINT,
    enabled           BOOLEAN NOT NULL,
    credits           TEXT,
    ratelimits        TEXT NOT NULL DEFAULT '[]',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT,
    deleted_at        BIGINT
);
CREATE INDEX keys_by_api ON keys (api_id, id);
CREATE INDEX keys_by_identity ON keys (identity_id);
