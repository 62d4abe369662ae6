//! Group commit for creates on PostgreSQL: concurrent creates queue here, and a committer takes everything
//! waiting (up to a group's size) and hands it to `commit` (`identities.rs`, `create_identity_group`) as one
//! group, so one statement and one WAL flush serve many creates, while several groups commit at once. Each
//! create is answered only once its group's `commit` has returned, that is after the commit. Alone, a
//! create is a group of one. (SQLite, with its single writer, group-commits every kind of write instead:
//! `sqlite/group_commit.rs`.)
//!
//! A group's deadline is [`DATABASE_DEADLINE`] from when its oldest create was queued, so every create is
//! answered within it, the wait for a group included, however long the groups ahead of it hang: a create
//! whose deadline passed while it waited fails unrun.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::domain::identity::NewIdentity;
use crate::domain::workspace::WorkspaceId;
use crate::store::{DATABASE_DEADLINE, StoreError, within_deadline_at};

/// One create waiting for its group.
pub(super) struct CreateRequest {
    pub workspace: WorkspaceId,
    pub new: NewIdentity,
}

/// The new identity's id, or why this one create failed.
pub(super) type CreateOutcome = Result<String, StoreError>;

struct Pending {
    request: CreateRequest,
    queued_at: Instant,
    reply: oneshot::Sender<CreateOutcome>,
}

pub(super) struct CreateGroups {
    sender: mpsc::Sender<Pending>,
}

impl CreateGroups {
    /// Starts the committer. `commit` gets a group of at most `max_group` creates and the deadline by which
    /// it must return one outcome per create, in order; at most `groups_in_flight` groups are committing at
    /// once.
    pub fn start<Commit, Committed>(max_group: usize, groups_in_flight: usize, commit: Commit) -> Self
    where
        Commit: Fn(Vec<CreateRequest>, Instant) -> Committed + Send + Sync + 'static,
        Committed: Future<Output = Vec<CreateOutcome>> + Send + 'static,
    {
        let (sender, mut queue) = mpsc::channel::<Pending>(max_group * 4);
        let commit = Arc::new(commit);
        let slots = Arc::new(Semaphore::new(groups_in_flight));
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(max_group);
            // A group forms while the earlier ones commit: waiting for a free slot is what lets it grow.
            while let Ok(slot) = slots.clone().acquire_owned().await {
                if queue.recv_many(&mut group, max_group).await == 0 {
                    return;
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
                let committed = commit(requests, first_queued + DATABASE_DEADLINE);
                tokio::spawn(async move {
                    let outcomes = committed.await;
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                    drop(slot);
                });
            }
        });
        Self { sender }
    }

    /// Creates waiting for their group.
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Queues one create and waits for its group's outcome.
    pub async fn create_identity(&self, workspace: &WorkspaceId, new: &NewIdentity) -> CreateOutcome {
        let (reply, answer) = oneshot::channel();
        let request = CreateRequest { workspace: workspace.clone(), new: new.clone() };
        // The committer is gone only while the store shuts down (or after a panic in a commit).
        let stopped = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        let queued_at = Instant::now();
        // A full queue is waited for within the create's deadline, as the wait for its group is.
        within_deadline_at(queued_at + DATABASE_DEADLINE, async {
            self.sender.send(Pending { request, queued_at, reply }).await.map_err(|_| stopped())
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }
}
