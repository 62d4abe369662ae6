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

    /// Each create is a transaction of its own: PostgreSQL commits concurrent transactions in parallel.
    /// When the identity holding the externalId is deleted between the insert and the read that names
    /// it, the insert is tried again.
    async fn create(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError> {
        sql::retry_transient(move || async move {
            for _ in 0..sql::CREATE_ATTEMPTS {
                let id = new_id("id");
                let now = sql::now_ms();
                let inserted = if new.ratelimits.is_empty() {
                    // A lone INSERT is a transaction of its own: one round trip.
                    Self::insert_new_identity(&mut *self.pool.acquire().await?, workspace, new, &id, now).await?
                } else {
                    let mut tx = self.pool.begin().await?;
                    let inserted = Self::insert_new_identity(&mut tx, workspace, new, &id, now).await?;
                    if inserted {
                        tx.commit().await?;
                    }
                    inserted
                };
                if inserted {
                    return Ok(id);
                }
                if let Some(existing_id) = Self::live_identity_id(&self.pool, workspace, new).await? {
                    return Err(StoreError::Conflict { existing_id });
                }
            }
            Err(StoreError::Contended("the externalId was deleted and re-created concurrently"))
        })
        .await
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }
}

impl_store_with_shared_sql!(PostgresStore, sqlx::Postgres);
