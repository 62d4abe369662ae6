//! PostgreSQL, for several stateless Sigil nodes sharing one database. Migrations take PostgreSQL's
//! advisory lock (sqlx), so nodes starting together migrate once.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::identity::{
    Identity, IdentityChanges, IdentityPageQuery, IdentityUpsert, NewIdentity, RatelimitInput,
};
use crate::domain::ids::new_id;
use crate::domain::permission::RootKey;
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;
use crate::store::sql::{self, impl_store_with_shared_sql};

const MAX_CONNECTIONS: u32 = 16;
/// Past this wait for a connection a request fails with 503 instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .context("cannot connect to PostgreSQL")?;
        sqlx::migrate!("migrations/postgres").run(&pool).await.context("migrating the PostgreSQL database")?;
        Ok(Self { pool })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }
}

impl_store_with_shared_sql!(PostgresStore, sqlx::Postgres);
