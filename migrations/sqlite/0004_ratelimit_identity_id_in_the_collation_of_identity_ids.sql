-- PostgreSQL only: there, identities.id and identity_ratelimits.identity_id had different collations. SQLite
-- compares both with BINARY already. Kept so that both backends share one migration history.
SELECT 1;
