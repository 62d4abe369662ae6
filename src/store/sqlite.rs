//! The embedded default: one SQLite file in WAL mode.
//!
//! Writes go through a single connection, so they queue in the process instead of failing with
//! SQLITE_BUSY; reads use a pool of their own and never wait for writes (WAL). `synchronous = FULL`
//! makes every acknowledged commit durable, through a process kill or a power loss.
//!
//! Creates are group-committed (`create_queue.rs`): one group at a time is written as one transaction with
//! a savepoint per identity (a row that conflicts or fails is rolled back alone), so under load one fsync
//! covers many creates.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::Acquire;
use sqlx::SqliteConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::identity::{
    Identity, IdentityChanges, IdentityPageQuery, IdentityUpsert, NewIdentity, RatelimitInput,
};
use crate::domain::ids::new_id;
use crate::domain::permission::RootKey;
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;
use crate::store::create_queue::{CreateOutcome, CreateQueue, CreateRequest, same_failure};
use crate::store::sql::{self, impl_store_with_shared_sql};

const READ_CONNECTIONS: u32 = 8;
/// Past this wait for a connection a request fails with 503 instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most creates one group commit takes at once.
const MAX_GROUP: usize = 256;

/// The conflict target is the partial unique index `identities_live_external_id` (same columns, any order).
const INSERT_IDENTITY: &str = "INSERT INTO identities (id, workspace_id, external_id, meta, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, external_id) WHERE deleted_at IS NULL DO NOTHING RETURNING id";
const LIVE_IDENTITY_ID_BY_EXTERNAL_ID: &str =
    "SELECT id FROM identities WHERE workspace_id = $1 AND external_id = $2 AND deleted_at IS NULL";

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    creates: CreateQueue,
}

impl SqliteStore {
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
        // One writer: one group commits at a time, while the next one gathers.
        let group_writer = writer.clone();
        let creates = CreateQueue::start(MAX_GROUP, 1, move |group| commit_group(group_writer.clone(), group));
        Ok(Self { reader, writer, creates })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

impl_store_with_shared_sql!(SqliteStore, sqlx::Sqlite);

/// One transaction for the whole group; each create in a savepoint of its own, so a create that conflicts
/// or fails is rolled back alone. Nothing of the group is committed if the transaction itself fails.
async fn commit_group(writer: SqlitePool, group: Vec<CreateRequest>) -> Vec<CreateOutcome> {
    match insert_group(&writer, &group).await {
        Ok(outcomes) => outcomes,
        Err(error) => group.iter().map(|_| Err(same_failure(&error))).collect(),
    }
}

/// Inserts the identity and its ratelimits inside the caller's transaction; `false` when a live identity
/// holds the externalId.
async fn insert_new_identity(
    connection: &mut SqliteConnection,
    workspace: &WorkspaceId,
    new: &NewIdentity,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let inserted: Option<String> = sqlx::query_scalar(INSERT_IDENTITY)
        .bind(id)
        .bind(workspace.as_str())
        .bind(&new.external_id)
        .bind(sql::to_json(&new.meta)?)
        .bind(now)
        .fetch_optional(&mut *connection)
        .await?;
    if inserted.is_some() && !new.ratelimits.is_empty() {
        SqliteStore::replace_ratelimits(connection, id, &new.ratelimits, now).await?;
    }
    Ok(inserted.is_some())
}

async fn insert_group(writer: &SqlitePool, group: &[CreateRequest]) -> Result<Vec<CreateOutcome>, StoreError> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(group.len());
    for request in group {
        let id = new_id("id");
        let mut row = tx.begin().await?;
        let inserted = insert_new_identity(&mut row, &request.workspace, &request.new, &id, sql::now_ms()).await;
        let outcome = match inserted {
            Ok(true) => {
                row.commit().await?;
                Ok(id)
            }
            Ok(false) => {
                row.rollback().await?;
                // One writer: the identity holding the externalId cannot vanish before this read.
                let holder = sqlx::query_scalar(LIVE_IDENTITY_ID_BY_EXTERNAL_ID)
                    .bind(request.workspace.as_str())
                    .bind(&request.new.external_id)
                    .fetch_optional(&mut *tx)
                    .await;
                match holder {
                    Ok(Some(existing_id)) => Err(StoreError::Conflict { existing_id }),
                    Ok(None) => Err(StoreError::Contended("the externalId was freed during the insert")),
                    Err(error) => Err(error.into()),
                }
            }
            Err(error) => {
                row.rollback().await?;
                Err(error)
            }
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}
