//! Group commit for every identity write on SQLite. A write queues here as a closure; one committer task
//! takes everything waiting and runs it as one transaction, each write in a savepoint of its own unless it
//! is a single statement (a write that fails is rolled back alone, its neighbours are not), and answers every write only after the
//! commit, and its fsync, returned. Under load one fsync covers many writes; alone, a write is a
//! transaction of its own.

use std::future::Future;
use std::pin::Pin;

use sqlx::sqlite::SqlitePool;
use sqlx::{Acquire, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;
use crate::store::sql::WriteFuture;

/// Most writes one group takes at once.
const MAX_GROUP: usize = 256;

pub(super) struct GroupWriter {
    queue: mpsc::Sender<Box<dyn QueuedWrite>>,
}

impl GroupWriter {
    pub fn start(writer: SqlitePool) -> Self {
        let (queue, receiver) = mpsc::channel(MAX_GROUP * 4);
        tokio::spawn(commit_groups(writer, receiver));
        Self { queue }
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
    /// one statement, and only when it succeeds: a statement that fails undoes itself, and the
    /// transaction goes on. That saves two round trips to SQLite's thread on the hottest write, a create.
    pub async fn run_one_statement<T, Write>(&self, write: Write) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.queue(write, false).await
    }

    async fn queue<T, Write>(&self, write: Write, savepoint: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Write: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        // The committer is gone only while the store shuts down; a group that panicked drops its replies.
        let stopped = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        let queued = Box::new(Queued { write: Some(write), savepoint, outcome: None, reply });
        self.queue.send(queued).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A write of any outcome type, as the committer sees it.
trait QueuedWrite: Send {
    fn needs_savepoint(&self) -> bool;

    /// Runs the write on the group's transaction; `false` when it failed and its savepoint is rolled back.
    fn run<'c>(&'c mut self, connection: &'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>>;

    /// Answers the caller with the write's outcome, or with the group's failure when it did not commit.
    fn answer(self: Box<Self>, group: Result<(), &StoreError>);
}

struct Queued<T, Write> {
    write: Option<Write>,
    savepoint: bool,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, Write> QueuedWrite for Queued<T, Write>
where
    T: Send,
    Write: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send,
{
    fn needs_savepoint(&self) -> bool {
        self.savepoint
    }

    fn run<'c>(&'c mut self, connection: &'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>> {
        Box::pin(async move {
            let Some(write) = self.write.take() else { return false };
            let outcome = write(connection).await;
            let succeeded = outcome.is_ok();
            self.outcome = Some(outcome);
            succeeded
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

async fn commit_groups(writer: SqlitePool, mut queue: mpsc::Receiver<Box<dyn QueuedWrite>>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        // A group runs as a task of its own so that a panic in one write costs only its group (whose
        // callers get 503), not the committer.
        let writer = writer.clone();
        let mut writes = std::mem::take(&mut group);
        let committed = tokio::spawn(async move {
            let outcome = run_group(&writer, &mut writes).await;
            for write in writes.drain(..) {
                write.answer(outcome.as_ref().map(|_| ()));
            }
            writes
        });
        match committed.await {
            Ok(emptied) => group = emptied,
            Err(panic) => tracing::error!(error = %panic, "a group of writes panicked; its writes answered 503"),
        }
    }
}

async fn run_group(writer: &SqlitePool, writes: &mut [Box<dyn QueuedWrite>]) -> Result<(), StoreError> {
    let mut tx = writer.begin().await?;
    for write in writes.iter_mut() {
        if !write.needs_savepoint() {
            write.run(&mut tx).await;
            continue;
        }
        let mut savepoint = tx.begin().await?;
        if write.run(&mut savepoint).await {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
