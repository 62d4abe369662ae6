-- Facts about the deployment that every node must agree on, by name: `record_key_check`, a one-way check
-- value of the record key that seals createKey's idempotency records, so that a node given another key
-- refuses to start instead of failing those retries.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
