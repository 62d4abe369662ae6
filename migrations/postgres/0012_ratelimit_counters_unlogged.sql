-- Ratelimit counters need no durability: after a crash a limit may start its window over, as Unkey's do
-- (its counters live in memory). Unlogged, a counter's statement writes no WAL, so its commit does not
-- wait for an fsync, and a hot counter (an identity's, shared by all its keys) is held for the statement,
-- not for a disk flush. A standby holds no unlogged rows: after a failover counters start empty.
ALTER TABLE ratelimit_counters SET UNLOGGED;
