-- An identity's ratelimits move into the identity's row, as a JSON array in their wire shape sorted by name.
-- They are only ever read and written whole, with their identity, and the join cost every read: a list
-- page of 100 cost PostgreSQL twice what the same page from one table does (pgbench, c = 32).
ALTER TABLE identities ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
UPDATE identities i SET ratelimits = r.ratelimits
FROM (
    SELECT identity_id, json_agg(json_build_object('id', id, 'name', name, 'limit', request_limit,
               'duration', duration_ms, 'autoApply', auto_apply) ORDER BY name)::text AS ratelimits
    FROM identity_ratelimits GROUP BY identity_id
) r
WHERE r.identity_id = i.id;
DROP TABLE identity_ratelimits;
