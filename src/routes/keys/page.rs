//! A page of keys, as apis.listKeys and identities.listKeys answer it.

use crate::AppState;
use crate::domain::workspace::WorkspaceId;
use crate::envelope::{Envelope, Pagination};
use crate::error::ApiError;
use crate::routes::keys::KeyResponseData;
use crate::store::KeysOf;

/// Up to `limit` keys of `of` from `cursor` on (the id of the page's first key, as Unkey's); the caller may
/// read them all.
pub async fn page_of_keys(
    state: &AppState,
    workspace: &WorkspaceId,
    of: &KeysOf,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Envelope<Vec<KeyResponseData>>, ApiError> {
    let mut keys = state.store.list_keys(workspace, of, cursor, limit + 1).await?;
    let next = usize::try_from(limit).ok().and_then(|limit| (keys.len() > limit).then(|| keys.split_off(limit)));
    let cursor = next.and_then(|rest| rest.into_iter().next()).map(|first| first.id);
    let data = keys.into_iter().map(KeyResponseData::of).collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope::page(data, Pagination { has_more: cursor.is_some(), cursor }))
}
