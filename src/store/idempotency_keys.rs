//! Idempotency keys: the SQL both databases run for their records, and its one implementation
//! ([`impl_idempotency_keys!`]).

use async_trait::async_trait;

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;

/// The records of `Idempotency-Key`s, by workspace.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// Claims an Idempotency-Key for a request with `fingerprint` until `lease_until` (unix ms). `None`: the
    /// caller holds the key and must complete or release it. `Some`: the live record that holds it.
    async fn claim_idempotency_key(
        &self,
        workspace: &WorkspaceId,
        key: &str,
        fingerprint: &str,
        lease_until: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// The live (unexpired) record of a key.
    async fn find_idempotency_key(
        &self,
        workspace: &WorkspaceId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Stores the response of the request that holds the key, to be replayed until `keep_until` (unix ms).
    async fn complete_idempotency_key(
        &self,
        workspace: &WorkspaceId,
        key: &str,
        response: &StoredResponse,
        keep_until: i64,
    ) -> Result<(), StoreError>;

    /// Frees a claimed key whose request produced nothing worth replaying.
    async fn release_idempotency_key(&self, workspace: &WorkspaceId, key: &str) -> Result<(), StoreError>;

    /// Deletes expired idempotency records of every workspace (housekeeping, which returns no data); returns
    /// how many.
    async fn purge_expired_idempotency_keys(&self) -> Result<u64, StoreError>;
}

/// Claims a key that is free or whose record expired; returns no row when a live record holds it.
pub(super) const CLAIM_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys \
     (workspace_id, idempotency_key, fingerprint, status, response_body, created_at, expires_at) \
     VALUES ($1, $2, $3, NULL, NULL, $4, $5) ON CONFLICT (workspace_id, idempotency_key) DO UPDATE SET \
     fingerprint = excluded.fingerprint, status = NULL, response_body = NULL, created_at = excluded.created_at, \
     expires_at = excluded.expires_at WHERE idempotency_keys.expires_at < excluded.created_at RETURNING workspace_id";
pub(super) const FIND_IDEMPOTENCY_KEY: &str = "SELECT fingerprint, status, response_body FROM idempotency_keys \
     WHERE workspace_id = $1 AND idempotency_key = $2 AND expires_at >= $3";
pub(super) const COMPLETE_IDEMPOTENCY_KEY: &str = "UPDATE idempotency_keys SET status = $3, response_body = $4, \
     expires_at = $5 WHERE workspace_id = $1 AND idempotency_key = $2 AND status IS NULL";
pub(super) const RELEASE_IDEMPOTENCY_KEY: &str =
    "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND idempotency_key = $2 AND status IS NULL";
pub(super) const PURGE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE expires_at < $1";

pub(super) fn idempotency_record(
    (fingerprint, status, body): (String, Option<i32>, Option<String>),
) -> IdempotencyRecord {
    let response = match (status, body) {
        (Some(status), Some(body)) => Some(StoredResponse { status: u16::try_from(status).unwrap_or(500), body }),
        _ => None,
    };
    IdempotencyRecord { fingerprint, response }
}

/// Implements [`IdempotencyKeys`] for a [`Backend`](super::backend::Backend).
macro_rules! impl_idempotency_keys {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use $crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::backend::{Backend, CREATE_ATTEMPTS, now_ms};
            use $crate::store::changes::Written;
            use $crate::store::idempotency_keys::*;

            #[async_trait::async_trait]
            impl IdempotencyKeys for $store {
                async fn claim_idempotency_key(
                    &self,
                    workspace: &WorkspaceId,
                    key: &str,
                    fingerprint: &str,
                    lease_until: i64,
                ) -> Result<Option<IdempotencyRecord>, StoreError> {
                    // A record can expire or be released between the claim and the read; then claim again.
                    for _ in 0..CREATE_ATTEMPTS {
                        let owned = (workspace.clone(), key.to_owned(), fingerprint.to_owned());
                        let claimed: Option<String> = self
                            .write_one_statement(move |connection| {
                                let (workspace, key, fingerprint) = owned.clone();
                                Box::pin(async move {
                                    let claimed = sqlx::query_scalar(CLAIM_IDEMPOTENCY_KEY)
                                        .bind(workspace.as_str())
                                        .bind(key)
                                        .bind(fingerprint)
                                        .bind(now_ms())
                                        .bind(lease_until)
                                        .fetch_optional(&mut *connection)
                                        .await?;
                                    Ok(Written::unchanged(claimed))
                                })
                            })
                            .await?;
                        if claimed.is_some() {
                            return Ok(None);
                        }
                        if let Some(record) = self.find_idempotency_key(workspace, key).await? {
                            return Ok(Some(record));
                        }
                    }
                    Err(StoreError::Contended("the idempotency key was claimed and released concurrently"))
                }

                async fn find_idempotency_key(
                    &self,
                    workspace: &WorkspaceId,
                    key: &str,
                ) -> Result<Option<IdempotencyRecord>, StoreError> {
                    let (workspace, key) = (workspace.clone(), key.to_owned());
                    let row: Option<(String, Option<i32>, Option<String>)> = self
                        .on_writer(|connection| {
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
                    Ok(row.map(idempotency_record))
                }

                async fn complete_idempotency_key(
                    &self,
                    workspace: &WorkspaceId,
                    key: &str,
                    response: &StoredResponse,
                    keep_until: i64,
                ) -> Result<(), StoreError> {
                    let owned = (workspace.clone(), key.to_owned(), response.clone());
                    self.write_one_statement(move |connection| {
                        let (workspace, key, response) = owned.clone();
                        Box::pin(async move {
                            sqlx::query(COMPLETE_IDEMPOTENCY_KEY)
                                .bind(workspace.as_str())
                                .bind(key)
                                .bind(i32::from(response.status))
                                .bind(response.body)
                                .bind(keep_until)
                                .execute(&mut *connection)
                                .await?;
                            Ok(Written::unchanged(()))
                        })
                    })
                    .await
                }

                async fn release_idempotency_key(&self, workspace: &WorkspaceId, key: &str) -> Result<(), StoreError> {
                    let owned = (workspace.clone(), key.to_owned());
                    self.write_one_statement(move |connection| {
                        let (workspace, key) = owned.clone();
                        Box::pin(async move {
                            sqlx::query(RELEASE_IDEMPOTENCY_KEY)
                                .bind(workspace.as_str())
                                .bind(key)
                                .execute(&mut *connection)
                                .await?;
                            Ok(Written::unchanged(()))
                        })
                    })
                    .await
                }

                async fn purge_expired_idempotency_keys(&self) -> Result<u64, StoreError> {
                    self.on_writer(|connection| {
                        Box::pin(async move {
                            let purged = sqlx::query(PURGE_IDEMPOTENCY_KEYS).bind(now_ms()).execute(connection).await?;
                            Ok(purged.rows_affected())
                        })
                    })
                    .await
                }
            }
        };
    };
}
pub(super) use impl_idempotency_keys;
