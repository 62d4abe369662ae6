//! Storage: one trait, one implementation per database. Handlers hold an `Arc<dyn Store>` and never know
//! which database answers. Every method takes the caller's workspace first, so no query can cross
//! workspaces; the exceptions are the root-key lookup (which is how a request learns its workspace) and the
//! purge of expired idempotency records (housekeeping, which returns no data).

mod create_queue;
mod identity_cache;
mod kept_connections;
mod postgres;
mod postgres_changes;
mod sql;
mod sqlite;
mod sqlite_writes;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::identity::{Identity, IdentityChanges, IdentityPageQuery, IdentityUpsert, NewIdentity};
use crate::domain::permission::RootKey;
use crate::domain::workspace::WorkspaceId;

pub use identity_cache::{IdentityCacheStats, TIME_TO_LIVE as CACHED_IDENTITY_TIME_TO_LIVE};
pub use postgres::PostgresStore;
pub use postgres_changes::listener_name as identity_changes_listener_name;
pub use sqlite::SqliteStore;
pub use stats::StoreStats;

/// The most one unit of work on the database may take, from waiting for a connection to its last reply: a
/// request's read, one write's transaction, a group of writes, one batch of change notices. Past it the work
/// fails with [`StoreError::TimedOut`] (503) and its connection is closed, never reused. The slowest
/// operation's p99 in the benchmark is under 10 ms.
pub const DATABASE_DEADLINE: Duration = Duration::from_secs(5);

/// Runs `work` within [`DATABASE_DEADLINE`]; past it, `work` is dropped (and with it any connection it
/// held, which its owner then closes) and the answer is [`StoreError::TimedOut`].
pub(crate) async fn within_deadline<T>(
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    within_deadline_at(tokio::time::Instant::now() + DATABASE_DEADLINE, work).await
}

/// Like [`within_deadline`], for work whose deadline began earlier: a queued write's, when it was queued.
pub(crate) async fn within_deadline_at<T>(
    deadline: tokio::time::Instant,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout_at(deadline, work).await.unwrap_or(Err(StoreError::TimedOut))
}

/// What can go wrong in storage, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A live identity in the workspace already has this externalId.
    #[error("a live identity with this externalId already exists ({existing_id})")]
    Conflict { existing_id: String },
    /// The database did not answer in time or the connection broke; the request may succeed if retried.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database did not answer within the deadline of one unit of work (`DATABASE_DEADLINE`); a
    /// write cut short by it may or may not have committed.
    #[error("the database did not answer in time")]
    TimedOut,
    /// The database has no room left for the write (SQLite's disk is full); reads still work, and writes
    /// work again once space is freed.
    #[error("database storage is full: {0}")]
    StorageFull(#[source] sqlx::Error),
    /// Any other database failure: a bug or a broken database.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The database aborted the transaction to resolve a race (serialization failure, deadlock, SQLite busy);
    /// it was rolled back, so running it again is safe. Retried a bounded number of times before surfacing.
    #[error("transient database failure: {0}")]
    Transient(#[source] sqlx::Error),
    /// The operation lost a race too many times in a row; retrying the request can succeed.
    #[error("contended: {0}")]
    Contended(&'static str),
    /// A stored value could not be read back (e.g. meta that is not JSON).
    #[error("stored data is invalid: {0}")]
    InvalidData(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error),
            sqlx::Error::Database(database) => match cause(database.code().as_deref()) {
                Cause::Transient => Self::Transient(error),
                Cause::TimedOut => Self::TimedOut,
                Cause::Unavailable => Self::Unavailable(error),
                Cause::StorageFull => Self::StorageFull(error),
                Cause::Other => Self::Database(error),
            },
            _ => Self::Database(error),
        }
    }
}

enum Cause {
    Transient,
    TimedOut,
    Unavailable,
    StorageFull,
    Other,
}

/// Sorts a database's error code: PostgreSQL's SQLSTATE (always five characters) or SQLite's result code
/// (at most four digits; an extended code such as `SQLITE_IOERR_FSYNC`, 1034, has its primary code in the
/// low byte).
fn cause(code: Option<&str>) -> Cause {
    let Some(code) = code else { return Cause::Other };
    if code.len() == 5 {
        return match code {
            // serialization_failure, deadlock_detected
            "40001" | "40P01" => Cause::Transient,
            // query_canceled: this connection's own statement_timeout
            "57014" => Cause::TimedOut,
            // read_only_sql_transaction (a standby after a failover), statement_completion_unknown
            "25006" | "40003" => Cause::Unavailable,
            // connection exceptions, insufficient resources (too many connections), operator intervention
            // (shutdown, starting up), system errors
            _ if ["08", "53", "57", "58"].contains(&&code[..2]) => Cause::Unavailable,
            _ => Cause::Other,
        };
    }
    match code.parse::<i64>().map(|code| code & 0xff) {
        // SQLITE_BUSY, SQLITE_LOCKED
        Ok(5 | 6) => Cause::Transient,
        // SQLITE_FULL
        Ok(13) => Cause::StorageFull,
        // SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN
        Ok(7 | 8 | 10 | 14) => Cause::Unavailable,
        _ => Cause::Other,
    }
}

impl StoreError {
    /// What failed in the database, named for operators' metrics; `None` when the database did its job and
    /// the operation refused (a conflict, a race lost too often).
    pub fn failure_kind(&self) -> Option<&'static str> {
        match self {
            Self::TimedOut => Some("timeout"),
            Self::Unavailable(_) => Some("unavailable"),
            Self::StorageFull(_) => Some("storage_full"),
            Self::Transient(_) => Some("transient"),
            Self::InvalidData(_) => Some("invalid_data"),
            Self::Database(_) => Some("other"),
            Self::Conflict { .. } | Self::Contended(_) => None,
        }
    }

    /// The same kind of error, for each of several callers that one failure (of a group commit) answers:
    /// sqlx errors cannot be cloned.
    pub(crate) fn same_kind(&self) -> Self {
        let same = |error: &sqlx::Error| match error {
            sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
            other => sqlx::Error::Protocol(format!("group commit failed: {other}")),
        };
        match self {
            Self::Conflict { existing_id } => Self::Conflict { existing_id: existing_id.clone() },
            Self::Unavailable(error) => Self::Unavailable(same(error)),
            Self::TimedOut => Self::TimedOut,
            Self::StorageFull(error) => Self::StorageFull(same(error)),
            Self::Database(error) => Self::Database(same(error)),
            Self::Transient(error) => Self::Transient(same(error)),
            Self::Contended(reason) => Self::Contended(reason),
            Self::InvalidData(reason) => Self::InvalidData(reason.clone()),
        }
    }
}

/// The operations Sigil needs from a database. Both implementations share their SQL (`sql.rs`).
#[async_trait]
pub trait Store: Send + Sync {
    /// Whether any workspace exists yet (an empty database gets a first workspace and key on `serve`).
    async fn has_workspaces(&self) -> Result<bool, StoreError>;

    /// The workspace with this name, created if missing; `true` when this call created it.
    async fn ensure_workspace(&self, name: &str) -> Result<(WorkspaceId, bool), StoreError>;

    /// Stores a root key by its hash; the plaintext never reaches the store.
    async fn create_root_key(
        &self,
        workspace: &WorkspaceId,
        key_hash: &str,
        permissions: &[String],
    ) -> Result<(), StoreError>;

    /// The root key with this hash, if any: how a request learns its workspace.
    async fn find_root_key(&self, key_hash: &str) -> Result<Option<RootKey>, StoreError>;

    /// Inserts an identity and its ratelimits atomically and returns its id. The database's unique index
    /// decides a collision: [`StoreError::Conflict`] names the live identity that holds the externalId.
    async fn create_identity(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError>;

    /// Creates the identity, or updates the sent parts of the live one with this externalId; one statement
    /// decides, so concurrent upserts never conflict. `true` when this call created it.
    async fn upsert_identity(
        &self,
        workspace: &WorkspaceId,
        upsert: &IdentityUpsert,
    ) -> Result<(Identity, bool), StoreError>;

    /// The live identity whose id, or else whose externalId, is `identity`.
    async fn find_identity(&self, workspace: &WorkspaceId, identity: &str) -> Result<Option<Identity>, StoreError>;

    /// Live identities in id (creation) order, at most `query.limit` of them.
    async fn list_identities(
        &self,
        workspace: &WorkspaceId,
        query: &IdentityPageQuery,
    ) -> Result<Vec<Identity>, StoreError>;

    /// Replaces meta and/or ratelimits in one transaction. Ratelimits are matched by name and keep their ids.
    /// `None` when no live identity matches.
    async fn update_identity(
        &self,
        workspace: &WorkspaceId,
        identity: &str,
        changes: &IdentityChanges,
    ) -> Result<Option<Identity>, StoreError>;

    /// Soft-deletes the live identity; its externalId is free again at once. `false` when none matched.
    async fn delete_identity(&self, workspace: &WorkspaceId, identity: &str) -> Result<bool, StoreError>;

    /// Claims an Idempotency-Key for a request with `fingerprint` until `lease_until` (unix ms). `None`: the
    /// caller holds the key and must complete or release it. `Some`: the live record that holds it.
    async fn claim_idempotency_key(
        &self,
        workspace: &WorkspaceId,
        key: &str,
        fingerprint: &str,
        lease_until: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// The live (unexpired) record of a key.
    async fn find_idempotency_key(
        &self,
        workspace: &WorkspaceId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Stores the response of the request that holds the key, to be replayed until `keep_until` (unix ms).
    async fn complete_idempotency_key(
        &self,
        workspace: &WorkspaceId,
        key: &str,
        response: &StoredResponse,
        keep_until: i64,
    ) -> Result<(), StoreError>;

    /// Frees a claimed key whose request produced nothing worth replaying.
    async fn release_idempotency_key(&self, workspace: &WorkspaceId, key: &str) -> Result<(), StoreError>;

    /// Deletes expired idempotency records of every workspace; returns how many.
    async fn purge_expired_idempotency_keys(&self) -> Result<u64, StoreError>;

    /// What operators see of the store on `/metrics`: its identity cache, queues and connection waits.
    fn stats(&self) -> StoreStats;

    /// Waits for in-flight queries and closes every connection.
    async fn close(&self);
}

/// Opens (creating if needed) and migrates the database named by `url` (`sqlite://PATH` or `postgres://…`)
/// for `sigil serve`, which keeps the identities it reads in memory. A SQLite file is then this process's
/// alone (see [`SqliteStore::open_for_serving`]); PostgreSQL nodes hear of each other's changes.
pub async fn open_for_serving(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match scheme(url)? {
        Backend::Sqlite => Ok(Arc::new(SqliteStore::open_for_serving(url).await?)),
        Backend::Postgres => Ok(Arc::new(PostgresStore::open_for_serving(url).await?)),
    }
}

/// Opens (creating if needed) and migrates the database named by `url` for one administrative command,
/// which may run beside a `sigil serve` on the same database.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    match scheme(url)? {
        Backend::Sqlite => Ok(Arc::new(SqliteStore::open(url).await?)),
        Backend::Postgres => Ok(Arc::new(PostgresStore::open(url).await?)),
    }
}

enum Backend {
    Sqlite,
    Postgres,
}

fn scheme(url: &str) -> anyhow::Result<Backend> {
    let scheme = url.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some("sqlite") => Ok(Backend::Sqlite),
        Some("postgres" | "postgresql") => Ok(Backend::Postgres),
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
    fn error_codes_sort_into_what_the_caller_should_do() {
        use super::{Cause, cause};
        let sorted = |code| std::mem::discriminant(&cause(Some(code)));
        let is = |expected: Cause| std::mem::discriminant(&expected);
        for (code, expected) in [
            ("40001", Cause::Transient),
            ("40P01", Cause::Transient),
            ("57014", Cause::TimedOut),
            ("57P01", Cause::Unavailable),
            ("57P03", Cause::Unavailable),
            ("08006", Cause::Unavailable),
            ("53300", Cause::Unavailable),
            ("25006", Cause::Unavailable),
            ("23505", Cause::Other),
            ("42P01", Cause::Other),
            ("5", Cause::Transient),
            ("517", Cause::Transient),
            ("773", Cause::Transient),
            ("13", Cause::StorageFull),
            ("1034", Cause::Unavailable),
            ("8", Cause::Unavailable),
            ("19", Cause::Other),
            ("2067", Cause::Other),
        ] {
            assert_eq!(sorted(code), is(expected), "{code}");
        }
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let sqlite = migration_names("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, migration_names("postgres"));
    }
}
