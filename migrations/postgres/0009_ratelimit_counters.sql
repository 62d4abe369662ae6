-- Ratelimit counters shared by every node (keys.verifyKey): one row per limit name, counted key or
-- identity, and window length, holding the current fixed window's start and count. SQLite keeps its
-- counters in the memory of the one process that serves the file, so it has no such table.
CREATE TABLE ratelimit_counters (
    workspace_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    duration     BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, name, identifier, duration)
);
