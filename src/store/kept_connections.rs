//! PostgreSQL connections for the queries on every request's path, kept without sqlx's release ping.
//!
//! sqlx 0.8 pings every connection its pool takes back (`Floating::return_to_pool`): one more round trip to
//! the database per query, and the connection is not free for the next query until that ping is answered.
//! On PostgreSQL that was a third of the messages Sigil sent. These connections are Sigil's own: one whose
//! work finished is kept and handed out again; one whose work failed, or was cut short (its future dropped
//! mid-query by a timeout or a client that left), is closed, since it may hold a half-done exchange, and a
//! new one is opened in its place when needed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(super) struct KeptConnections {
    options: PgConnectOptions,
    /// One per connection that may be out or open at once.
    permits: Arc<Semaphore>,
    /// Connections whose last work finished, with when it did; the most recent last.
    ready: Mutex<Vec<(PgConnection, Instant)>>,
    acquire_timeout: Duration,
    /// A connection kept idle longer than this is pinged before it is handed out: a server or proxy may
    /// have dropped it.
    ping_when_idle_for: Duration,
}

impl KeptConnections {
    pub fn new(
        options: PgConnectOptions,
        size: usize,
        acquire_timeout: Duration,
        ping_when_idle_for: Duration,
    ) -> Self {
        Self {
            options,
            permits: Arc::new(Semaphore::new(size)),
            ready: Mutex::new(Vec::new()),
            acquire_timeout,
            ping_when_idle_for,
        }
    }

    /// Past the acquire timeout, fails as sqlx's pool does ([`sqlx::Error::PoolTimedOut`]): a 503.
    pub async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        let permit = match tokio::time::timeout(self.acquire_timeout, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(sqlx::Error::PoolClosed),
            Err(_elapsed) => return Err(sqlx::Error::PoolTimedOut),
        };
        loop {
            let Some((mut connection, idle_since)) = self.lock().pop() else {
                let connection = PgConnection::connect_with(&self.options).await?;
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection lent out. Dropped without [`Lease::finished`], it is closed.
pub(super) struct Lease<'a> {
    connection: Option<PgConnection>,
    _permit: OwnedSemaphorePermit,
    home: &'a KeptConnections,
}

impl Lease<'_> {
    /// The work on this connection is done and left nothing pending: keep it for the next.
    pub fn finished(mut self) {
        if let Some(connection) = self.connection.take() {
            self.home.lock().push((connection, Instant::now()));
        }
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("present until finished")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_mut().expect("present until finished")
    }
}
