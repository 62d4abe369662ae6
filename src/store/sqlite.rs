//! The embedded default: one SQLite file in WAL mode.
//!
//! Writes go through a single connection, so they queue in the process instead of failing with
//! SQLITE_BUSY; reads use a pool of their own and never wait for writes (WAL). `synchronous = FULL`
//! makes every acknowledged commit durable, through a process kill or a power loss.
//!
//! Every identity write is group-committed (`sqlite_writes.rs`): one transaction, a savepoint per write,
//! one fsync for all the writes waiting.

use std::fs::File;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::value::RawValue;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection};

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::identity::{
    Identity, IdentityChanges, IdentityPageQuery, IdentityUpsert, NewIdentity, RatelimitInput, replace_ratelimits,
};
use crate::domain::ids::new_id;
use crate::domain::permission::RootKey;
use crate::domain::workspace::WorkspaceId;
use crate::store::create_queue::CreateOutcome;
use crate::store::identity_cache::IdentityCache;
use crate::store::sql::WriteFuture;
use crate::store::sql::{self, impl_store_with_shared_sql};
use crate::store::sqlite_writes::GroupWriter;
use crate::store::stats::connection_wait_histogram;
use crate::store::{StoreError, within_deadline};

const READ_CONNECTIONS: u32 = 8;
/// Bounds only the wait for a connection at startup: every later use is bounded by `DATABASE_DEADLINE`.
const ACQUIRE_TIMEOUT: Duration = crate::store::DATABASE_DEADLINE;

/// The conflict target is the partial unique index `identities_live_external_id` (same columns, any order).
const INSERT_IDENTITY: &str = "INSERT INTO identities (id, workspace_id, external_id, meta, ratelimits, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id, external_id) WHERE deleted_at IS NULL DO NOTHING RETURNING id";
const LIVE_IDENTITY_ID_BY_EXTERNAL_ID: &str =
    "SELECT id FROM identities WHERE workspace_id = $1 AND external_id = $2 AND deleted_at IS NULL";

/// A list page as one row: its identities as one JSON array of `[id, externalId, meta, ratelimits]`, meta
/// as the text it is stored as (inside the page, a meta nested as deep as a create accepts would pass the
/// JSON parser's depth limit). sqlx hands each row from SQLite's thread to the caller's on its own, and
/// those handoffs were most of a page's cost: as one row, pages of 100 went from about 4,000 to 6,500 a
/// second. The aggregate names no order, since asking for one made SQLite sort again what it had read in
/// order; [`SqliteStore::list_page`] puts the page in order.
const LIST_PAGE: &str = concat!(
    "SELECT json_group_array(json_array(i.id, i.external_id, i.meta, json(i.ratelimits))) FROM ",
    sql::identity_page!()
);

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    writes: GroupWriter,
    connection_waits: Histogram,
    /// Set when this process serves the database and holds its lock file.
    serving: Option<Serving>,
}

struct Serving {
    identities: IdentityCache,
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
            Some(Serving { identities: IdentityCache::for_the_only_writer(), lock: Mutex::new(Some(lock)) });
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
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let connection_waits = connection_wait_histogram();
        let writes = GroupWriter::start(writer.clone(), connection_waits.clone());
        Ok(Self { reader, writer, writes, connection_waits, serving: None })
    }

    fn identity_cache(&self) -> Option<&IdentityCache> {
        self.serving.as_ref().map(|serving| &serving.identities)
    }

    /// This process is the only one writing, so only its own reads can be stale.
    fn identity_changed(&self, workspace: &WorkspaceId, identity_id: &str, external_id: &str) {
        if let Some(cache) = self.identity_cache() {
            cache.changed(workspace, identity_id, external_id);
        }
    }

    /// A write that failed was not stored: a group that fails commits nothing.
    fn write_failed(&self, _error: &StoreError) {}

    async fn list_page(&self, workspace: &WorkspaceId, query: &IdentityPageQuery) -> Result<Vec<Identity>, StoreError> {
        let page: String = within_deadline(async {
            Ok(sqlx::query_scalar(LIST_PAGE)
                .bind(workspace.as_str())
                .bind(query.cursor.as_deref())
                .bind(query.search_pattern.as_deref())
                .bind(query.limit)
                .fetch_one(&mut *timed_acquire(&self.reader, &self.connection_waits).await?)
                .await?)
        })
        .await?;
        let page: Vec<(String, String, String, Box<RawValue>)> =
            serde_json::from_str(&page).map_err(|error| StoreError::InvalidData(format!("list page: {error}")))?;
        let mut identities = page
            .into_iter()
            .map(|(id, external_id, meta, ratelimits)| {
                let ratelimits = sql::checked_ratelimits(&id, ratelimits)?;
                Ok(Identity { meta: sql::stored_meta(&id, meta)?, id, external_id, ratelimits })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        identities.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(identities)
    }

    /// Closes both pools and gives up the lock file, so that the next `sigil serve` may start at once.
    async fn close_pools(&self) {
        self.writer.close().await;
        self.reader.close().await;
        if let Some(serving) = &self.serving {
            serving.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        }
    }

    async fn create(&self, workspace: &WorkspaceId, new: &NewIdentity) -> CreateOutcome {
        self.writes.run_one_statement(create(workspace.clone(), new.clone())).await
    }

    async fn write<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + Sync + 'static,
    {
        self.writes.run(write).await
    }

    async fn write_one_statement<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + Sync + 'static,
    {
        self.writes.run_one_statement(write).await
    }

    async fn on_reader<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        Work: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T>,
    {
        within_deadline(async { work(&mut *timed_acquire(&self.reader, &self.connection_waits).await?).await }).await
    }

    async fn on_writer<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        Work: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T>,
    {
        within_deadline(async { work(&mut *timed_acquire(&self.writer, &self.connection_waits).await?).await }).await
    }

    fn queued(&self) -> Vec<(&'static str, usize)> {
        vec![("sqlite_writes", self.writes.queued())]
    }
}

impl_store_with_shared_sql!(SqliteStore, sqlx::Sqlite);

/// A connection of `pool`, noting in `waits` how long it took to get.
pub(super) async fn timed_acquire(pool: &SqlitePool, waits: &Histogram) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
    let started = std::time::Instant::now();
    let connection = pool.acquire().await;
    waits.observe(started.elapsed().as_secs_f64());
    connection
}

fn create(
    workspace: WorkspaceId,
    new: NewIdentity,
) -> impl for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, String> + Send + 'static {
    move |connection| Box::pin(async move { create_in(connection, &workspace, &new).await })
}

/// Inserts the identity, ratelimits and all, with one statement; a live identity holding the externalId is a
/// conflict. Nothing fallible follows a successful insert.
async fn create_in(connection: &mut SqliteConnection, workspace: &WorkspaceId, new: &NewIdentity) -> CreateOutcome {
    let id = new_id("id");
    let inserted: Option<String> = sqlx::query_scalar(INSERT_IDENTITY)
        .bind(&id)
        .bind(workspace.as_str())
        .bind(&new.external_id)
        .bind(sql::to_json(&new.meta)?)
        .bind(sql::ratelimits_json(&replace_ratelimits(&[], &new.ratelimits))?)
        .bind(sql::now_ms())
        .fetch_optional(&mut *connection)
        .await?;
    if inserted.is_some() {
        return Ok(id);
    }
    // One writer: the identity holding the externalId cannot vanish before this read.
    let holder: Option<String> = sqlx::query_scalar(LIVE_IDENTITY_ID_BY_EXTERNAL_ID)
        .bind(workspace.as_str())
        .bind(&new.external_id)
        .fetch_optional(&mut *connection)
        .await?;
    match holder {
        Some(existing_id) => Err(StoreError::Conflict { existing_id }),
        None => Err(StoreError::Contended("the externalId was freed during the insert")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_page_seeks_to_its_cursor_through_the_workspace_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            SqliteStore::open(&format!("sqlite://{}", dir.path().join("sigil.db").display())).await.expect("open");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {LIST_PAGE}"))
            .bind("ws_1")
            .bind(Some("id_5"))
            .bind(None::<&str>)
            .bind(101_i64)
            .fetch_all(&store.reader)
            .await
            .expect("explain");
        let plan: Vec<&str> = plan.iter().map(|(_, _, _, detail)| detail.as_str()).collect();
        assert!(
            plan.iter().any(|step| step.contains("identities_live_by_workspace (workspace_id=? AND id>?)")),
            "{plan:#?}"
        );
        store.close_pools().await;
    }
}
