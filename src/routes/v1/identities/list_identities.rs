//! v1 `identities.listIdentities` (GET, query `environment?`, `limit?` 1–100 (100), `cursor?`): live
//! identities in id order, without meta, with `total` (every live identity of the workspace) and `cursor`,
//! the id of the page's last identity, on every page that has one; the next page starts after it.
//!
//! Permission: `identity.*.read_identity` (a key granted identities one by one uses v2's list, which
//! filters; v1 had only the environment's grant). Errors: 400, 403. Sigil has one environment,
//! `"default"`: any other lists nothing.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Serialize;

use crate::AppState;
use crate::domain::identity::{Identity, IdentityPageQuery};
use crate::domain::permission::{IdentityAction, Needed};
use crate::error::ApiError;
use crate::routes::v1::auth::authenticate;
use crate::routes::v1::identities::{V1Ratelimit, ratelimits};
use crate::routes::v1::input::Fields;
use crate::routes::v1::{V1Error, V1Json};

#[derive(Serialize)]
pub struct V1Page {
    identities: Vec<V1ListedIdentity>,
    total: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct V1ListedIdentity {
    id: String,
    external_id: String,
    ratelimits: Vec<V1Ratelimit>,
}

impl V1ListedIdentity {
    fn of(identity: &Identity) -> Self {
        Self {
            id: identity.id.clone(),
            external_id: identity.external_id.clone(),
            ratelimits: ratelimits(identity).into_iter().map(V1Ratelimit::from).collect(),
        }
    }
}

pub async fn list_identities(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<V1Json<V1Page>, V1Error> {
    let fields = Fields::of_query(query.as_deref());
    let environment = fields.string("environment", 0)?.unwrap_or_else(|| "default".to_owned());
    let limit = fields.page_limit("limit", 100)?;
    let after = fields.string("cursor", 0)?.filter(|cursor| !cursor.is_empty());
    let caller = authenticate(&state, &headers).await?;
    // Unkey's v1 list also takes the environment's grant, `identity.default.read_identity` by default.
    caller.authorize(Needed::identity(IdentityAction::Read, Some(&environment)))?;
    if environment != "default" {
        return Ok(V1Json(V1Page { identities: Vec::new(), total: 0, cursor: None }));
    }
    let workspace = &caller.root_key.workspace;
    let total = state.store.count_identities(workspace).await.map_err(ApiError::from)?;
    let identities = page_after(&state, &caller.root_key.workspace, after, limit).await?;
    let cursor = identities.last().map(|identity| identity.id.clone());
    Ok(V1Json(V1Page { identities, total, cursor }))
}

/// Up to `limit` identities after `after`. v2's pages start at their cursor, not after it, and may end early
/// by bytes (`PAGE_BYTES`), while v1's clients stop at a page shorter than `limit`: v2 pages are read until
/// this one is full or none is left, each dropped (meta and all) once its identities are taken.
async fn page_after(
    state: &AppState,
    workspace: &crate::domain::workspace::WorkspaceId,
    after: Option<String>,
    limit: i64,
) -> Result<Vec<V1ListedIdentity>, V1Error> {
    let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
    let scan = i64::try_from(state.limits.search_scan_rows).unwrap_or(i64::MAX);
    let mut identities = Vec::with_capacity(wanted);
    let mut from = after.clone();
    while identities.len() < wanted {
        let room = i64::try_from(wanted - identities.len()).unwrap_or(i64::MAX);
        // One more than there is room for: the first may be the cursor's own identity, which is skipped.
        let Some(query) = IdentityPageQuery::new(from.clone(), None, room + 1, scan) else { break };
        let page = state.store.list_identities(workspace, &query).await.map_err(ApiError::from)?;
        let taken = page.identities.iter().filter(|identity| Some(&identity.id) != after.as_ref());
        identities.extend(taken.take(wanted - identities.len()).map(V1ListedIdentity::of));
        match page.next_cursor {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    Ok(identities)
}
