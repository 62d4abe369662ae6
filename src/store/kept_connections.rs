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
use crate::store::{DATABASE_DEADLINE, StoreError, within_deadline};

pub(crate) struct KeptConnections<C: Connection + 'static> {
    options: <C as Connection>::Options,
    /// One per connection that may be out or open at once.
    permits: Arc<Semaphore>,
    /// Connections whose last work finished, with when it did; the most recent last.
    ready: Mutex<Vec<(C, Instant)>>,
    /// A connection kept idle longer than this is pinged before it is handed out: a server or proxy may
    /// have dropped it. (`Duration::MAX` for SQLite's, which no server can drop.)
    ping_when_idle_for: Duration,
    /// Every slot: what `close` waits to hold.
    size: u32,
    /// SQLite's: a connection that failed closes only itself, once its thread has finished its statement
    /// ([`Lease`]).
    in_process: bool,
    /// How long each lease waited for its connection (opening one included).
    waits: Histogram,
}

impl<C: Connection + 'static> KeptConnections<C> {
    /// Connections to a server (PostgreSQL), pinged when idle past `ping_when_idle_for`; one that fails
    /// closes the idle ones too.
    pub fn to_a_server(
        options: <C as Connection>::Options,
        size: usize,
        ping_when_idle_for: Duration,
        waits: Histogram,
    ) -> Self {
        Self::new(options, size, ping_when_idle_for, false, waits)
    }

    /// Connections to a file of this process's (SQLite's readers): never pinged, since the connection is a
    /// thread of this process, and one that fails says nothing of the others.
    pub fn in_process(options: <C as Connection>::Options, size: usize, waits: Histogram) -> Self {
        Self::new(options, size, Duration::MAX, true, waits)
    }

    fn new(
        options: <C as Connection>::Options,
        size: usize,
        ping_when_idle_for: Duration,
        in_process: bool,
        waits: Histogram,
    ) -> Self {
        Self {
            options,
            permits: Arc::new(Semaphore::new(size)),
            ready: Mutex::new(Vec::new()),
            ping_when_idle_for,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            in_process,
            waits,
        }
    }

    /// Runs `work` on a kept connection and keeps the connection for the next work unless `work` left it in
    /// doubt ([`Lease::settle`]).
    /// Past the deadline it fails with [`StoreError::TimedOut`] (a 503) and the connection is closed: a
    /// write cut short by it may or may not have committed.
    pub async fn run<T, Work>(&self, work: Work) -> Result<T, StoreError>
    where
        Work: for<'c> FnOnce(&'c mut C) -> WriteFuture<'c, T>,
    {
        let unit = async {
            let mut lease = self.acquire().await?;
            let outcome = work(&mut lease).await;
            lease.settle(&outcome);
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
                return Ok(Lease::new(connection, permit, self));
            };
            if idle_since.elapsed() <= self.ping_when_idle_for || connection.ping().await.is_ok() {
                return Ok(Lease::new(connection, permit, self));
            }
        }
    }

    /// Waits, within the deadline, for the connections lent out (a SQLite read abandoned mid-statement
    /// holds its slot until the statement ends), then refuses further leases and closes the kept
    /// connections; one given back later is closed.
    pub async fn close(&self) {
        let _every_slot = tokio::time::timeout(DATABASE_DEADLINE, self.permits.acquire_many(self.size)).await;
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

/// A connection lent out. Dropped without [`Lease::finished`], it is closed.
/// - To a server, so is every connection kept idle when this one [`failed`](Lease::failed) or was out for
///   [`SILENT_FOR`] or longer: whatever broke it (a database that went silent, a failover) has most likely
///   broken them too, and each would cost a request the whole deadline to find out. One dropped sooner,
///   unfinished, was given up by its caller (a client that left mid-read): that says nothing of the others,
///   and closing them all let any client, a key or none, make every request reconnect by hanging up.
/// - In this process (SQLite), its slot stays taken until it has closed: dropping a SQLite connection does
///   not stop its statement, which its thread runs to the end, so reads abandoned mid-statement (a client
///   that left, a deadline) would otherwise each leave a thread running beside the new connection that
///   takes its slot, past `size` threads.
pub(crate) struct Lease<'a, C: Connection + 'static> {
    connection: Option<C>,
    permit: Option<OwnedSemaphorePermit>,
    home: &'a KeptConnections<C>,
    leased_at: Instant,
    failed: bool,
}

/// How long a query may be out before a lease given up unfinished suggests a database that stopped
/// answering: queries on a request's path take milliseconds.
const SILENT_FOR: Duration = Duration::from_secs(1);

impl<'a, C: Connection + 'static> Lease<'a, C> {
    fn new(connection: C, permit: OwnedSemaphorePermit, home: &'a KeptConnections<C>) -> Self {
        Self { connection: Some(connection), permit: Some(permit), home, leased_at: Instant::now(), failed: false }
    }

    /// The database failed the work on this connection: close it, and to a server every idle one too.
    pub fn failed(mut self) {
        self.failed = true;
    }

    /// Keeps the connection when `outcome` leaves it sound ([`StoreError::leaves_the_connection_sound`]);
    /// closes it as [`failed`](Self::failed) otherwise. A damaged row read on every request then costs no
    /// connection each time.
    pub fn settle<T>(self, outcome: &Result<T, StoreError>) {
        if outcome.as_ref().map_or_else(StoreError::leaves_the_connection_sound, |_| true) {
            self.finished();
        } else {
            self.failed();
        }
    }

    /// The work on this connection is done and left nothing pending: keep it for the next, unless the
    /// connections are closing.
    pub fn finished(mut self) {
        if let Some(connection) = self.connection.take()
            && !self.home.permits.is_closed()
        {
            self.home.lock().push((connection, Instant::now()));
        }
    }
}

impl<C: Connection + 'static> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else { return };
        if !self.home.in_process {
            if self.failed || self.leased_at.elapsed() >= SILENT_FOR {
                self.home.lock().clear();
            }
            return;
        }
        let permit = self.permit.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = connection.close().await;
                drop(permit);
            });
        }
    }
}

impl<C: Connection + 'static> std::ops::Deref for Lease<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.connection.as_ref().expect("present until finished")
    }
}

impl<C: Connection + 'static> std::ops::DerefMut for Lease<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.connection.as_mut().expect("present until finished")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::SqliteConnection;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::KeptConnections;
    use crate::store::stats::connection_wait_histogram;

    /// A SQLite read abandoned mid-statement keeps its slot until its thread has finished the statement:
    /// the next read waits for it instead of opening a connection, and a thread, beside it.
    #[tokio::test]
    async fn an_abandoned_sqlite_read_keeps_its_slot_until_its_statement_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = SqliteConnectOptions::new().filename(dir.path().join("kept.db")).create_if_missing(true);
        let readers: KeptConnections<SqliteConnection> =
            KeptConnections::in_process(options, 1, connection_wait_histogram());
        // Seconds of work on SQLite's thread, which a dropped future does not stop.
        let long = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 15000000) \
                    SELECT count(*) FROM c";
        let abandoned = tokio::time::timeout(Duration::from_millis(50), async {
            let mut reader = readers.acquire().await.expect("reader");
            let _: i64 = sqlx::query_scalar(long).fetch_one(&mut *reader).await.expect("count");
        })
        .await;
        assert!(abandoned.is_err(), "the statement should still be running");
        let while_it_runs = tokio::time::timeout(Duration::from_millis(200), readers.acquire()).await;
        assert!(while_it_runs.is_err(), "a second connection was opened beside the running statement");
        let after = tokio::time::timeout(Duration::from_secs(60), readers.acquire()).await;
        let mut reader = after.expect("the slot comes back once the statement ends").expect("reader");
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *reader).await.expect("select");
        assert_eq!(one, 1);
        reader.finished();
        readers.close().await;
    }
}
