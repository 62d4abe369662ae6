-- PostgreSQL's 0009 creates the ratelimit counters that its nodes share. SQLite's one serving process keeps
-- its counters in memory, so this version changes nothing here; it keeps both databases' versions in step.
SELECT 1;
