//! Idempotency keys: a write recorded under its `Idempotency-Key` in its own transaction, the SQL both
//! databases run for it, and its one implementation ([`impl_idempotency_keys!`]).
//!
//! A write with a key first looks for the key's record in its transaction: found, the write does not run
//! and the record answers (a replay, or 422 for another request's key). Not found, the write runs and
//! its answer goes in beside it, so the write and its record commit together or not at all: there is no
//! moment at which the write is stored and its key is not, and no claim to expire or take over. Two
//! requests with one key never run at once: on SQLite every write passes the one writer in turn; on
//! PostgreSQL the transaction first takes an advisory lock on the key, and one that finds it taken gives
//! up at once ([`StoreError::IdempotencyKeyBusy`]) instead of holding a connection while it waits.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::idempotency::{IdempotencyRecord, RecordedAnswer, StoredResponse};
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;

/// Rows a purge deletes at most per statement (expired idempotency records, ended ratelimit counters), so
/// that a purge never holds the writer for long.
pub const PURGE_BATCH: u64 = 1_000;

/// The records of `Idempotency-Key`s, by workspace.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// The live record of a key, read without the writer (a retry looks here before it queues a write).
    async fn find_idempotency_key(
        &self,
        workspace: &WorkspaceId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Deletes at most [`PURGE_BATCH`] expired records of any workspace (housekeeping, which returns no
    /// data), through the same queue as every write; returns how many.
    async fn purge_expired_idempotency_keys(&self) -> Result<u64, StoreError>;
}

/// How a write's outcome is answered (its status and body), for its record. Called inside the write's
/// transaction.
pub type Answer<T> = Arc<dyn Fn(&T) -> StoredResponse + Send + Sync>;

/// A write's `Idempotency-Key`, under which the write records its answer in its own transaction.
pub struct Recording<T> {
    pub key: String,
    /// What makes a retry the same request (`domain::idempotency::fingerprint`).
    pub fingerprint: String,
    /// Until when (unix ms) the answer is replayed.
    pub keep_until: i64,
    pub answer: Answer<T>,
}

impl<T> Clone for Recording<T> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            keep_until: self.keep_until,
            answer: Arc::clone(&self.answer),
        }
    }
}

/// What a write with an optional [`Recording`] did.
#[derive(Debug)]
pub enum Recorded<T> {
    /// It ran; with a recording, its answer is stored with it.
    Ran(T),
    /// It did not run: the key's record answered.
    Answered(RecordedAnswer),
}

/// The live record of key `$2` in workspace `$1`. A record without a status is a claim an older Sigil
/// holds while its request runs, during a rolling upgrade: the key is busy until it is answered or expires.
pub(super) const FIND_IDEMPOTENCY_KEY: &str = "SELECT fingerprint, status, response_body FROM idempotency_keys \
     WHERE workspace_id = $1 AND idempotency_key = $2 AND expires_at >= $3";
/// Stores an answer under a key that has no live record (an expired one is replaced). Affects no row when a
/// live record holds the key.
pub(super) const RECORD_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys \
     (workspace_id, idempotency_key, fingerprint, status, response_body, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace_id, idempotency_key) DO UPDATE SET \
     fingerprint = excluded.fingerprint, status = excluded.status, response_body = excluded.response_body, \
     created_at = excluded.created_at, expires_at = excluded.expires_at \
     WHERE idempotency_keys.expires_at < excluded.created_at";
/// Expiry is checked again on the row itself: on PostgreSQL a record the subquery found expired may have
/// been replaced by a live one before the delete reaches it, and only the outer condition is re-checked.
pub(super) const PURGE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys \
     WHERE expires_at < $1 AND (workspace_id, idempotency_key) IN \
     (SELECT workspace_id, idempotency_key FROM idempotency_keys WHERE expires_at < $1 LIMIT $2)";

/// A record as read, or `None` for an older Sigil's claim, which holds no answer yet.
pub(super) fn idempotency_record(
    (fingerprint, status, body): (String, Option<i32>, Option<String>),
) -> Option<IdempotencyRecord> {
    let (status, body) = (status?, body?);
    Some(IdempotencyRecord {
        fingerprint,
        response: StoredResponse { status: u16::try_from(status).unwrap_or(500), body },
    })
}

/// Implements [`IdempotencyKeys`] for a [`Backend`](super::backend::Backend), and the two steps every write
/// with a key takes in its transaction: [`answered_in`](Self::answered_in) before it runs and
/// [`recorded_in`](Self::recorded_in) after.
macro_rules! impl_idempotency_keys {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use $crate::domain::idempotency::{IdempotencyRecord, RecordedAnswer};
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::backend::{Backend, CREATE_ATTEMPTS, WriteFuture, now_ms, write_op};
            use $crate::store::changes::Written;
            use $crate::store::idempotency_keys::*;

            impl $store {
                /// Runs `write` in a transaction of its own, or as one statement when it is one (`one_statement`)
                /// and has no key to record; with a `recording`, answers from the key's record or records the
                /// write's answer beside it ([`answered_in`](Self::answered_in),
                /// [`recorded_in`](Self::recorded_in)). A write that comes back contended is run again.
                pub(super) async fn write_recorded<T, Write>(
                    &self,
                    workspace: &WorkspaceId,
                    recording: Option<Recording<T>>,
                    one_statement: bool,
                    write: Write,
                ) -> Result<Recorded<T>, StoreError>
                where
                    T: Send + 'static,
                    Write: for<'c> Fn(&'c mut <Self as Backend>::Connection) -> WriteFuture<'c, Written<T>>
                        + Send
                        + Sync
                        + 'static,
                {
                    let one_statement = one_statement && recording.is_none();
                    let (workspace, write) = (workspace.clone(), std::sync::Arc::new(write));
                    let recorded_write = write_op(move |connection: &mut <Self as Backend>::Connection| {
                        let (workspace, recording, write) =
                            (workspace.clone(), recording.clone(), std::sync::Arc::clone(&write));
                        Box::pin(async move {
                            if let Some(answered) =
                                Self::answered_in(connection, &workspace, recording.as_ref()).await?
                            {
                                return Ok(Written::unchanged(Recorded::Answered(answered)));
                            }
                            let written = write(&mut *connection).await?;
                            Self::recorded_in(connection, &workspace, recording.as_ref(), written).await
                        })
                    });
                    // Contended: nothing was written, since a row the write read changed under it (on
                    // PostgreSQL, an identity deleted or an externalId taken between two of its statements).
                    let mut attempts = 1;
                    loop {
                        let written = if one_statement {
                            self.write_one_statement(recorded_write.clone()).await
                        } else {
                            self.write(recorded_write.clone()).await
                        };
                        match written {
                            Err(StoreError::Contended(_)) if attempts < CREATE_ATTEMPTS => attempts += 1,
                            written => return written.inspect_err(|error| self.write_failed(error)),
                        }
                    }
                }

                /// Before a write with `recording` runs in this transaction: holds its key (PostgreSQL), and
                /// returns the record's answer when the key has one.
                pub(super) async fn answered_in<T>(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    recording: Option<&Recording<T>>,
                ) -> Result<Option<RecordedAnswer>, StoreError> {
                    let Some(recording) = recording else {
                        return Ok(None);
                    };
                    if let Some(hold) = <Self as Backend>::HOLD_IDEMPOTENCY_KEY {
                        let held: bool = sqlx::query_scalar(hold)
                            .bind(workspace.as_str())
                            .bind(&recording.key)
                            .fetch_one(&mut *connection)
                            .await?;
                        if !held {
                            return Err(StoreError::IdempotencyKeyBusy);
                        }
                    }
                    let row: Option<(String, Option<i32>, Option<String>)> = sqlx::query_as(FIND_IDEMPOTENCY_KEY)
                        .bind(workspace.as_str())
                        .bind(&recording.key)
                        .bind(now_ms())
                        .fetch_optional(&mut *connection)
                        .await?;
                    match row.map(idempotency_record) {
                        None => Ok(None),
                        Some(Some(record)) => Ok(Some(record.answer_for(&recording.fingerprint))),
                        Some(None) => Err(StoreError::IdempotencyKeyBusy),
                    }
                }

                /// After a write ran in this transaction: stores its answer under the key of `recording`, when
                /// there is one.
                pub(super) async fn recorded_in<T>(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    recording: Option<&Recording<T>>,
                    written: Written<T>,
                ) -> Result<Written<Recorded<T>>, StoreError> {
                    let Some(recording) = recording else {
                        return Ok(written.map(Recorded::Ran));
                    };
                    let answer = (recording.answer)(&written.outcome);
                    let now = now_ms();
                    let recorded = sqlx::query(RECORD_IDEMPOTENCY_KEY)
                        .bind(workspace.as_str())
                        .bind(&recording.key)
                        .bind(&recording.fingerprint)
                        .bind(i32::from(answer.status))
                        .bind(answer.body)
                        .bind(now)
                        .bind(recording.keep_until.max(now))
                        .execute(&mut *connection)
                        .await?;
                    if recorded.rows_affected() != 1 {
                        return Err(StoreError::Contended("another request recorded this idempotency key first"));
                    }
                    Ok(written.map(Recorded::Ran))
                }
            }

            #[async_trait::async_trait]
            impl IdempotencyKeys for $store {
                async fn find_idempotency_key(
                    &self,
                    workspace: &WorkspaceId,
                    key: &str,
                ) -> Result<Option<IdempotencyRecord>, StoreError> {
                    let (workspace, key) = (workspace.clone(), key.to_owned());
                    let row: Option<(String, Option<i32>, Option<String>)> = self
                        .on_reader(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_as(FIND_IDEMPOTENCY_KEY)
                                    .bind(workspace.as_str())
                                    .bind(key)
                                    .bind(now_ms())
                                    .fetch_optional(connection)
                                    .await?)
                            })
                        })
                        .await?;
                    Ok(row.and_then(idempotency_record))
                }

                async fn purge_expired_idempotency_keys(&self) -> Result<u64, StoreError> {
                    self.write_one_statement(|connection| {
                        Box::pin(async move {
                            let purged = sqlx::query(PURGE_IDEMPOTENCY_KEYS)
                                .bind(now_ms())
                                .bind(i64::try_from(PURGE_BATCH).unwrap_or(i64::MAX))
                                .execute(connection)
                                .await?;
                            Ok(Written::unchanged(purged.rows_affected()))
                        })
                    })
                    .await
                }
            }
        };
    };
}
pub(super) use impl_idempotency_keys;
