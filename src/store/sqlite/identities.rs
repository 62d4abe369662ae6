//! What SQLite does its own way for identities: a create is one statement in the next group commit, and a
//! list page comes back as one row of JSON.

use serde_json::value::RawValue;

use crate::domain::identity::{Creation, Identity, IdentityPageQuery, NewIdentity};
use crate::domain::workspace::WorkspaceId;
use crate::store::identities::{IdentityBackend, checked_ratelimits, identity_page, stored_meta};
use crate::store::sqlite::{SqliteStore, timed_acquire};
use crate::store::{StoreError, within_deadline};

/// A list page as one row: its identities as one JSON array of `[id, externalId, meta, ratelimits]`, meta
/// as the text it is stored as (inside the page, a meta nested as deep as a create accepts would pass the
/// JSON parser's depth limit). sqlx hands each row from SQLite's thread to the caller's on its own, and
/// those handoffs were most of a page's cost: as one row, pages of 100 went from about 4,000 to 6,500 a
/// second. The aggregate names no order, since asking for one made SQLite sort again what it had read in
/// order; the shared code puts the page in order.
const LIST_IDENTITIES: &str = concat!(
    "SELECT json_group_array(json_array(i.id, i.external_id, i.meta, json(i.ratelimits))) FROM ",
    identity_page!()
);

impl IdentityBackend for SqliteStore {
    async fn create_identity(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError> {
        let (workspace, new) = (workspace.clone(), new.clone());
        self.writes
            .run_one_statement(move |connection| {
                Box::pin(async move {
                    // The shared code applies what the create changed once it answers. A conflict is a
                    // refusal to the group, which goes on without it.
                    match Self::create_identity_in(connection, &workspace, &new).await?.outcome {
                        Creation::Created { id } => Ok(id),
                        Creation::AlreadyExists { existing_id } => Err(StoreError::Conflict { existing_id }),
                    }
                })
            })
            .await
    }

    async fn list_identities(
        &self,
        workspace: &WorkspaceId,
        query: &IdentityPageQuery,
        before: Option<&str>,
    ) -> Result<Vec<Identity>, StoreError> {
        let page: String = within_deadline(async {
            Ok(sqlx::query_scalar(LIST_IDENTITIES)
                .bind(workspace.as_str())
                .bind(query.cursor.as_deref())
                .bind(query.search_pattern.as_deref())
                .bind(query.limit.saturating_add(1))
                .bind(before)
                .fetch_one(&mut *timed_acquire(&self.reader, &self.connection_waits).await?)
                .await?)
        })
        .await?;
        let page: Vec<(String, String, String, Box<RawValue>)> =
            serde_json::from_str(&page).map_err(|error| StoreError::InvalidData(format!("list page: {error}")))?;
        page.into_iter()
            .map(|(id, external_id, meta, ratelimits)| {
                let ratelimits = checked_ratelimits(&id, ratelimits)?;
                Ok(Identity { meta: stored_meta(&id, meta)?, id, external_id, ratelimits })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_page_seeks_to_its_cursor_through_the_workspace_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            SqliteStore::open(&format!("sqlite://{}", dir.path().join("sigil.db").display())).await.expect("open");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {LIST_IDENTITIES}"))
            .bind("ws_1")
            .bind(Some("id_5"))
            .bind(None::<&str>)
            .bind(101_i64)
            .bind(None::<&str>)
            .fetch_all(&store.reader)
            .await
            .expect("explain");
        let plan: Vec<&str> = plan.iter().map(|(_, _, _, detail)| detail.as_str()).collect();
        assert!(
            plan.iter().any(|step| step.contains("identities_live_by_workspace (workspace_id=? AND id>?)")),
            "{plan:#?}"
        );
        store.close_pools().await;
    }
}
