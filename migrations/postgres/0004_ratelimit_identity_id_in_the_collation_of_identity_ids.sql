-- identities.id is COLLATE "C" and identity_ratelimits.identity_id was not, so `r.identity_id = i.id` had no
-- collation the (identity_id, name) index could serve: every read of an identity's ratelimits scanned the
-- whole ratelimit table. With one collation on both sides the index applies.
ALTER TABLE identity_ratelimits ALTER COLUMN identity_id TYPE TEXT COLLATE "C";
