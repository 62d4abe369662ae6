//! Workspaces: the SQL both databases run for them, and its one implementation ([`impl_workspaces!`]).

use async_trait::async_trait;

use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;

/// Workspaces, by name.
#[async_trait]
pub trait Workspaces: Send + Sync {
    /// Whether any workspace exists yet (an empty database gets a first workspace and key on `serve`).
    async fn has_workspaces(&self) -> Result<bool, StoreError>;

    /// The workspace with this name, if it exists.
    async fn find_workspace(&self, name: &str) -> Result<Option<WorkspaceId>, StoreError>;

    /// The workspace with this name, created if missing; `true` when this call created it.
    async fn ensure_workspace(&self, name: &str) -> Result<(WorkspaceId, bool), StoreError>;
}

pub(super) const COUNT_WORKSPACES: &str = "SELECT COUNT(*) FROM workspaces";
pub(super) const INSERT_WORKSPACE: &str =
    "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id";
pub(super) const WORKSPACE_ID_BY_NAME: &str = "SELECT id FROM workspaces WHERE name = $1";

/// Implements [`Workspaces`] for a [`Backend`](super::backend::Backend).
macro_rules! impl_workspaces {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use $crate::domain::ids::new_id;
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::backend::{Backend, now_ms};
            use $crate::store::workspaces::*;

            #[async_trait::async_trait]
            impl Workspaces for $store {
                async fn has_workspaces(&self) -> Result<bool, StoreError> {
                    let count: i64 = self
                        .on_reader(|connection| {
                            Box::pin(
                                async move { Ok(sqlx::query_scalar(COUNT_WORKSPACES).fetch_one(connection).await?) },
                            )
                        })
                        .await?;
                    Ok(count > 0)
                }

                async fn find_workspace(&self, name: &str) -> Result<Option<WorkspaceId>, StoreError> {
                    let name = name.to_owned();
                    let id: Option<String> = self
                        .on_writer(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_scalar(WORKSPACE_ID_BY_NAME)
                                    .bind(name)
                                    .fetch_optional(connection)
                                    .await?)
                            })
                        })
                        .await?;
                    Ok(id.map(WorkspaceId::from_stored))
                }

                async fn ensure_workspace(&self, name: &str) -> Result<(WorkspaceId, bool), StoreError> {
                    let name = name.to_owned();
                    self.on_writer(|connection| {
                        Box::pin(async move {
                            let created: Option<String> = sqlx::query_scalar(INSERT_WORKSPACE)
                                .bind(new_id("ws"))
                                .bind(&name)
                                .bind(now_ms())
                                .fetch_optional(&mut *connection)
                                .await?;
                            if let Some(id) = created {
                                return Ok((WorkspaceId::from_stored(id), true));
                            }
                            let id: String =
                                sqlx::query_scalar(WORKSPACE_ID_BY_NAME).bind(&name).fetch_one(connection).await?;
                            Ok((WorkspaceId::from_stored(id), false))
                        })
                    })
                    .await
                }
            }
        };
    };
}
pub(super) use impl_workspaces;
