//! `identities.listIdentities`: live identities in creation order, paged by cursor.
//!
//! Permission: read on every identity of the page (`identity.*.read_identity` or one
//! `identity.<id>.read_identity` per row); one unreadable row makes the whole request 403, and an empty
//! page needs none, as in Unkey. Errors: 400, 401, 403, 413. The cursor is the id of the next page's
//! first identity (inclusive), present only when `hasMore` is true.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::identity::{Identity, IdentityPageQuery, integer};
use crate::domain::permission::{IdentityAction, Needed};
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
    // One row more than the page tells whether another page follows, and where it starts.
    let Some(query) = IdentityPageQuery::new(request.cursor, request.search.as_deref(), request.limit + 1) else {
        return Ok(Envelope::page(Vec::new(), Pagination { has_more: false, cursor: None }));
    };
    let mut identities = state.store.list_identities(&root_key.workspace, &query).await?;
    let page_size = usize::try_from(request.limit).unwrap_or(usize::MAX);
    let next_cursor = identities.get(page_size).map(|first_of_next_page| first_of_next_page.id.clone());
    identities.truncate(page_size);
    for identity in &identities {
        root_key.authorize(Needed::identity(IdentityAction::Read, Some(&identity.id)))?;
    }
    let pagination = Pagination { has_more: next_cursor.is_some(), cursor: next_cursor };
    Ok(Envelope::page(identities, pagination))
}
