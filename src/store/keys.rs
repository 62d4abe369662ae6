//! Keys: what the store offers for them, the SQL both databases run, and its one implementation
//! ([`impl_keys!`]).

use async_trait::async_trait;

use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;

/// A key to store: everything but the key itself, of which only the hash is kept.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub api_id: String,
    pub hash: String,
    pub start: String,
    pub name: Option<String>,
    /// JSON text of an object.
    pub meta: Option<String>,
    /// The identity to link the key to, got or created with it.
    pub external_id: Option<String>,
    pub expires: Option<i64>,
    pub enabled: bool,
    /// JSON text of `{remaining, refill?}`.
    pub credits: Option<String>,
    /// JSON text of the key's ratelimits, as identities store theirs.
    pub ratelimits: String,
}

/// Keys, by workspace.
#[async_trait]
pub trait Keys: Send + Sync {
    /// Stores the key and returns its id. With an externalId, the key is linked to the live identity
    /// holding it, which is created (empty meta, no ratelimits) in the same transaction when there is none:
    /// any number of concurrent creates of keys for one new externalId end linked to one identity, and none
    /// fails for it.
    async fn create_key(&self, workspace: &WorkspaceId, key: &NewKey) -> Result<String, StoreError>;
}

pub(super) const INSERT_KEY: &str = "INSERT INTO keys (id, workspace_id, api_id, hash, start, name, meta, \
     identity_id, expires, enabled, credits, ratelimits, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// Implements [`Keys`] for a [`Backend`](super::backend::Backend) that also implements `Identities`.
macro_rules! impl_keys {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use $crate::domain::identity::{Creation, NewIdentity};
            use $crate::domain::ids::new_id;
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::backend::{Backend, CREATE_ATTEMPTS, now_ms};
            use $crate::store::changes::Written;
            use $crate::store::keys::*;

            #[async_trait::async_trait]
            impl Keys for $store {
                async fn create_key(&self, workspace: &WorkspaceId, key: &NewKey) -> Result<String, StoreError> {
                    // The identity the key named may be deleted between its insert's no-op and its read
                    // (PostgreSQL): nothing was written, so the transaction is run again.
                    let mut attempts = 1;
                    loop {
                        let owned = (workspace.clone(), key.clone());
                        let created = self
                            .write(move |connection| {
                                let (workspace, key) = owned.clone();
                                Box::pin(async move {
                                    let mut changes = Vec::new();
                                    let identity_id = match &key.external_id {
                                        None => None,
                                        Some(external_id) => {
                                            let new = NewIdentity {
                                                external_id: external_id.clone(),
                                                meta: Default::default(),
                                                ratelimits: Vec::new(),
                                            };
                                            let got = Self::create_identity_in(connection, &workspace, &new).await?;
                                            changes = got.changes;
                                            Some(match got.outcome {
                                                Creation::Created { id } => id,
                                                Creation::AlreadyExists { existing_id } => existing_id,
                                            })
                                        }
                                    };
                                    let key_id = new_id("key");
                                    sqlx::query(INSERT_KEY)
                                        .bind(&key_id)
                                        .bind(workspace.as_str())
                                        .bind(&key.api_id)
                                        .bind(&key.hash)
                                        .bind(&key.start)
                                        .bind(&key.name)
                                        .bind(&key.meta)
                                        .bind(identity_id)
                                        .bind(key.expires)
                                        .bind(key.enabled)
                                        .bind(&key.credits)
                                        .bind(&key.ratelimits)
                                        .bind(now_ms())
                                        .execute(&mut *connection)
                                        .await?;
                                    Ok(Written::new(key_id, changes))
                                })
                            })
                            .await;
                        match created {
                            Err(StoreError::Contended(_)) if attempts < CREATE_ATTEMPTS => attempts += 1,
                            created => return created.inspect_err(|error| self.write_failed(error)),
                        }
                    }
                }
            }
        };
    };
}
pub(super) use impl_keys;
