//! PostgreSQL, for several stateless Sigil nodes sharing one database. Migrations take PostgreSQL's
//! advisory lock (sqlx), so nodes starting together migrate once.
//!
//! Creates are group-committed (`create_queue.rs`): a group is one transaction whose identities go in as
//! one multi-row `INSERT … ON CONFLICT DO NOTHING`, so PostgreSQL parses, plans and flushes its WAL once
//! for many creates. Several groups commit at once, on connections of their own.
//!
//! Every query runs on connections Sigil keeps itself (`kept_connections.rs`), each unit of work within
//! [`DATABASE_DEADLINE`](crate::store::DATABASE_DEADLINE); none runs on sqlx's pool, whose release ping
//! would wait for ever on a connection that went silent. Each connection also asks the server to give up
//! on it: statements end after the deadline, a transaction left idle ends soon after, and the server
//! probes the client with TCP keepalives, so a node that vanished mid-transaction holds no lock for long.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::identity::{
    Identity, IdentityChanges, IdentityPageQuery, IdentityUpsert, NewIdentity, RatelimitInput, replace_ratelimits,
};
use crate::domain::ids::new_id;
use crate::domain::permission::RootKey;
use crate::domain::workspace::WorkspaceId;
use crate::store::create_queue::{CreateOutcome, CreateQueue, CreateRequest};
use crate::store::identity_cache::IdentityCache;
use crate::store::kept_connections::KeptConnections;
use crate::store::postgres_changes::{self, Announcer};
use crate::store::sql::WriteFuture;
use crate::store::sql::{self, impl_store_with_shared_sql};
use crate::store::stats::connection_wait_histogram;
use crate::store::{DATABASE_DEADLINE, StoreError, within_deadline, within_deadline_at};

/// Connections for every query (`kept_connections.rs`): enough for the create groups in flight and as many
/// other queries. More only added PostgreSQL processes competing for the same cores: on this 2-core machine,
/// with 16, list pages ran 5,100-5,650/s at a p99 of 11.3-14.0 ms under wrk -c32, and with 8,
/// 5,630-6,030/s at 9.8-10.7 ms.
const KEPT_CONNECTIONS: usize = 8;
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(30);

/// Most creates one group takes at once.
const MAX_GROUP: usize = 256;
/// Groups committing at once, each on a connection of its own; the rest of the pool serves everything else.
const GROUPS_IN_FLIGHT: usize = 4;

/// Inserts a group of identities in one statement. Rows that collide with a live identity (or with an
/// earlier row of the same group) are skipped, and only the inserted ids come back.
const INSERT_IDENTITIES: &str = "INSERT INTO identities (id, workspace_id, external_id, meta, ratelimits, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
     ON CONFLICT (workspace_id, external_id) WHERE deleted_at IS NULL DO NOTHING RETURNING id";
/// The live identities holding these externalIds, in any workspace: the caller keeps the (workspace,
/// externalId) pairs it asked for. Naming the workspace here would let PostgreSQL pick
/// `identities_live_by_workspace` and filter every identity of the workspace, which it did (150–300 ms per
/// group at 27k identities) while a freshly grown table had no statistics yet. On external_id alone, only
/// the live-externalId index applies.
const LIVE_IDENTITY_IDS: &str =
    "SELECT workspace_id, external_id, id FROM identities WHERE external_id = ANY($1) AND deleted_at IS NULL";

/// A list page as rows. (Built as one JSON value instead, as SQLite does, it was 25% slower here:
/// PostgreSQL's rows need no handoff between threads.)
const LIST_IDENTITIES: &str = concat!("SELECT i.id, i.external_id, i.meta, i.ratelimits FROM ", sql::identity_page!());

pub struct PostgresStore {
    connections: Arc<KeptConnections>,
    connection_waits: Histogram,
    creates: CreateQueue,
    /// Set under `sigil serve`.
    serving: Option<Serving>,
}

struct Serving {
    identities: Arc<IdentityCache>,
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
        let identities = Arc::new(IdentityCache::for_a_shared_database());
        let follower = match postgres_changes::follow(url, Arc::clone(&identities)).await {
            Ok(follower) => follower,
            Err(error) => {
                store.close_pools().await;
                return Err(error.context("cannot listen for identity changes"));
            }
        };
        store.serving = Some(Serving { identities, follower, announcer });
        Ok(store)
    }

    /// Opens the database for one administrative command, which keeps nothing in memory.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse().context("reading the PostgreSQL URL")?;
        migrate(&options).await?;
        let connection_waits = connection_wait_histogram();
        let connections = Arc::new(KeptConnections::new(
            bounded(options),
            KEPT_CONNECTIONS,
            PING_WHEN_IDLE_FOR,
            connection_waits.clone(),
        ));
        let group_connections = Arc::clone(&connections);
        let creates = CreateQueue::start(MAX_GROUP, GROUPS_IN_FLIGHT, move |group, deadline| {
            commit_group(Arc::clone(&group_connections), group, deadline)
        });
        Ok(Self { connections, connection_waits, creates, serving: None })
    }

    async fn create(&self, workspace: &WorkspaceId, new: &NewIdentity) -> CreateOutcome {
        self.creates.create(workspace, new).await
    }

    /// Each write is a transaction of its own (PostgreSQL commits concurrent transactions in parallel),
    /// run again when PostgreSQL aborted it to resolve a race.
    async fn write<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        Write: for<'c> Fn(&'c mut PgConnection) -> WriteFuture<'c, T>,
    {
        sql::retry_transient(|| {
            within_deadline(async {
                let mut connection = self.connections.acquire().await?;
                let mut tx = connection.begin().await?;
                let outcome = write(&mut tx).await?;
                tx.commit().await?;
                connection.finished();
                Ok(outcome)
            })
        })
        .await
    }

    async fn write_one_statement<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        Write: for<'c> Fn(&'c mut PgConnection) -> WriteFuture<'c, T>,
    {
        self.connections.run(|connection| write(connection)).await
    }

    async fn on_reader<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        Work: for<'c> FnOnce(&'c mut PgConnection) -> WriteFuture<'c, T>,
    {
        self.connections.run(work).await
    }

    async fn on_writer<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        Work: for<'c> FnOnce(&'c mut PgConnection) -> WriteFuture<'c, T>,
    {
        self.connections.run(work).await
    }

    fn queued(&self) -> Vec<(&'static str, usize)> {
        let mut queued = vec![("postgres_creates", self.creates.queued())];
        if let Some(serving) = &self.serving {
            queued.push(("change_announcements", serving.announcer.pending()));
        }
        queued
    }

    fn identity_cache(&self) -> Option<&IdentityCache> {
        self.serving.as_ref().map(|serving| &*serving.identities)
    }

    /// A write that failed for the database's sake (a deadline, a broken connection) may have committed
    /// without anyone learning which identity it changed: every node voids what it read.
    fn write_failed(&self, error: &StoreError) {
        if let (Some(serving), Some(_)) = (&self.serving, error.failure_kind()) {
            serving.identities.void_everything();
            serving.announcer.void_everything();
        }
    }

    fn identity_changed(&self, workspace: &WorkspaceId, identity_id: &str, external_id: &str) {
        if let Some(serving) = &self.serving {
            serving.identities.changed(workspace, identity_id, external_id);
            serving.announcer.changed(workspace, identity_id, external_id);
        }
    }

    async fn list_page(&self, workspace: &WorkspaceId, query: &IdentityPageQuery) -> Result<Vec<Identity>, StoreError> {
        let rows: Vec<sql::IdentityRow> = within_deadline(async {
            let mut connection = self.connections.acquire().await?;
            let rows = sqlx::query_as(LIST_IDENTITIES)
                .bind(workspace.as_str())
                .bind(query.cursor.as_deref())
                .bind(query.search_pattern.as_deref())
                .bind(query.limit)
                .fetch_all(&mut *connection)
                .await?;
            connection.finished();
            Ok(rows)
        })
        .await?;
        rows.into_iter().map(sql::IdentityRow::into_identity).collect()
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

impl_store_with_shared_sql!(PostgresStore, sqlx::Postgres);

async fn commit_group(
    connections: Arc<KeptConnections>,
    group: Vec<CreateRequest>,
    deadline: tokio::time::Instant,
) -> Vec<CreateOutcome> {
    let insert = || {
        within_deadline_at(deadline, async {
            let mut connection = connections.acquire().await?;
            let outcomes = insert_group(&mut connection, &group).await?;
            connection.finished();
            Ok(outcomes)
        })
    };
    match sql::retry_transient(insert).await {
        Ok(outcomes) => outcomes,
        Err(error) => group.iter().map(|_| Err(error.same_kind())).collect(),
    }
}

/// Inserts the group and names, for each create that collided, the live identity holding its externalId.
/// When that identity was deleted before it could be named, the create is tried again.
async fn insert_group(
    connection: &mut PgConnection,
    group: &[CreateRequest],
) -> Result<Vec<CreateOutcome>, StoreError> {
    let metas = group.iter().map(|request| sql::to_json(&request.new.meta)).collect::<Result<Vec<_>, _>>()?;
    let ratelimits = group
        .iter()
        .map(|request| sql::ratelimits_json(&replace_ratelimits(&[], &request.new.ratelimits)))
        .collect::<Result<Vec<_>, _>>()?;
    // Rows go in in the unique index's order, so two groups never wait for each other's rows in opposite
    // orders (a deadlock); among creates of one externalId, the first to arrive wins.
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by_key(|&index| (&group[index].new.external_id, group[index].workspace.as_str()));
    let mut outcomes: Vec<Option<CreateOutcome>> = group.iter().map(|_| None).collect();
    let mut tx = connection.begin().await?;
    for _ in 0..sql::CREATE_ATTEMPTS {
        let waiting: Vec<usize> = order.iter().copied().filter(|&index| outcomes[index].is_none()).collect();
        if waiting.is_empty() {
            break;
        }
        let ids: Vec<String> = waiting.iter().map(|_| new_id("id")).collect();
        let workspaces: Vec<&str> = waiting.iter().map(|&index| group[index].workspace.as_str()).collect();
        let external_ids: Vec<&str> = waiting.iter().map(|&index| group[index].new.external_id.as_str()).collect();
        let now = sql::now_ms();
        let inserted: HashSet<String> = sqlx::query_scalar(INSERT_IDENTITIES)
            .bind(&ids)
            .bind(&workspaces)
            .bind(&external_ids)
            .bind(waiting.iter().map(|&index| metas[index].as_str()).collect::<Vec<_>>())
            .bind(waiting.iter().map(|&index| ratelimits[index].as_str()).collect::<Vec<_>>())
            .bind(vec![now; waiting.len()])
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        for (&index, id) in waiting.iter().zip(&ids) {
            if inserted.contains(id) {
                outcomes[index] = Some(Ok(id.clone()));
            }
        }
        if inserted.len() == waiting.len() {
            break;
        }
        let colliding: HashSet<&str> = waiting
            .iter()
            .filter(|&&index| outcomes[index].is_none())
            .map(|&index| group[index].new.external_id.as_str())
            .collect();
        let holders: Vec<(String, String, String)> = sqlx::query_as(LIVE_IDENTITY_IDS)
            .bind(colliding.into_iter().collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
        for (workspace, external_id, existing_id) in holders {
            for &index in &waiting {
                let request = &group[index];
                if outcomes[index].is_none()
                    && request.workspace.as_str() == workspace
                    && request.new.external_id == external_id
                {
                    outcomes[index] = Some(Err(StoreError::Conflict { existing_id: existing_id.clone() }));
                }
            }
        }
    }
    tx.commit().await?;
    let contended = || Err(StoreError::Contended("the externalId was deleted and re-created concurrently"));
    Ok(outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(contended)).collect())
}
