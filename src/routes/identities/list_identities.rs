//! `identities.listIdentities`: live identities in creation order, paged by cursor.
//!
//! Permission: `identity.*.read_identity` lists every identity; a key holding only
//! `identity.<id>.read_identity` grants lists those identities alone (looked up one by one, so a search or
//! the cursor tells it nothing of the others). A key with neither is
//! 403, whatever the workspace holds. Unlike Unkey, which answered 403 when a page held one unreadable
//! identity, and 200 when it held none, so that any key of a workspace could learn from a search which
//! externalIds exist (and from the 403's detail, their ids). Errors: 400, 401, 403, 413. The cursor is the
//! id of the next page's first identity (inclusive), present only when `hasMore` is true; a filtered page
//! may hold fewer identities than `limit`, or none, and still have more after it. So may a page whose
//! identities' meta and ratelimits pass 4 MiB (`PAGE_BYTES`): it ends there, with a cursor to the rest.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::identity::{Identity, IdentityPage, IdentityPageQuery, PAGE_BYTES, integer, search_term};
use crate::domain::permission::{IdentityAction, Needed, RootKey};
use crate::envelope::{Envelope, Pagination};
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};

const DEFAULT_PAGE_SIZE: i64 = 100;

#[derive(Deserialize)]
pub struct ListIdentitiesRequest {
    #[serde(default = "default_page_size", deserialize_with = "integer")]
    limit: i64,
    cursor: Option<String>,
    search: Option<String>,
}

fn default_page_size() -> i64 {
    DEFAULT_PAGE_SIZE
}

pub async fn list_identities(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<ListIdentitiesRequest>,
) -> Result<Envelope<Vec<Identity>>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    let read = Needed::identity(IdentityAction::Read, None);
    if !root_key.may_for_some(read) {
        return Err(root_key.missing(read).into());
    }
    let scan = i64::try_from(state.limits.search_scan_rows).unwrap_or(i64::MAX);
    let Some(query) = IdentityPageQuery::new(request.cursor, request.search.as_deref(), request.limit, scan) else {
        return Ok(Envelope::page(Vec::new(), Pagination { has_more: false, cursor: None }));
    };
    let IdentityPage { identities, next_cursor } = if root_key.may(read) {
        state.store.list_identities(&root_key.workspace, &query).await?
    } else {
        granted_page(&state, &root_key, &query, request.search.as_deref()).await?
    };
    let pagination = Pagination { has_more: next_cursor.is_some(), cursor: next_cursor };
    Ok(Envelope::page(identities, pagination))
}

/// The page of a key that may read only the identities its grants name: those identities alone are looked
/// at, so neither a search nor the cursor tells it anything about the others.
async fn granted_page(
    state: &AppState,
    root_key: &RootKey,
    query: &IdentityPageQuery,
    search: Option<&str>,
) -> Result<IdentityPage, ApiError> {
    let read = Needed::identity(IdentityAction::Read, None);
    let mut granted: Vec<&str> = root_key.granted_ids(read).collect();
    granted.sort_unstable();
    granted.dedup();
    let search = search.and_then(search_term);
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let page_bytes = usize::try_from(PAGE_BYTES).unwrap_or(usize::MAX);
    let (mut identities, mut bytes) = (Vec::new(), 0_usize);
    for id in granted.into_iter().filter(|id| query.cursor.as_deref().is_none_or(|cursor| *id >= cursor)) {
        // Only an id: a grant naming an externalId grants nothing (Unkey's grants name ids).
        let Some(identity) = state.store.get_identity(&root_key.workspace, id).await? else { continue };
        let matches = |text: &str| search.as_deref().is_none_or(|search| text.to_ascii_lowercase().contains(search));
        if identity.id != id || !(matches(&identity.id) || matches(&identity.external_id)) {
            continue;
        }
        // The same bounds as a page from the store: `limit` identities, and none starting past PAGE_BYTES.
        if identities.len() == limit || bytes >= page_bytes {
            return Ok(IdentityPage { identities, next_cursor: Some(identity.id) });
        }
        bytes += identity.meta.get().len() + identity.ratelimits.get().len();
        identities.push(identity);
    }
    Ok(IdentityPage { identities, next_cursor: None })
}
