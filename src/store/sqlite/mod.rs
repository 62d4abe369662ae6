//! The embedded default: one SQLite file in WAL mode.
//!
//! Writes go through a single connection, so they queue in the process instead of failing with
//! SQLITE_BUSY; reads use a pool of their own and never wait for writes (WAL). `synchronous = FULL`
//! makes every acknowledged commit durable, through a process kill or a power loss.
//!
//! Every identity write is group-committed (`group_commit.rs`): one transaction, a savepoint per write,
//! consecutive creates inserted by one statement (`identities.rs`), one fsync for all the writes waiting.

mod group_commit;
mod identities;
mod ratelimits;

use std::fs::File;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection};

use crate::store::apis::impl_apis;
use crate::store::backend::{Backend, WriteFuture};
use crate::store::caches::Caches;
use crate::store::changes::{Change, Written};
use crate::store::idempotency_keys::impl_idempotency_keys;
use crate::store::identities::impl_identities;
use crate::store::identity_cache::IdentityCache;
use crate::store::kept_connections::KeptConnections;
use crate::store::keys::impl_keys;
use crate::store::root_keys::impl_root_keys;
use crate::store::settings::impl_settings;
use crate::store::stats::connection_wait_histogram;
use crate::store::workspaces::impl_workspaces;
use crate::store::{Store, StoreError, StoreStats, within_deadline};
use group_commit::GroupWriter;
use ratelimits::MemoryCounters;

use crate::domain::ratelimit::{RatelimitCheck, RatelimitOutcome};
use crate::store::Ratelimits;
use crate::store::ratelimits::ENDED_FOR_MS;

const READ_CONNECTIONS: usize = 8;
/// Bounds only the wait for a connection at startup: every later use is bounded by `DATABASE_DEADLINE`.
const ACQUIRE_TIMEOUT: Duration = crate::store::DATABASE_DEADLINE;

pub struct SqliteStore {
    /// Kept without sqlx's release ping (`store/kept_connections.rs`), a second hand-off per read.
    reader: KeptConnections<SqliteConnection>,
    writer: SqlitePool,
    writes: GroupWriter,
    connection_waits: Histogram,
    /// Set when this process serves the database and holds its lock file.
    serving: Option<Serving>,
    ratelimit_counters: MemoryCounters,
}

struct Serving {
    caches: Caches,
    lock: Mutex<Option<File>>,
}

impl SqliteStore {
    /// Opens the database for `sigil serve`: takes its lock file, so that no other `sigil serve` uses the same
    /// file, and keeps identities it read in memory, since every write to them now passes through here.
    /// (`sigil root-key create` may still open the file alongside: it writes no identity.)
    pub async fn open_for_serving(url: &str) -> anyhow::Result<Self> {
        let mut store = Self::open(url).await?;
        let path = SqliteConnectOptions::from_str(url)?.get_filename().to_owned();
        let lock_path = format!("{}-sigil.lock", path.display());
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot create the lock file {lock_path:?}"))?;
        if lock.try_lock().is_err() {
            store.close_pools().await;
            anyhow::bail!(
                "another sigil serve is using {path:?} (it holds {lock_path:?}); several nodes need PostgreSQL"
            );
        }
        store.serving =
            Some(Serving { caches: Caches::new(IdentityCache::for_the_only_writer()), lock: Mutex::new(Some(lock)) });
        Ok(store)
    }

    /// Opens the database for one administrative command.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // Each connection to an in-memory database would see a database of its own.
        anyhow::ensure!(
            options.get_filename() != Path::new(":memory:"),
            "in-memory SQLite is not supported: name a file, e.g. sqlite://sigil.db"
        );
        // Neither pool pings a connection before handing it out (sqlx's default): a SQLite connection is a
        // thread of this process, so the ping proves nothing and costs a thread handoff on every query.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open SQLite database {:?}", options.get_filename()))?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await.context("migrating the SQLite database")?;
        let connection_waits = connection_wait_histogram();
        // A reader's thread runs ahead of a row stream by this many rows: with sqlx's 50, keys that each bring
        // a megabyte of meta and their identity's another could be 100 MB held at once while a page is read.
        let reader =
            KeptConnections::in_process(options.row_buffer_size(4), READ_CONNECTIONS, connection_waits.clone());
        let writes =
            GroupWriter::start(writer.clone(), connection_waits.clone()).context("starting the SQLite committer")?;
        Ok(Self {
            reader,
            writer,
            writes,
            connection_waits,
            serving: None,
            ratelimit_counters: MemoryCounters::default(),
        })
    }

    /// Closes both pools and gives up the lock file, so that the next `sigil serve` may start at once.
    async fn close_pools(&self) {
        self.writer.close().await;
        self.reader.close().await;
        if let Some(serving) = &self.serving {
            serving.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        }
    }
}

impl Backend for SqliteStore {
    type Connection = SqliteConnection;

    /// Every write passes the one writer in turn: two never run at once.
    const HOLD_IDEMPOTENCY_KEY: Option<&'static str> = None;

    async fn write<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut SqliteConnection) -> WriteFuture<'c, Written<T>> + Send + Sync + 'static,
    {
        let written = self.writes.run(write).await?;
        self.apply(written.changes).await;
        Ok(written.outcome)
    }

    async fn write_one_statement<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut SqliteConnection) -> WriteFuture<'c, Written<T>> + Send + Sync + 'static,
    {
        let written = self.writes.run_one_statement(write).await?;
        self.apply(written.changes).await;
        Ok(written.outcome)
    }

    async fn on_reader<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        T: Send,
        Work: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send,
    {
        self.reader.run(work).await
    }

    async fn on_writer<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        T: Send,
        Work: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send,
    {
        within_deadline(async { work(&mut *timed_acquire(&self.writer, &self.connection_waits).await?).await }).await
    }

    fn caches(&self) -> Option<&Caches> {
        self.serving.as_ref().map(|serving| &serving.caches)
    }

    /// This process is the only one that writes identities, so only its own memory can be stale. (A root key
    /// revoked by `sigil root-key revoke` beside it is read again within the time to live.)
    async fn apply(&self, changes: Vec<Change>) {
        if let Some(caches) = self.caches() {
            changes.iter().for_each(|change| caches.apply(change));
        }
    }

    /// A write that failed was not stored: a group that fails commits nothing.
    fn write_failed(&self, _error: &StoreError) {}
}

impl_workspaces!(SqliteStore);
impl_root_keys!(SqliteStore);
impl_identities!(SqliteStore);
impl_idempotency_keys!(SqliteStore);
impl_apis!(SqliteStore);
impl_keys!(SqliteStore);
impl_settings!(SqliteStore);

#[async_trait::async_trait]
impl Ratelimits for SqliteStore {
    async fn take_ratelimits(
        &self,
        checks: &[RatelimitCheck],
        now_ms: i64,
    ) -> Result<Vec<RatelimitOutcome>, StoreError> {
        self.ratelimit_counters.take(checks, now_ms)
    }

    async fn purge_ended_ratelimit_counters(&self, now_ms: i64) -> Result<u64, StoreError> {
        // All at once: a sweep of memory, not a statement that holds the writer.
        Ok(self.ratelimit_counters.purge_ended(now_ms, ENDED_FOR_MS))
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn stats(&self) -> StoreStats {
        StoreStats {
            identity_cache: self.caches().map(|caches| caches.identities.stats()),
            queued: vec![("sqlite_writes", self.writes.queued())],
            connection_waits: self.connection_waits.clone(),
        }
    }

    async fn close(&self) {
        self.close_pools().await;
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.on_reader(|connection| {
            Box::pin(async move { Ok(sqlx::query("SELECT 1").execute(connection).await.map(drop)?) })
        })
        .await
    }
}

/// A connection of `pool`, noting in `waits` how long it took to get.
pub(super) async fn timed_acquire(pool: &SqlitePool, waits: &Histogram) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
    let started = std::time::Instant::now();
    let connection = pool.acquire().await;
    waits.observe(started.elapsed().as_secs_f64());
    connection
}
