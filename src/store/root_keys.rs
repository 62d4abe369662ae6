//! Root keys: the SQL both databases run for them, and its one implementation ([`impl_root_keys!`]).

use async_trait::async_trait;

use crate::domain::permission::RootKey;
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;

/// Root keys, stored by the SHA-256 of the key: the plaintext never reaches the store.
#[async_trait]
pub trait RootKeys: Send + Sync {
    /// Stores a root key by its hash.
    async fn create_root_key(
        &self,
        workspace: &WorkspaceId,
        key_hash: &str,
        permissions: &[String],
    ) -> Result<(), StoreError>;

    /// The root key with this hash, if any: how a request learns its workspace. (The one lookup not scoped
    /// to a workspace.)
    async fn find_root_key(&self, key_hash: &str) -> Result<Option<RootKey>, StoreError>;

    /// Deletes the root key with this hash; `false` when no key has it. The node that revokes it stops
    /// accepting it at once, other PostgreSQL nodes when they hear of it (normally well under a second), and
    /// any node within the time to live of what it read (a SQLite server, when another process revoked it).
    async fn revoke_root_key(&self, key_hash: &str) -> Result<bool, StoreError>;
}

pub(super) const INSERT_ROOT_KEY: &str =
    "INSERT INTO root_keys (id, workspace_id, key_hash, permissions, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(super) const ROOT_KEY_BY_HASH: &str = "SELECT id, workspace_id, permissions FROM root_keys WHERE key_hash = $1";
pub(super) const REVOKE_ROOT_KEY: &str = "DELETE FROM root_keys WHERE key_hash = $1 RETURNING id";

pub(super) fn parse_permissions(stored: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(stored).map_err(|error| StoreError::InvalidData(format!("root key permissions: {error}")))
}

/// Implements [`RootKeys`] for a [`Backend`](super::backend::Backend).
macro_rules! impl_root_keys {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use $crate::domain::ids::new_id;
            use $crate::domain::permission::RootKey;
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::backend::{Backend, now_ms};
            use $crate::store::changes::{Change, Written};
            use $crate::store::root_keys::*;

            #[async_trait::async_trait]
            impl RootKeys for $store {
                async fn create_root_key(
                    &self,
                    workspace: &WorkspaceId,
                    key_hash: &str,
                    permissions: &[String],
                ) -> Result<(), StoreError> {
                    let permissions = serde_json::to_string(permissions)
                        .map_err(|error| StoreError::InvalidData(format!("permissions: {error}")))?;
                    let (workspace, key_hash) = (workspace.clone(), key_hash.to_owned());
                    self.on_writer(|connection| {
                        Box::pin(async move {
                            sqlx::query(INSERT_ROOT_KEY)
                                .bind(new_id("key"))
                                .bind(workspace.as_str())
                                .bind(key_hash)
                                .bind(permissions)
                                .bind(now_ms())
                                .execute(connection)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                }

                async fn find_root_key(&self, key_hash: &str) -> Result<Option<RootKey>, StoreError> {
                    let cache = self.caches().and_then(|caches| caches.root_keys());
                    if let Some(known) = cache.and_then(|cache| cache.get(key_hash)) {
                        return Ok(known);
                    }
                    let read = cache.map(|cache| cache.read_generation());
                    let hash = key_hash.to_owned();
                    let row: Option<(String, String, String)> = self
                        .on_reader(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_as(ROOT_KEY_BY_HASH).bind(hash).fetch_optional(connection).await?)
                            })
                        })
                        .await?;
                    let found = row
                        .map(|(id, workspace, permissions)| {
                            Ok::<_, StoreError>(RootKey::new(
                                id,
                                WorkspaceId::from_stored(workspace),
                                &parse_permissions(&permissions)?,
                            ))
                        })
                        .transpose()?;
                    if let (Some(cache), Some(read)) = (cache, read) {
                        cache.insert(key_hash, found.clone(), read);
                    }
                    Ok(found)
                }

                async fn revoke_root_key(&self, key_hash: &str) -> Result<bool, StoreError> {
                    let hash = key_hash.to_owned();
                    self.write_one_statement(move |connection| {
                        let hash = hash.clone();
                        Box::pin(async move {
                            let revoked: Option<String> =
                                sqlx::query_scalar(REVOKE_ROOT_KEY).bind(&hash).fetch_optional(connection).await?;
                            Ok(match revoked {
                                Some(_) => Written::new(true, vec![Change::RootKey { hash }]),
                                None => Written::unchanged(false),
                            })
                        })
                    })
                    .await
                }
            }
        };
    };
}
pub(super) use impl_root_keys;
