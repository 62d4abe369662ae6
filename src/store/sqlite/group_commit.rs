//! Group commit for every identity write on SQLite. A write queues here as a closure, or, for the hottest
//! one, a create, as the row to insert; one committer task takes everything waiting and runs it as one
//! transaction, each write in a savepoint of its own unless it is a single statement (a write refused for
//! its own reasons, such as a conflict, is rolled back alone and its neighbours go on), consecutive creates
//! as one statement (a group of creates alone: that statement, with no transaction around it), and answers
//! every write only after the commit, and its fsync, returned. Under load one fsync covers many writes;
//! alone, a write is a transaction of its own.
//!
//! A failure of the database itself (a full disk, an I/O error, running out of memory, a deadline) fails
//! the whole group and closes its connection. SQLite may already have rolled the whole transaction back on
//! such an error (SQLITE_FULL, SQLITE_IOERR and SQLITE_NOMEM can), and nothing sqlx tells us says whether
//! it did: carrying on, as this committer once did, "committed" later writes by releasing a savepoint of a
//! transaction that was gone, and acknowledged thousands of writes that were never stored. So no write of a
//! failed group is acknowledged, every one of them answers 503, and the next group starts on a fresh
//! connection.

use std::future::Future;
use std::pin::Pin;

use prometheus_client::metrics::histogram::Histogram;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{Executor, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::store::backend::WriteFuture;
use crate::store::sqlite::identities::{IdentityInsert, fit_one_statement, insert_identities, insert_identities_alone};
use crate::store::sqlite::timed_acquire;
use crate::store::{DATABASE_DEADLINE, StoreError, within_deadline_at};

/// Most writes one group takes at once.
const MAX_GROUP: usize = 256;
/// Writes waiting for a group at most; past it a write waits for room, within its deadline.
const MAX_QUEUED: usize = MAX_GROUP * 4;

pub(super) struct GroupWriter {
    queue: mpsc::Sender<Queued>,
}

impl GroupWriter {
    /// Starts the committer, which notes in `connection_waits` how long each group waited for the writer.
    /// It runs on a thread of its own: on the server's runtime, each step of a group (its start, each answer
    /// from SQLite's thread) waited in line behind every request ready to run, while the writer sat idle.
    pub fn start(writer: SqlitePool, connection_waits: Histogram) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED);
        // The runtime is built on its thread: dropped here, inside the server's runtime, after a failed
        // spawn, it would panic instead of returning the error.
        let (started, start) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new().name("sigil-committer".to_owned()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => {
                    let _ = started.send(Ok(()));
                    runtime.block_on(commit_groups(writer, receiver, connection_waits));
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                }
            }
        })?;
        start.recv().map_err(|_| std::io::Error::other("the committer's thread ended as it started"))??;
        Ok(Self { queue })
    }

    /// Writes waiting for their group.
    pub fn queued(&self) -> usize {
        MAX_QUEUED - self.queue.capacity()
    }

    /// Runs `write` in the next group, in a savepoint of its own, and returns its outcome once that group
    /// has committed.
    pub async fn run<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.queue(write, true).await
    }

    /// Like [`run`](Self::run), without the savepoint, for a write that changes the database with at most
    /// one statement, and only when it succeeds: a statement refused for its own reasons undoes itself,
    /// and the transaction goes on. That saves two round trips to SQLite's thread (an update, a delete).
    pub async fn run_one_statement<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.queue(write, false).await
    }

    /// Inserts a new identity in the next group, with the creates next to it in one statement, and returns
    /// its id, or the conflict, once that group has committed.
    pub async fn insert_identity(&self, insert: IdentityInsert) -> Result<String, StoreError> {
        let (reply, answer) = oneshot::channel();
        let queued_at = Instant::now();
        self.send(Queued::Insert(Box::new(QueuedInsert { insert, queued_at, reply })), answer).await
    }

    async fn queue<T, Write>(&self, write: Write, savepoint: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued_at = Instant::now();
        let write = QueuedClosure { write: Some(write), savepoint, queued_at, outcome: None, reply };
        self.send(Queued::Write(Box::new(write)), answer).await
    }

    async fn send<T>(&self, queued: Queued, answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        // The committer is gone only while the store shuts down; a group that panicked drops its replies.
        let stopped = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        // A full queue is waited for within the write's deadline too: the write runs in a task of its own
        // (`idempotency::run_write`), which no request timeout ends.
        within_deadline_at(queued.queued_at() + DATABASE_DEADLINE, async {
            self.queue.send(queued).await.map_err(|_| stopped())
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }
}

/// What waits for a group.
enum Queued {
    Write(Box<dyn QueuedWrite>),
    Insert(Box<QueuedInsert>),
}

impl Queued {
    fn queued_at(&self) -> Instant {
        match self {
            Queued::Write(write) => write.queued_at(),
            Queued::Insert(insert) => insert.queued_at,
        }
    }

    fn insert(&mut self) -> Option<&mut IdentityInsert> {
        match self {
            Queued::Insert(queued) => Some(&mut queued.insert),
            Queued::Write(_) => None,
        }
    }

    /// Answers the caller with the write's outcome, or with the group's failure when it did not commit.
    fn answer(self, group: Result<(), &StoreError>) {
        match self {
            Queued::Write(write) => write.answer(group),
            Queued::Insert(queued) => {
                let outcome = match (group, queued.insert.outcome) {
                    (Ok(()), Some(outcome)) => outcome,
                    (Err(failure), _) => Err(failure.same_kind()),
                    (Ok(()), None) => Err(StoreError::InvalidData("a queued create never ran".to_owned())),
                };
                let _ = queued.reply.send(outcome);
            }
        }
    }
}

struct QueuedInsert {
    insert: IdentityInsert,
    queued_at: Instant,
    reply: oneshot::Sender<Result<String, StoreError>>,
}

/// How a write went, as the committer needs to know it.
enum Ran {
    Succeeded,
    /// The write refused itself (a conflict, a missing identity): the database is fine.
    Refused,
    /// The database failed under the write: the transaction may be gone.
    DatabaseFailed(StoreError),
}

/// A closure's write of any outcome type, as the committer sees it.
trait QueuedWrite: Send {
    fn needs_savepoint(&self) -> bool;

    fn queued_at(&self) -> Instant;

    fn run<'c>(&'c mut self, connection: &'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = Ran> + Send + 'c>>;

    fn answer(self: Box<Self>, group: Result<(), &StoreError>);
}

struct QueuedClosure<T, Write> {
    write: Option<Write>,
    savepoint: bool,
    queued_at: Instant,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, Write> QueuedWrite for QueuedClosure<T, Write>
where
    T: Send,
    Write: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send,
{
    fn needs_savepoint(&self) -> bool {
        self.savepoint
    }

    fn queued_at(&self) -> Instant {
        self.queued_at
    }

    fn run<'c>(&'c mut self, connection: &'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = Ran> + Send + 'c>> {
        Box::pin(async move {
            let Some(write) = self.write.take() else {
                return Ran::DatabaseFailed(StoreError::InvalidData("a queued write ran twice".to_owned()));
            };
            let outcome = write(connection).await;
            let ran = match &outcome {
                Ok(_) => Ran::Succeeded,
                // A refusal is decided before the write changes anything; any other failure (stored data
                // that cannot be read back included) may come after a statement that a write without a
                // savepoint could not undo.
                Err(error) if error.is_refusal() => Ran::Refused,
                Err(error) => Ran::DatabaseFailed(error.same_kind()),
            };
            self.outcome = Some(outcome);
            ran
        })
    }

    fn answer(self: Box<Self>, group: Result<(), &StoreError>) {
        let outcome = match (group, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            (Err(failure), _) => Err(failure.same_kind()),
            (Ok(()), None) => Err(StoreError::InvalidData("a queued write never ran".to_owned())),
        };
        let _ = self.reply.send(outcome);
    }
}

async fn commit_groups(writer: SqlitePool, mut queue: mpsc::Receiver<Queued>, connection_waits: Histogram) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // The writer, kept from a group that committed for the next one when that one is already waiting:
    // handing it back to sqlx's pool costs a ping on SQLite's thread before anyone can take it again,
    // and under load that ping sat between every two groups.
    let mut kept: Option<GroupConnection> = None;
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        // A group runs as a task of its own so that a panic in one write costs only its group (whose
        // callers get 503, and whose connection is closed), not the committer.
        let (writer, connection_waits) = (writer.clone(), connection_waits.clone());
        let mut writes = std::mem::take(&mut group);
        // Every write is answered within the deadline from when it was queued, the wait for its group
        // included: one whose deadline passed while it waited fails unrun.
        let now = Instant::now();
        let (expired, waiting): (Vec<_>, Vec<_>) =
            writes.drain(..).partition(|write| write.queued_at() + DATABASE_DEADLINE <= now);
        for write in expired {
            write.answer(Err(&StoreError::TimedOut));
        }
        writes = waiting;
        let Some(first_queued) = writes.iter().map(|write| write.queued_at()).min() else {
            // Nothing left to run: the writer goes back to the pool, as when the queue is empty.
            kept = None;
            group = writes;
            continue;
        };
        let mut connection = kept.take();
        let committed = tokio::spawn(async move {
            let deadline = first_queued + DATABASE_DEADLINE;
            let outcome = run_group(&writer, &connection_waits, &mut connection, &mut writes, deadline).await;
            if let Err(error) = &outcome {
                tracing::error!(%error, writes = writes.len(), "a group of writes failed; none of them was stored");
            }
            for write in writes.drain(..) {
                write.answer(outcome.as_ref().map(|_| ()));
            }
            (writes, connection)
        });
        match committed.await {
            Ok((emptied, connection)) => {
                group = emptied;
                kept = connection.filter(|_| !queue.is_empty());
            }
            Err(panic) => tracing::error!(error = %panic, "a group of writes panicked; its writes answered 503"),
        }
    }
}

/// The writer connection for one group. Unless the group commits, it is closed, never handed back: after a
/// failure, a deadline or a panic it may still hold a transaction, or hold none where one is expected.
struct GroupConnection {
    connection: PoolConnection<Sqlite>,
    committed: bool,
}

impl Drop for GroupConnection {
    fn drop(&mut self) {
        if !self.committed {
            self.connection.close_on_drop();
        }
    }
}

/// Runs the group's writes by `deadline`, and then commits them however long that takes: once COMMIT is
/// sent, SQLite finishes it even if nobody waits, so answering a write before the commit returned could
/// answer as failed a write that was stored. The group runs on `connection` if the last one left it there,
/// else on one taken from `writer`; it is left there only if the group commits.
async fn run_group(
    writer: &SqlitePool,
    connection_waits: &Histogram,
    connection: &mut Option<GroupConnection>,
    writes: &mut [Queued],
    deadline: Instant,
) -> Result<(), StoreError> {
    let mut group = match connection.take() {
        Some(kept) => {
            // Handed over without a wait: counted as one, so that the histogram still counts every group.
            connection_waits.observe(0.0);
            kept
        }
        None => {
            within_deadline_at(deadline, async {
                Ok(GroupConnection { connection: timed_acquire(writer, connection_waits).await?, committed: false })
            })
            .await?
        }
    };
    // A kept connection comes from a group that committed: until this one does, it is in doubt.
    group.committed = false;
    group.committed = run_writes(&mut group.connection, writes, deadline).await?;
    if group.committed {
        *connection = Some(group);
    }
    Ok(())
}

/// Runs the group's writes and commits them; whether they committed (creates alone may be stored while
/// telling their callers whom they collided with failed, which leaves the connection in doubt).
async fn run_writes(
    connection: &mut SqliteConnection,
    writes: &mut [Queued],
    deadline: Instant,
) -> Result<bool, StoreError> {
    let group_size = writes.len();
    let mut inserts: Vec<&mut IdentityInsert> = writes.iter_mut().map_while(Queued::insert).collect();
    // Creates alone, which one statement inserts, need no transaction around it: BEGIN and COMMIT would be
    // two more hand-offs to SQLite's thread, for a group of creates each time they come in a stream.
    if inserts.len() == group_size && fit_one_statement(&inserts) {
        return insert_identities_alone(connection, &mut inserts, deadline).await;
    }
    drop(inserts);
    within_deadline_at(deadline, async {
        connection.execute("BEGIN IMMEDIATE").await?;
        let mut next = 0;
        while next < writes.len() {
            let Queued::Write(write) = &mut writes[next] else {
                let mut inserts: Vec<&mut IdentityInsert> =
                    writes[next..].iter_mut().map_while(Queued::insert).collect();
                next += inserts.len();
                insert_identities(connection, &mut inserts).await?;
                continue;
            };
            next += 1;
            let savepoint = write.needs_savepoint();
            if savepoint {
                connection.execute("SAVEPOINT write").await?;
            }
            match write.run(connection).await {
                Ran::Succeeded if savepoint => {
                    connection.execute("RELEASE write").await?;
                }
                Ran::Refused if savepoint => {
                    connection.execute("ROLLBACK TO write; RELEASE write").await?;
                }
                Ran::Succeeded | Ran::Refused => {}
                Ran::DatabaseFailed(error) => return Err(error),
            }
        }
        Ok(())
    })
    .await?;
    connection.execute("COMMIT").await?;
    Ok(true)
}
