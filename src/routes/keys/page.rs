//! A page of keys, as apis.listKeys and identities.listKeys answer it.

use crate::AppState;
use crate::domain::workspace::WorkspaceId;
use crate::envelope::{Envelope, Pagination};
use crate::error::ApiError;
use crate::routes::keys::KeyResponseData;
use crate::store::KeysOf;

/// Up to `limit` keys of `of` from `cursor` on (the id of the page's first key, as Unkey's), fewer when
/// they are large ([`Keys::list_keys`](crate::store::Keys::list_keys)); the caller may read them all.
pub async fn page_of_keys(
    state: &AppState,
    workspace: &WorkspaceId,
    of: &KeysOf,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Envelope<Vec<KeyResponseData>>, ApiError> {
    let page = state.store.list_keys(workspace, of, cursor, limit).await?;
    let cursor = page.next;
    let data = page.keys.into_iter().map(KeyResponseData::of).collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope::page(data, Pagination { has_more: cursor.is_some(), cursor }))
}
