//! The embedded default: one SQLite file in WAL mode.
//!
//! Writes go through a single connection, so they queue in the process instead of failing with
//! SQLITE_BUSY; reads use a pool of their own and never wait for writes (WAL). `synchronous = FULL`
//! makes every acknowledged commit durable, through a process kill or a power loss.
//!
//! Creates are group-committed: concurrent creates queue to one committer task, which writes everything
//! waiting as one transaction with a savepoint per identity (a row that conflicts or fails is rolled back
//! alone) and answers each create only after that transaction's commit (and its fsync) returned. Under
//! load one fsync then covers many creates; alone, a create is a transaction of its own as before.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::Acquire;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::identity::{
    Identity, IdentityChanges, IdentityPageQuery, IdentityUpsert, NewIdentity, RatelimitInput,
};
use crate::domain::ids::new_id;
use crate::domain::permission::RootKey;
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;
use crate::store::sql::{self, impl_store_with_shared_sql};

const READ_CONNECTIONS: u32 = 8;
/// Past this wait for a connection a request fails with 503 instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most creates one group commit takes at once.
const MAX_GROUP: usize = 256;

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    creates: mpsc::Sender<PendingCreate>,
}

struct PendingCreate {
    workspace: WorkspaceId,
    new: NewIdentity,
    reply: oneshot::Sender<Result<String, StoreError>>,
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open SQLite database {:?}", options.get_filename()))?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await.context("migrating the SQLite database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let (creates, queue) = mpsc::channel(MAX_GROUP * 4);
        tokio::spawn(group_commit(writer.clone(), queue));
        Ok(Self { reader, writer, creates })
    }

    async fn create(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = PendingCreate { workspace: workspace.clone(), new: new.clone(), reply };
        let stopped = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.creates.send(pending).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

impl_store_with_shared_sql!(SqliteStore, sqlx::Sqlite);

/// The committer: takes every create waiting (up to [`MAX_GROUP`]) and commits them together.
async fn group_commit(writer: SqlitePool, mut queue: mpsc::Receiver<PendingCreate>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let outcomes = match commit_group(&writer, &group).await {
            Ok(outcomes) => outcomes,
            // Nothing of the group was committed: every create in it failed.
            Err(error) => group.iter().map(|_| Err(StoreError::from(same_failure(&error)))).collect(),
        };
        for (pending, outcome) in group.drain(..).zip(outcomes) {
            let _ = pending.reply.send(outcome);
        }
    }
}

/// One transaction for the whole group; each create in a savepoint of its own.
async fn commit_group(
    writer: &SqlitePool,
    group: &[PendingCreate],
) -> Result<Vec<Result<String, StoreError>>, sqlx::Error> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(group.len());
    for pending in group {
        let id = new_id("id");
        let mut row = tx.begin().await?;
        let inserted =
            SqliteStore::insert_new_identity(&mut row, &pending.workspace, &pending.new, &id, sql::now_ms()).await;
        let outcome = match inserted {
            Ok(true) => {
                row.commit().await?;
                Ok(id)
            }
            Ok(false) => {
                row.rollback().await?;
                // One writer: the identity holding the externalId cannot vanish before this read.
                match SqliteStore::live_identity_id(&mut *tx, &pending.workspace, &pending.new).await {
                    Ok(Some(existing_id)) => Err(StoreError::Conflict { existing_id }),
                    Ok(None) => Err(StoreError::Contended("the externalId was freed during the insert")),
                    Err(error) => Err(error),
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

/// sqlx errors cannot be cloned; each create of a failed group gets one of the same kind.
fn same_failure(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        other => sqlx::Error::Protocol(format!("group commit failed: {other}")),
    }
}
