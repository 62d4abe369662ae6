//! APIs: what the store offers for them, the SQL both databases run, and its one implementation
//! ([`impl_apis!`]).

use async_trait::async_trait;

use crate::domain::api::Api;
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;
use crate::store::idempotency_keys::{Recorded, Recording};

/// APIs, by workspace.
#[async_trait]
pub trait Apis: Send + Sync {
    /// Creates an API named `name` (names need not be unique, as in Unkey).
    async fn create_api(
        &self,
        workspace: &WorkspaceId,
        name: &str,
        recording: Option<Recording<Api>>,
    ) -> Result<Recorded<Api>, StoreError>;

    /// The live API with this id.
    async fn get_api(&self, workspace: &WorkspaceId, api_id: &str) -> Result<Option<Api>, StoreError>;

    /// Soft-deletes the live API; its keys stay, and are no longer verified. `false` when none matched.
    async fn delete_api(
        &self,
        workspace: &WorkspaceId,
        api_id: &str,
        recording: Option<Recording<bool>>,
    ) -> Result<Recorded<bool>, StoreError>;
}

pub(super) const INSERT_API: &str = "INSERT INTO apis (id, workspace_id, name, created_at) VALUES ($1, $2, $3, $4)";
pub(super) const LIVE_API: &str =
    "SELECT id, name FROM apis WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL";
/// Re-checking `deleted_at` on the row makes the second of two concurrent deletes match nothing.
pub(super) const DELETE_API: &str =
    "UPDATE apis SET deleted_at = $3 WHERE workspace_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING id";

/// Implements [`Apis`] for a [`Backend`](super::backend::Backend).
macro_rules! impl_apis {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use $crate::domain::api::Api;
            use $crate::domain::ids::new_id;
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::apis::*;
            use $crate::store::backend::{Backend, now_ms};
            use $crate::store::changes::{Change, Written};
            use $crate::store::idempotency_keys::{Recorded, Recording};

            #[async_trait::async_trait]
            impl Apis for $store {
                async fn create_api(
                    &self,
                    workspace: &WorkspaceId,
                    name: &str,
                    recording: Option<Recording<Api>>,
                ) -> Result<Recorded<Api>, StoreError> {
                    let owned = (workspace.clone(), name.to_owned());
                    self.write_recorded(workspace, recording, true, move |connection| {
                        let (workspace, name) = owned.clone();
                        Box::pin(async move {
                            let api = Api { id: new_id("api"), name };
                            sqlx::query(INSERT_API)
                                .bind(&api.id)
                                .bind(workspace.as_str())
                                .bind(&api.name)
                                .bind(now_ms())
                                .execute(&mut *connection)
                                .await?;
                            Ok(Written::unchanged(api))
                        })
                    })
                    .await
                }

                async fn get_api(&self, workspace: &WorkspaceId, api_id: &str) -> Result<Option<Api>, StoreError> {
                    let (workspace, api_id) = (workspace.clone(), api_id.to_owned());
                    let row: Option<(String, String)> = self
                        .on_reader(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_as(LIVE_API)
                                    .bind(workspace.as_str())
                                    .bind(api_id)
                                    .fetch_optional(connection)
                                    .await?)
                            })
                        })
                        .await?;
                    Ok(row.map(|(id, name)| Api { id, name }))
                }

                async fn delete_api(
                    &self,
                    workspace: &WorkspaceId,
                    api_id: &str,
                    recording: Option<Recording<bool>>,
                ) -> Result<Recorded<bool>, StoreError> {
                    let owned = (workspace.clone(), api_id.to_owned());
                    self.write_recorded(workspace, recording, true, move |connection| {
                        let (workspace, api_id) = owned.clone();
                        Box::pin(async move {
                            let deleted: Option<String> = sqlx::query_scalar(DELETE_API)
                                .bind(workspace.as_str())
                                .bind(api_id)
                                .bind(now_ms())
                                .fetch_optional(&mut *connection)
                                .await?;
                            // Its keys no longer verify, on any node: rare enough to void all that was read.
                            Ok(match deleted {
                                Some(_) => Written::new(true, vec![Change::Everything]),
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
pub(super) use impl_apis;
