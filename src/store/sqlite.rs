//! The embedded default: one SQLite file in WAL mode.
//!
//! Writes go through a single connection, so they queue in the process instead of failing with
//! SQLITE_BUSY; reads use a pool of their own and never wait for writes (WAL). `synchronous = FULL`
//! makes every acknowledged commit durable, through a process kill or a power loss.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

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

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
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
        Ok(Self { reader, writer })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

impl_store_with_shared_sql!(SqliteStore, sqlx::Sqlite);
