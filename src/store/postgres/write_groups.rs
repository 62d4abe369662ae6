//! Group commit on PostgreSQL, for writes that one statement can make for many at once (creates, upserts
//! without ratelimits, updates of meta alone): concurrent writes of one kind queue here, and a committer
//! takes everything waiting (up to a group's size) and hands it to `commit` (`identities.rs`) as one group,
//! so one statement and one WAL flush serve many writes, while several groups commit at once. Groups of
//! every kind share their slots ([`GroupSlots`]), so that they never hold more connections than that.
//! Each write is answered once its outcome is decided for good (after the statement that decided it
//! committed), not when its whole group is: members of a group that run alone after its statement (a
//! second write of one identity, say) do not hold up the others. Alone, a write is a group of one.
//! (SQLite, with its single writer, group-commits every kind of write instead: `sqlite/group_commit.rs`.)
//!
//! A group's deadline is [`DATABASE_DEADLINE`] from when its oldest write was queued, so every write is
//! answered within it, the wait for a group included, however long the groups ahead of it hang: a write
//! whose deadline passed while it waited fails unrun.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::store::{DATABASE_DEADLINE, StoreError, within_deadline_at};

struct Pending<Request, Outcome> {
    request: Request,
    queued_at: Instant,
    reply: Reply<Outcome>,
}

/// How many groups, of every kind, commit at once: each holds a connection while it does.
pub(super) type GroupSlots = Arc<Semaphore>;

type Reply<Outcome> = oneshot::Sender<Result<Outcome, StoreError>>;

/// Where a group's outcomes go, by position in the group: each write is answered once.
pub(super) struct Answers<Outcome> {
    replies: Vec<Option<Reply<Outcome>>>,
}

impl<Outcome> Answers<Outcome> {
    /// Answers the group's `index`th write, unless it was answered already.
    pub fn send(&mut self, index: usize, outcome: Result<Outcome, StoreError>) {
        if let Some(reply) = self.replies.get_mut(index).and_then(Option::take) {
            let _ = reply.send(outcome);
        }
    }

    /// Answers every write of the group not answered yet with `error`'s kind.
    pub fn fail_the_rest(&mut self, error: &StoreError) {
        for reply in self.replies.iter_mut().filter_map(Option::take) {
            let _ = reply.send(Err(error.same_kind()));
        }
    }
}

pub(super) struct WriteGroups<Request, Outcome> {
    sender: mpsc::Sender<Pending<Request, Outcome>>,
    /// Writes taken from the queue into a group that waits for a slot.
    waiting_for_a_slot: Arc<AtomicUsize>,
}

impl<Request: Send + 'static, Outcome: Send + 'static> WriteGroups<Request, Outcome> {
    /// Starts the committer. `commit` gets a group of at most `max_group` writes, where to answer each, and
    /// the deadline by which it must have answered them all; it runs once it holds one of `slots`.
    pub fn start<Commit, Committed>(max_group: usize, slots: GroupSlots, commit: Commit) -> Self
    where
        Commit: Fn(Vec<Request>, Answers<Outcome>, Instant) -> Committed + Send + Sync + 'static,
        Committed: Future<Output = ()> + Send + 'static,
    {
        let (sender, mut queue) = mpsc::channel::<Pending<Request, Outcome>>(max_group * 4);
        let commit = Arc::new(commit);
        let waiting_for_a_slot = Arc::new(AtomicUsize::new(0));
        let held_for_a_slot = Arc::clone(&waiting_for_a_slot);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(max_group);
            while queue.recv_many(&mut group, max_group).await > 0 {
                // A group grows while the earlier ones commit: writes that came while it waited for a
                // slot join it.
                held_for_a_slot.store(group.len(), Ordering::Relaxed);
                let slot = slots.clone().acquire_owned().await;
                held_for_a_slot.store(0, Ordering::Relaxed);
                let Ok(slot) = slot else { return };
                while group.len() < max_group {
                    match queue.try_recv() {
                        Ok(pending) => group.push(pending),
                        Err(_) => break,
                    }
                }
                let now = Instant::now();
                let (expired, waiting): (Vec<_>, Vec<_>) =
                    group.drain(..).partition(|pending| pending.queued_at + DATABASE_DEADLINE <= now);
                for pending in expired {
                    let _ = pending.reply.send(Err(StoreError::TimedOut));
                }
                group = waiting;
                let Some(first_queued) = group.iter().map(|pending| pending.queued_at).min() else { continue };
                let (requests, replies): (Vec<_>, Vec<_>) =
                    group.drain(..).map(|pending| (pending.request, pending.reply)).unzip();
                let answers = Answers { replies: replies.into_iter().map(Some).collect() };
                let committed = commit(requests, answers, first_queued + DATABASE_DEADLINE);
                tokio::spawn(async move {
                    committed.await;
                    drop(slot);
                });
            }
        });
        Self { sender, waiting_for_a_slot }
    }

    /// Writes waiting for their group.
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity() + self.waiting_for_a_slot.load(Ordering::Relaxed)
    }

    /// Queues one write and waits for its group's outcome.
    pub async fn write(&self, request: Request) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        // The committer is gone only while the store shuts down (or after a panic in a commit).
        let stopped = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        let queued_at = Instant::now();
        // A full queue is waited for within the write's deadline, as the wait for its group is.
        within_deadline_at(queued_at + DATABASE_DEADLINE, async {
            self.sender.send(Pending { request, queued_at, reply }).await.map_err(|_| stopped())
        })
        .await?;
        // Bounded too: behind groups of other kinds, whose writes came later, a write could wait for a slot
        // past its deadline. Past it, a write not yet in a group is never run.
        within_deadline_at(queued_at + DATABASE_DEADLINE, async { answer.await.map_err(|_| stopped()) }).await?
    }
}
