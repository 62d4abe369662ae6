-- PostgreSQL's 0012 makes its shared ratelimit counters unlogged. SQLite keeps its counters in memory, so
-- this version changes nothing here; it keeps both databases' versions in step.
SELECT 1;
