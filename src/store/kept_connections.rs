//! Connections for the queries on every request's path, kept without sqlx's release ping: PostgreSQL's, and
//! SQLite's readers.
//!
//! sqlx 0.8 pings every connection its pool takes back (`Floating::return_to_pool`): one more round trip to
//! the database per query, and the connection is not free for the next query until that ping is answered.
//! On PostgreSQL that was a third of the messages Sigil sent; on SQLite, whose connection is a thread of
//! this process, it was a second hand-off to that thread and back for every read. These connections are
//! Sigil's own: one whose work finished is kept and handed out again; one whose work failed, or was cut
//! short (its future dropped mid-query by a timeout or a client that left), is closed, since it may hold a
//! half-done exchange, and a new one is opened in its place when needed.
//!
//! Every unit of work on them, from waiting for a connection to its last reply, has one deadline
//! ([`DATABASE_DEADLINE`](crate::store::DATABASE_DEADLINE), in [`KeptConnections::run`]). A database that stops answering without closing the connection (a failover,
//! a NAT that dropped its state, a partition) then costs a request 503 within that deadline, not a hang,
//! and the silent connection is closed, never reused: once the database answers again, new connections
//! serve at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::backend::WriteFuture;
use crate::store::{StoreError, within_deadline};

pub(crate) struct KeptConnections<C: Connection> {
    options: <C as Connection>::Options,
    /// One per connection that may be out or open at once.
    permits: Arc<Semaphore>,
    /// Connections whose last work finished, with when it did; the most recent last.
    ready: Mutex<Vec<(C, Instant)>>,
    /// A connection kept idle longer than this is pinged before it is handed out: a server or proxy may
    /// have dropped it. (`Duration::MAX` for SQLite's, which no server can drop.)
    ping_when_idle_for: Duration,
    /// Whether a connection that failed closes the idle ones too (PostgreSQL's, [`Lease`]).
    failure_closes_idle: bool,
    /// How long each lease waited for its connection (opening one included).
    waits: Histogram,
}

impl<C: Connection> KeptConnections<C> {
    /// Connections to a server (PostgreSQL), pinged when idle past `ping_when_idle_for`; one that fails
    /// closes the idle ones too.
    pub fn to_a_server(
        options: <C as Connection>::Options,
        size: usize,
        ping_when_idle_for: Duration,
        waits: Histogram,
    ) -> Self {
        Self::new(options, size, ping_when_idle_for, true, waits)
    }

    /// Connections to a file of this process's (SQLite's readers): never pinged, since the connection is a
    /// thread of this process, and one that fails says nothing of the others.
    pub fn in_process(options: <C as Connection>::Options, size: usize, waits: Histogram) -> Self {
        Self::new(options, size, Duration::MAX, false, waits)
    }

    fn new(
        options: <C as Connection>::Options,
        size: usize,
        ping_when_idle_for: Duration,
        failure_closes_idle: bool,
        waits: Histogram,
    ) -> Self {
        Self {
            options,
            permits: Arc::new(Semaphore::new(size)),
            ready: Mutex::new(Vec::new()),
            ping_when_idle_for,
            failure_closes_idle,
            waits,
        }
    }

    /// Runs `work` on a kept connection and keeps the connection for the next work if `work` succeeded or
    /// was refused.
    /// Past the deadline it fails with [`StoreError::TimedOut`] (a 503) and the connection is closed: a
    /// write cut short by it may or may not have committed.
    pub async fn run<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        Work: for<'c> FnOnce(&'c mut C) -> WriteFuture<'c, T>,
    {
        let unit = async {
            let mut lease = self.acquire().await?;
            let outcome = work(&mut lease).await;
            // A refusal leaves the connection sound; a failure may not.
            if outcome.as_ref().map_or_else(StoreError::is_refusal, |_| true) {
                lease.finished();
            }
            outcome
        };
        within_deadline(unit).await
    }

    /// A connection for work that the caller bounds with [`within_deadline`] itself.
    pub async fn acquire(&self) -> Result<Lease<'_, C>, sqlx::Error> {
        let started = Instant::now();
        let lease = self.lease().await;
        self.waits.observe(started.elapsed().as_secs_f64());
        lease
    }

    async fn lease(&self) -> Result<Lease<'_, C>, sqlx::Error> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_closed| sqlx::Error::PoolClosed)?;
        loop {
            let Some((mut connection, idle_since)) = self.lock().pop() else {
                let connection = self.options.connect().await?;
                return Ok(Lease { connection: Some(connection), _permit: permit, home: self });
            };
            if idle_since.elapsed() <= self.ping_when_idle_for || connection.ping().await.is_ok() {
                return Ok(Lease { connection: Some(connection), _permit: permit, home: self });
            }
        }
    }

    /// Refuses further leases and closes the kept connections.
    pub async fn close(&self) {
        self.permits.close();
        let kept: Vec<_> = self.lock().drain(..).collect();
        for (connection, _) in kept {
            let _ = connection.close().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(C, Instant)>> {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection lent out. Dropped without [`Lease::finished`], it is closed, and so is every connection
/// kept idle to a server: whatever broke this one (a database that went silent, a failover) has most likely
/// broken them too, and each would cost a request the whole deadline to find out.
pub(crate) struct Lease<'a, C: Connection> {
    connection: Option<C>,
    _permit: OwnedSemaphorePermit,
    home: &'a KeptConnections<C>,
}

impl<C: Connection> Lease<'_, C> {
    /// The work on this connection is done and left nothing pending: keep it for the next.
    pub fn finished(mut self) {
        if let Some(connection) = self.connection.take() {
            self.home.lock().push((connection, Instant::now()));
        }
    }
}

impl<C: Connection> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        if self.connection.is_some() && self.home.failure_closes_idle {
            self.home.lock().clear();
        }
    }
}

impl<C: Connection> std::ops::Deref for Lease<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.connection.as_ref().expect("present until finished")
    }
}

impl<C: Connection> std::ops::DerefMut for Lease<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.connection.as_mut().expect("present until finished")
    }
}
