-- One row per Idempotency-Key a workspace used. While the first request runs, status is NULL and expires_at
-- is a short lease (so a crashed node does not block the key for long); once answered, expires_at is the
-- retention deadline. A claim may take over any row whose expires_at has passed.
CREATE TABLE idempotency_keys (
    workspace_id    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    status          INTEGER,
    response_body   TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, idempotency_key)
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
