//! How PostgreSQL nodes tell each other which identities changed, so that what each keeps in memory
//! (`identity_cache.rs`) stays true. The node that updates or deletes an identity voids its own reads
//! before it answers, and then announces the change with PostgreSQL's `NOTIFY`; every node listens on a
//! connection of its own and voids what it read of that identity.
//!
//! The announcement is not part of the writing transaction. A transaction that notifies holds a
//! database-wide lock through its commit, WAL flush included, so notifying from a trigger serialized every
//! update: updates fell from about 9,000 to 5,000 req/s. Announcements are instead sent in batches, after
//! the commit, from a connection that does not wait for its flush. A change is therefore heard a little
//! after it is answered (normally well under a millisecond), and one whose node died before announcing it,
//! or one made by hand in SQL, is never heard: that is what the cache's time to live bounds.
//!
//! While the listening connection is down, notices are lost: the node then serves nothing from memory, and
//! everything read before it listened again is void. A connection that dies without closing is found out
//! by a heartbeat within about 1.5 s of quiet; until then the cache's time to live bounds what it
//! serves.
//!
//! Announcements wait in a bounded queue, and each batch is sent within the database deadline on a
//! connection that is closed if it fails. When the queue is full (the announcing connection is slow or
//! silent) a change is dropped, and so is a batch that could not be sent; the next batch that goes out
//! then first tells every node to void everything it read (`Change::Everything`), since nobody can say
//! which changes they missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::caches::Caches;
use crate::store::changes::{Change, Notice, from_notice, to_notice};
use crate::store::postgres::KeptConnections;
use crate::store::postgres::bounded;
use crate::store::{DATABASE_DEADLINE, StoreError};

const CHANNEL: &str = "sigil_identity_changes";
/// A notice that names no identity: a node proving to itself that it still hears ([`hears_itself`]).
const HEARTBEAT: &str = "";
/// After this long without a notice, a node proves that its listening connection still hears.
const QUIET_FOR: Duration = Duration::from_millis(500);
/// How long that proof may take before the connection counts as lost.
const PROOF_WITHIN: Duration = Duration::from_secs(1);
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Most changes announced in one statement.
const MAX_BATCH: usize = 1024;
/// Most changes waiting to be announced; past it, changes are dropped and nodes are told to void everything.
const MAX_PENDING: usize = 16 * MAX_BATCH;
const ANNOUNCE: &str = "SELECT pg_notify($1, change) FROM UNNEST($2::text[]) AS change";

/// What the listening connection is called in `pg_stat_activity`, given the `application_name` the database
/// URL sets, if any.
pub fn listener_name(application_name: Option<&str>) -> String {
    format!("{} identity changes", application_name.unwrap_or("sigil"))
}

/// Options for a connection whose only writes are notices. Its commits need not wait for the WAL flush
/// (an idle node's heartbeat would otherwise cost a flush a second): a notice lost to a crash of
/// PostgreSQL loses nothing, since every listener loses its connection then, and so forgets what it read.
fn notice_only(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url.parse()?;
    Ok(bounded(options).options([("synchronous_commit", "off")]))
}

/// Tells the other nodes which identities this node changed.
pub(super) struct Announcer {
    changes: mpsc::Sender<String>,
    /// Set when a change was dropped: the next batch sent begins with a notice voiding everything.
    dropped: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Announcer {
    pub fn start(url: &str, connection_waits: Histogram) -> anyhow::Result<Self> {
        let connection = KeptConnections::to_a_server(notice_only(url)?, 1, Duration::MAX, connection_waits);
        let (changes, pending) = mpsc::channel(MAX_PENDING);
        let dropped = Arc::new(AtomicBool::new(false));
        Ok(Self { changes, dropped: Arc::clone(&dropped), task: tokio::spawn(announce(connection, pending, dropped)) })
    }

    /// Queues the announcement; it is sent without holding up the caller.
    pub fn changed(&self, change: &Change) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.changes.try_send(to_notice(change)) {
            self.dropped.store(true, Ordering::Relaxed);
        }
    }

    /// Tells every node to void everything it read, as soon as this node can reach the database.
    pub fn void_everything(&self) {
        self.dropped.store(true, Ordering::Relaxed);
    }

    /// Changes waiting to be announced, for operators.
    pub fn pending(&self) -> usize {
        MAX_PENDING - self.changes.capacity()
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn announce(connection: KeptConnections, mut pending: mpsc::Receiver<String>, dropped: Arc<AtomicBool>) {
    let mut batch = Vec::new();
    loop {
        // While a void is owed, it goes out within RETRY_EVERY even if no change comes to carry it.
        match tokio::time::timeout(RETRY_EVERY, pending.recv_many(&mut batch, MAX_BATCH)).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(_quiet) if dropped.load(Ordering::Relaxed) => {}
            Err(_quiet) => continue,
        }
        let voids_everything = dropped.swap(false, Ordering::Relaxed);
        if voids_everything {
            batch.insert(0, to_notice(&Change::Everything));
        }
        let changes = batch.len();
        if let Err(error) = send(&connection, std::mem::take(&mut batch)).await {
            dropped.store(true, Ordering::Relaxed);
            tracing::warn!(
                %error,
                changes,
                "cannot announce identity changes; other nodes void everything once this node can again"
            );
        }
    }
}

/// Sends `notices` to every node, on one of `connections` and within the deadline.
async fn send(connections: &KeptConnections, notices: Vec<String>) -> Result<(), StoreError> {
    connections
        .run(move |connection| {
            Box::pin(async move {
                sqlx::query(ANNOUNCE).bind(CHANNEL).bind(&notices).execute(connection).await?;
                Ok(())
            })
        })
        .await
}

/// Starts listening, returns once this node hears every change announced from now on, and keeps `cache`
/// true from then on in a task of its own. The cache serves from the moment this returns.
pub(super) async fn follow(url: &str, caches: Arc<Caches>) -> anyhow::Result<JoinHandle<()>> {
    let options = notice_only(url)?;
    let name = listener_name(options.get_application_name());
    let options = options.application_name(&name);
    let mut listener = listen(&options).await?;
    caches.start_serving();
    Ok(tokio::spawn(async move {
        loop {
            let hears = match tokio::time::timeout(QUIET_FOR, listener.try_recv()).await {
                Ok(Ok(Some(notice))) => {
                    apply(&caches, notice.payload());
                    true
                }
                Ok(Ok(None)) => false,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the identity change listener failed");
                    false
                }
                Err(_quiet) => hears_itself(&mut listener, &caches).await,
            };
            if !hears {
                tracing::warn!("cannot hear identity changes; serving identities from the database only");
                caches.stop_serving();
                listener = listen_again(&options).await;
                tracing::info!("hearing identity changes again");
                caches.start_serving();
            }
        }
    }))
}

async fn listen(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let subscribe = async {
        // PgListener draws its connection from a pool: one connection, which never expires while it waits.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(DATABASE_DEADLINE)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        // A lost connection is reported at once, not after sqlx reconnected: what was missed meanwhile must
        // not be served.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    };
    tokio::time::timeout(DATABASE_DEADLINE, subscribe).await.unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Notifies the channel on the listening connection and waits to hear a notice, its own or another node's.
/// A connection that broke without closing (a NAT or a failover that dropped it silently), or one through a
/// transaction-pooling proxy, where LISTEN does not work, hears nothing and counts as lost.
async fn hears_itself(listener: &mut PgListener, caches: &Caches) -> bool {
    let proof = async {
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(HEARTBEAT).execute(&mut *listener).await?;
        let notice = listener.try_recv().await?;
        if let Some(notice) = &notice {
            apply(caches, notice.payload());
        }
        Ok::<bool, sqlx::Error>(notice.is_some())
    };
    matches!(tokio::time::timeout(PROOF_WITHIN, proof).await, Ok(Ok(true)))
}

/// Tries at once, then every [`RETRY_EVERY`] until it can listen.
async fn listen_again(options: &PgConnectOptions) -> PgListener {
    loop {
        match listen(options).await {
            Ok(listener) => return listener,
            Err(error) => tracing::warn!(%error, "still cannot listen for identity changes"),
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

fn apply(caches: &Caches, payload: &str) {
    if payload == HEARTBEAT {
        return;
    }
    match from_notice(payload) {
        Notice::Change(change) => caches.apply(&change),
        Notice::Unknown => tracing::debug!(payload, "ignoring a change notice of a kind this node does not know"),
        Notice::Unreadable => {
            tracing::warn!(payload, "unreadable change notice; forgetting everything read");
            caches.void_everything();
        }
    }
}

/// Sends `changes` to every node before returning: for an administrative command, which has no announcer.
pub(super) async fn announce_now(connections: &KeptConnections, changes: &[Change]) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    send(connections, changes.iter().map(to_notice).collect()).await
}
