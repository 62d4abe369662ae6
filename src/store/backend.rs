//! The contract between the resources' shared SQL (`identities.rs`, `root_keys.rs`, …) and a database
//! backend (`sqlite/`, `postgres/`): how a backend runs reads and writes, keeps identities in memory and
//! hears of their changes. The resources' code is written once against it; the compiler holds each backend
//! to it.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::StoreError;
use crate::store::caches::Caches;
use crate::store::changes::{Change, Written};

/// What a backend offers the resources' shared code.
pub(super) trait Backend: Send + Sync + 'static {
    /// A connection of this backend's database.
    type Connection: Send;

    /// A query taking, for the rest of the transaction, the lock of Idempotency-Key `$2` in workspace `$1`
    /// without waiting for it: `true` when it was taken. `None` where writes never run at once (SQLite).
    const HOLD_IDEMPOTENCY_KEY: Option<&'static str>;

    /// Runs `work` on a connection for reads, within [`DATABASE_DEADLINE`].
    fn on_reader<T, Work>(&self, work: Work) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send,
        Work: for<'c> FnOnce(&'c mut Self::Connection) -> WriteFuture<'c, T> + Send;

    /// Runs `work` on a connection that sees every committed write, within [`DATABASE_DEADLINE`]: for
    /// statements that commit on their own (workspaces, root keys, housekeeping).
    fn on_writer<T, Work>(&self, work: Work) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send,
        Work: for<'c> FnOnce(&'c mut Self::Connection) -> WriteFuture<'c, T> + Send;

    /// Runs `write` inside a transaction, and once that transaction committed applies what it changed
    /// ([`Backend::apply`]) and returns its outcome. `write` may be run more than once: a transaction the
    /// database aborted to resolve a race is run again.
    fn write<T, Write>(&self, write: Write) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut Self::Connection) -> WriteFuture<'c, Written<T>> + Send + Sync + 'static;

    /// Like [`write`](Self::write), for a `write` that changes the database with at most one statement,
    /// and so needs no transaction of its own.
    fn write_one_statement<T, Write>(&self, write: Write) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send + 'static,
        Write: for<'c> Fn(&'c mut Self::Connection) -> WriteFuture<'c, Written<T>> + Send + Sync + 'static;

    /// What this node keeps in memory, if it keeps anything (only `sigil serve` does).
    fn caches(&self) -> Option<&Caches>;

    /// Makes what committed writes changed true of every node's memory: this node's at once, before the
    /// caller answers, and other nodes' through the change bus.
    fn apply(&self, changes: Vec<Change>) -> impl Future<Output = ()> + Send;

    /// Told of every identity write that failed; on a database where a failed write may still have
    /// committed, voids what any node read.
    fn write_failed(&self, error: &StoreError);
}

/// The most one unit of work on the database may take, from waiting for a connection to its last reply: a
/// request's read, one write's transaction, a group of writes, one batch of change notices. Past it the work
/// fails with [`StoreError::TimedOut`] (503) and its connection is closed, never reused. The slowest
/// operation's p99 in the benchmark is under 10 ms.
pub const DATABASE_DEADLINE: Duration = Duration::from_secs(5);

/// Runs `work` within [`DATABASE_DEADLINE`]; past it, `work` is dropped (and with it any connection it
/// held, which its owner then closes) and the answer is [`StoreError::TimedOut`].
pub async fn within_deadline<T>(
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    within_deadline_at(tokio::time::Instant::now() + DATABASE_DEADLINE, work).await
}

/// Like [`within_deadline`], for work whose deadline began earlier: a queued write's, when it was queued.
pub async fn within_deadline_at<T>(
    deadline: tokio::time::Instant,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout_at(deadline, work).await.unwrap_or(Err(StoreError::TimedOut))
}

pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Attempts at an operation whose transaction the database aborted to resolve a race.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// Runs `operation` again while it fails with [`StoreError::Transient`] (its transaction was rolled back),
/// up to [`TRANSIENT_ATTEMPTS`] times with a short backoff. Nothing else is retried: not a conflict, and
/// not a broken connection, after which a write may or may not have committed.
pub(super) async fn retry_transient<T, F, Fut>(mut operation: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(StoreError::Transient(error)) if attempt < TRANSIENT_ATTEMPTS => {
                tracing::warn!(attempt, error = %error, "retrying after a transient database failure");
                tokio::time::sleep(transient_backoff(u64::from(attempt))).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The wait after attempt `attempt` of work the database aborted to resolve a race, before the next one.
pub(super) fn transient_backoff(attempt: u64) -> std::time::Duration {
    std::time::Duration::from_millis(20 * attempt)
}

/// How often an insert is tried again when the row it collided with was deleted before it could be read.
pub(super) const CREATE_ATTEMPTS: usize = 3;

/// What a write runs inside its transaction: a closure the backend may call more than once (a transient
/// abort is retried) and, on SQLite, from the task that commits a whole group of writes.
pub(super) type WriteFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// Gives a write closure, bound to a name before it is handed to `write` or `write_one_statement`, the
/// signature those expect (a closure is inferred for every connection lifetime only where it is passed).
pub(super) fn write_op<Connection, T, Write>(write: Write) -> Write
where
    Write: for<'c> Fn(&'c mut Connection) -> WriteFuture<'c, T>,
{
    write
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let calls = Cell::new(0);
        let recovers = retry_transient(|| async {
            calls.set(calls.get() + 1);
            if calls.get() < 3 { Err(StoreError::Transient(sqlx::Error::PoolTimedOut)) } else { Ok(calls.get()) }
        })
        .await;
        assert_eq!(recovers.unwrap(), 3);

        calls.set(0);
        let gives_up = retry_transient(|| async {
            calls.set(calls.get() + 1);
            Err::<(), _>(StoreError::Transient(sqlx::Error::PoolTimedOut))
        })
        .await;
        assert!(matches!(gives_up, Err(StoreError::Transient(_))));
        assert_eq!(calls.get(), TRANSIENT_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_conflict_is_never_retried() {
        let calls = Cell::new(0);
        let outcome = retry_transient(|| async {
            calls.set(calls.get() + 1);
            Err::<(), _>(StoreError::Conflict { existing_id: "id_1".into() })
        })
        .await;
        assert!(matches!(outcome, Err(StoreError::Conflict { .. })));
        assert_eq!(calls.get(), 1);
    }
}
