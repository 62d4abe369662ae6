//! Storage: one trait per resource, one implementation per database. Handlers hold an `Arc<dyn Store>` and
//! never know which database answers.
//!
//! A resource (`identities.rs`, `apis.rs`, `keys.rs`, `root_keys.rs`, `workspaces.rs`, `idempotency_keys.rs`) holds its trait, the
//! SQL both databases run for it and the one implementation of that SQL, written against the [`Backend`]
//! contract (`backend.rs`). A backend (`sqlite/`, `postgres/`) holds its connections, how it commits, and a
//! file per resource for what it does its own way. Every method takes the caller's workspace first, so no query can cross
//! workspaces; the exceptions are the root-key lookup (which is how a request learns its workspace) and the
//! purge of expired idempotency records (housekeeping, which returns no data).

mod apis;
mod backend;
mod caches;
mod changes;
mod combiner;
mod error;
mod idempotency_keys;
mod identities;
mod identity_cache;
mod kept_connections;
mod key_cache;
mod keys;
mod postgres;
mod ratelimits;
mod redis_counters;
mod root_key_cache;
mod root_keys;
mod settings;
mod sqlite;
mod stats;
mod workspaces;

use std::sync::Arc;

use async_trait::async_trait;

pub use apis::Apis;
pub use backend::{DATABASE_DEADLINE, now_ms, within_deadline, within_deadline_at};
pub use combiner::Combiner;
pub use error::StoreError;
pub use idempotency_keys::{Answer, IdempotencyKeys, PURGE_BATCH, Recorded, Recording};
pub use identities::Identities;
pub use identity_cache::{IdentityCacheStats, TIME_TO_LIVE as CACHED_IDENTITY_TIME_TO_LIVE};
pub use keys::{
    CreditSpends, CreditsSpent, KeyPage, KeyUpdate, Keys, KeysOf, NewKey, StoredKey, credit_spends, parse_credits,
};
pub use postgres::PostgresStore;
pub use postgres::changes::listener_name as identity_changes_listener_name;
pub use ratelimits::{ENDED_FOR_MS as RATELIMIT_COUNTERS_KEPT_AFTER_THEIR_END_MS, Ratelimits};
pub use redis_counters::RedisCounters;
pub use root_keys::RootKeys;
pub use settings::Settings;
pub use sqlite::SqliteStore;
pub use stats::StoreStats;
pub use workspaces::Workspaces;

/// Everything Sigil keeps, one resource at a time (lldap's shape): each resource is a trait of its own, in a
/// file of its own with the SQL both databases run for it, and a store is all of them over one database.
#[async_trait]
pub trait Store:
    Workspaces + RootKeys + Identities + Apis + Keys + IdempotencyKeys + Ratelimits + Settings + Send + Sync
{
    /// What operators see of the store on `/metrics`: its identity cache, queues and connection waits.
    fn stats(&self) -> StoreStats;

    /// Whether the database answers a query now (`/v2/readiness`).
    async fn ready(&self) -> Result<(), StoreError>;

    /// Waits for in-flight queries and closes every connection.
    async fn close(&self);
}

/// Opens (creating if needed) and migrates the database named by `url` (`sqlite://PATH` or `postgres://…`)
/// for `sigil serve`, which keeps the identities it reads in memory. A SQLite file is then this process's
/// alone (see [`SqliteStore::open_for_serving`]); PostgreSQL nodes hear of each other's changes.
pub async fn open_for_serving(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match scheme(url)? {
        DatabaseKind::Sqlite => Ok(Arc::new(SqliteStore::open_for_serving(url).await?)),
        DatabaseKind::Postgres => Ok(Arc::new(PostgresStore::open_for_serving(url).await?)),
    }
}

/// Opens (creating if needed) and migrates the database named by `url` for one administrative command,
/// which may run beside a `sigil serve` on the same database.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match scheme(url)? {
        DatabaseKind::Sqlite => Ok(Arc::new(SqliteStore::open(url).await?)),
        DatabaseKind::Postgres => Ok(Arc::new(PostgresStore::open(url).await?)),
    }
}

enum DatabaseKind {
    Sqlite,
    Postgres,
}

fn scheme(url: &str) -> anyhow::Result<DatabaseKind> {
    let scheme = url.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some("sqlite") => Ok(DatabaseKind::Sqlite),
        Some("postgres" | "postgresql") => Ok(DatabaseKind::Postgres),
        _ => anyhow::bail!(
            "unsupported database URL scheme {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
            scheme.unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn migration_names(backend: &str) -> Vec<String> {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .expect("migrations folder")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let sqlite = migration_names("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, migration_names("postgres"));
    }
}
