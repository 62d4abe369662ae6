//! PostgreSQL, for several stateless Sigil nodes sharing one database. Migrations take PostgreSQL's
//! advisory lock (sqlx), so nodes starting together migrate once.
//!
//! Creates, upserts without ratelimits and updates of meta alone are group-committed (`write_groups.rs`, `identities.rs`): a group goes
//! in as one statement that commits alone, so PostgreSQL parses, plans and flushes its WAL once for many
//! writes. Several groups commit at once, on connections of their own.
//!
//! Every query runs on connections Sigil keeps itself (`store/kept_connections.rs`), each unit of work within
//! [`DATABASE_DEADLINE`](crate::store::DATABASE_DEADLINE); none runs on sqlx's pool, whose release ping
//! would wait for ever on a connection that went silent. Each connection also asks the server to give up
//! on it: statements end after the deadline, a transaction left idle ends soon after, and the server
//! probes the client with TCP keepalives, so a node that vanished mid-transaction holds no lock for long.

pub(super) mod changes;
mod identities;
#[cfg(test)]
mod query_plans;
mod ratelimits;
mod write_groups;
#[cfg(test)]
mod write_order;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::store::apis::impl_apis;
use crate::store::backend::{Backend, WriteFuture, retry_transient};
use crate::store::caches::Caches;
use crate::store::changes::{Change, Written};
use crate::store::idempotency_keys::impl_idempotency_keys;
use crate::store::identities::impl_identities;
use crate::store::identity_cache::IdentityCache;
use crate::store::keys::impl_keys;
use crate::store::root_keys::impl_root_keys;
use crate::store::settings::impl_settings;
use crate::store::stats::connection_wait_histogram;
use crate::store::workspaces::impl_workspaces;
use crate::store::{DATABASE_DEADLINE, Store, StoreError, StoreStats, within_deadline};
use changes::Announcer;
use identities::IdentityWriteGroups;

use crate::domain::ratelimit::{CounterKey, RatelimitCheck, RatelimitOutcome};
use crate::store::Ratelimits;
use crate::store::combiner::Combiner;

/// Connections for every query (`store/kept_connections.rs`): enough for the write groups in flight (4, of every
/// kind) and as many other queries. More only added PostgreSQL processes competing for the same cores: on this 2-core machine,
/// with 16, list pages ran 5,100-5,650/s at a p99 of 11.3-14.0 ms under wrk -c32, and with 8,
/// 5,630-6,030/s at 9.8-10.7 ms.
const KEPT_CONNECTIONS: usize = 8;
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(30);

pub struct PostgresStore {
    connections: Arc<KeptConnections>,
    connection_waits: Histogram,
    groups: IdentityWriteGroups,
    ratelimit_takes: Arc<RatelimitTakes>,
    /// Set under `sigil serve`.
    serving: Option<Serving>,
}

struct Serving {
    caches: Arc<Caches>,
    follower: tokio::task::JoinHandle<()>,
    announcer: Announcer,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl PostgresStore {
    /// Opens the database for `sigil serve`: identities read are kept in memory, and other nodes' changes
    /// to them are heard of through PostgreSQL's notices.
    pub async fn open_for_serving(url: &str) -> anyhow::Result<Self> {
        let mut store = Self::open(url).await?;
        let announcer = Announcer::start(url, store.connection_waits.clone())?;
        let caches = Arc::new(Caches::new(IdentityCache::for_a_shared_database()));
        let follower = match changes::follow(url, Arc::clone(&caches)).await {
            Ok(follower) => follower,
            Err(error) => {
                store.close_pools().await;
                return Err(error.context("cannot listen for identity changes"));
            }
        };
        store.serving = Some(Serving { caches, follower, announcer });
        Ok(store)
    }

    /// Opens the database for one administrative command, which keeps nothing in memory.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse().context("reading the PostgreSQL URL")?;
        migrate(&options).await?;
        let connection_waits = connection_wait_histogram();
        let connections = Arc::new(KeptConnections::to_a_server(
            bounded(options),
            KEPT_CONNECTIONS,
            PING_WHEN_IDLE_FOR,
            connection_waits.clone(),
        ));
        let groups = identities::identity_write_groups(&connections);
        let ratelimit_takes = ratelimit_takes(Arc::clone(&connections));
        Ok(Self { connections, connection_waits, groups, ratelimit_takes, serving: None })
    }

    async fn close_pools(&self) {
        if let Some(serving) = &self.serving {
            serving.follower.abort();
        }
        self.connections.close().await;
    }
}

/// Migrates on a connection of its own, without the deadlines every other query has: a migration may
/// take long, and waits for another node's to finish (it holds PostgreSQL's advisory lock).
async fn migrate(options: &PgConnectOptions) -> anyhow::Result<()> {
    let mut connection = tokio::time::timeout(DATABASE_DEADLINE, PgConnection::connect_with(options))
        .await
        .map_err(|_| anyhow::anyhow!("PostgreSQL did not answer within {DATABASE_DEADLINE:?}"))?
        .context("cannot connect to PostgreSQL")?;
    sqlx::migrate!("migrations/postgres").run(&mut connection).await.context("migrating the PostgreSQL database")?;
    connection.close().await.context("closing the migration's connection")
}

/// Asks the server to give up on a connection that Sigil gave up on: a statement that outlived the deadline
/// is cancelled, a transaction whose client went quiet is rolled back, releasing its locks, and TCP
/// keepalives tell the server within about 8 s that a client vanished. (sqlx sets no client-side
/// keepalive; the deadline closes a connection that stopped answering.)
pub(super) fn bounded(options: PgConnectOptions) -> PgConnectOptions {
    let statement_timeout = format!("{}ms", DATABASE_DEADLINE.as_millis());
    let idle_in_transaction = format!("{}ms", 2 * DATABASE_DEADLINE.as_millis());
    options.options([
        ("statement_timeout", statement_timeout.as_str()),
        ("idle_in_transaction_session_timeout", idle_in_transaction.as_str()),
        ("tcp_keepalives_idle", "5"),
        ("tcp_keepalives_interval", "1"),
        ("tcp_keepalives_count", "3"),
    ])
}

/// `write` in a transaction of its own on one of `connections`, run again when PostgreSQL aborted it to
/// resolve a race.
async fn in_transaction<T, Write>(connections: &KeptConnections, write: Write) -> Result<T, StoreError>
where
    Write: for<'c> Fn(&'c mut PgConnection) -> WriteFuture<'c, T>,
{
    retry_transient(|| {
        within_deadline(async {
            let mut connection = connections.acquire().await?;
            let written = async {
                let mut tx = connection.begin().await?;
                match write(&mut tx).await {
                    Ok(written) => {
                        tx.commit().await?;
                        Ok(written)
                    }
                    // Rolled back now, so that a connection the error leaves sound is kept clean.
                    Err(error) if error.leaves_the_connection_sound() => {
                        tx.rollback().await?;
                        Err(error)
                    }
                    Err(failure) => Err(failure),
                }
            }
            .await;
            connection.settle(&written);
            written
        })
    })
    .await
}

/// PostgreSQL's kept connections (`store/kept_connections.rs`).
type KeptConnections = crate::store::kept_connections::KeptConnections<PgConnection>;
type Lease<'a> = crate::store::kept_connections::Lease<'a, PgConnection>;

/// Verifications' takes from the same counters (sorted), combined (`combiner.rs`): 32 concurrent
/// verifications of one identity's limit, each a statement holding the counter's row, ran at 12,214 a
/// second, combined at 23,241 (`cargo bench --bench sigil -- --only verifyKey --database postgres://…`).
type RatelimitTakes = Combiner<Vec<CounterKey>, (Vec<RatelimitCheck>, i64), Vec<RatelimitOutcome>>;

fn ratelimit_takes(connections: Arc<KeptConnections>) -> Arc<RatelimitTakes> {
    Combiner::new(Box::new(move |_, takes: Vec<(Vec<RatelimitCheck>, i64)>| {
        let connections = Arc::clone(&connections);
        Box::pin(async move {
            // The latest of their moments: windows only move forward.
            let now_ms = takes.iter().map(|(_, now_ms)| *now_ms).max().unwrap_or_default();
            let batch: Vec<Vec<RatelimitCheck>> = takes.into_iter().map(|(checks, _)| checks).collect();
            // One verification of one limit: one statement, committed on its own.
            if let [only] = batch.as_slice()
                && let [check] = only.as_slice()
            {
                let check = check.clone();
                let taken = connections
                    .run(move |connection| {
                        Box::pin(async move { ratelimits::take_one(connection, &check, now_ms).await })
                    })
                    .await?;
                return Ok(vec![vec![taken]]);
            }
            let batch = Arc::new(batch);
            in_transaction(&connections, move |connection| {
                let batch = Arc::clone(&batch);
                Box::pin(async move { ratelimits::take_in_turn(connection, &batch, now_ms).await })
            })
            .await
        })
    }))
}

impl Backend for PostgresStore {
    type Connection = PgConnection;

    /// An advisory lock on the hashes of workspace and key: two keys sharing both (one chance in 2^64) only
    /// take turns.
    const HOLD_IDEMPOTENCY_KEY: Option<&'static str> =
        Some("SELECT pg_try_advisory_xact_lock(hashtext($1), hashtext($2))");

    /// Each write is a transaction of its own (PostgreSQL commits concurrent transactions in parallel),
    /// run again when PostgreSQL aborted it to resolve a race.
    async fn write<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut PgConnection) -> WriteFuture<'c, Written<T>> + Send + Sync + 'static,
    {
        let written = in_transaction(&self.connections, write).await?;
        self.apply(written.changes).await;
        Ok(written.outcome)
    }

    async fn write_one_statement<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut PgConnection) -> WriteFuture<'c, Written<T>> + Send + Sync + 'static,
    {
        let written = self.connections.run(|connection| write(connection)).await?;
        self.apply(written.changes).await;
        Ok(written.outcome)
    }

    async fn on_reader<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        T: Send,
        Work: for<'c> FnOnce(&'c mut PgConnection) -> WriteFuture<'c, T> + Send,
    {
        self.connections.run(work).await
    }

    async fn on_writer<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        T: Send,
        Work: for<'c> FnOnce(&'c mut PgConnection) -> WriteFuture<'c, T> + Send,
    {
        self.connections.run(work).await
    }

    fn caches(&self) -> Option<&Caches> {
        self.serving.as_ref().map(|serving| &*serving.caches)
    }

    /// This node's memory at once; other nodes' through the announcer, or, from an administrative command,
    /// which keeps no announcer, with notices sent before it returns.
    async fn apply(&self, changes: Vec<Change>) {
        match &self.serving {
            Some(serving) => {
                for change in &changes {
                    serving.caches.apply(change);
                    if change.is_announced() {
                        serving.announcer.changed(change);
                    }
                }
            }
            None => {
                let announced: Vec<Change> = changes.into_iter().filter(Change::is_announced).collect();
                if let Err(error) = changes::announce_now(&self.connections, &announced).await {
                    tracing::warn!(%error, "cannot announce changes; other nodes serve what they read until it expires");
                }
            }
        }
    }

    /// A write that failed for the database's sake (a deadline, a broken connection) may have committed
    /// without anyone learning what it changed: every node voids what it read.
    fn write_failed(&self, error: &StoreError) {
        if let (Some(serving), Some(_)) = (&self.serving, error.failure_kind()) {
            serving.caches.void_everything();
            serving.announcer.void_everything();
        }
    }
}

impl_workspaces!(PostgresStore);
impl_root_keys!(PostgresStore);
impl_identities!(PostgresStore);
impl_idempotency_keys!(PostgresStore);
impl_apis!(PostgresStore);
impl_keys!(PostgresStore);
impl_settings!(PostgresStore);

#[async_trait::async_trait]
impl Ratelimits for PostgresStore {
    async fn take_ratelimits(
        &self,
        checks: &[RatelimitCheck],
        now_ms: i64,
    ) -> Result<Vec<RatelimitOutcome>, StoreError> {
        let mut counters: Vec<CounterKey> = checks.iter().map(|check| check.counter.clone()).collect();
        counters.sort();
        self.ratelimit_takes.write(counters, (checks.to_vec(), now_ms)).await
    }

    async fn purge_ended_ratelimit_counters(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.write_one_statement(move |connection| {
            Box::pin(async move { Ok(Written::unchanged(ratelimits::purge_ended(connection, now_ms).await?)) })
        })
        .await
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn stats(&self) -> StoreStats {
        let mut queued = vec![
            ("postgres_creates", self.groups.creates.queued()),
            ("postgres_upserts", self.groups.upserts.queued()),
            ("postgres_meta_updates", self.groups.meta_updates.queued()),
        ];
        if let Some(serving) = &self.serving {
            queued.push(("change_announcements", serving.announcer.pending()));
        }
        StoreStats {
            identity_cache: self.caches().map(|caches| caches.identities.stats()),
            queued,
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
