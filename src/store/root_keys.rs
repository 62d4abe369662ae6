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
}

pub(super) const INSERT_ROOT_KEY: &str =
    "INSERT INTO root_keys (id, workspace_id, key_hash, permissions, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(super) const ROOT_KEY_BY_HASH: &str = "SELECT workspace_id, permissions FROM root_keys WHERE key_hash = $1";

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
                    let key_hash = key_hash.to_owned();
                    let row: Option<(String, String)> = self
                        .on_reader(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_as(ROOT_KEY_BY_HASH).bind(key_hash).fetch_optional(connection).await?)
                            })
                        })
                        .await?;
                    row.map(|(workspace, permissions)| {
                        Ok(RootKey::new(WorkspaceId::from_stored(workspace), &parse_permissions(&permissions)?))
                    })
                    .transpose()
                }
            }
        };
    };
}
pub(super) use impl_root_keys;
