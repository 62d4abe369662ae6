//! `identities.listKeys` (Sigil's own; Unkey has none, and its users asked for it in issue #6181): a live
//! identity's live keys across every API, in id order, as getKey shows each, `limit` (1–100, 100) to a
//! page, from `cursor` (the id of the page's first key) on.
//!
//! Permission: `api.*.read_key`, since the keys may be in any API (a key with grants for some APIs alone
//! lists them with apis.listKeys and `externalId`: leaving the others out of a page would still have told
//! their ids through the cursor), checked first; then the identity is read as getIdentity reads it
//! (`identity.*.read_identity` or `identity.<id>.read_identity`: 403 whether it exists or not to a key
//! that may read no identity, then 404 `identity_not_found`). Errors: 400, 401, 403, 404, 413.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::permission::{ApiAction, IdentityAction, Needed, Unreadable};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};
use crate::routes::keys::{KeyResponseData, page_of_keys};
use crate::store::KeysOf;

#[derive(Deserialize)]
pub struct ListKeysRequest {
    identity: String,
    #[serde(default = "full_page")]
    limit: i64,
    cursor: Option<String>,
}

fn full_page() -> i64 {
    100
}

pub async fn list_keys(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<ListKeysRequest>,
) -> Result<Envelope<Vec<KeyResponseData>>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::api(ApiAction::ReadKey, None))?;
    let read = Needed::identity(IdentityAction::Read, None);
    if !root_key.may_for_some(read) {
        return Err(root_key.missing(read).into());
    }
    let found = state.store.get_identity(&root_key.workspace, &request.identity).await?;
    let identity = match root_key.reads(&request.identity, found) {
        Ok(identity) => identity,
        Err(Unreadable::NotFound) => return Err(ApiError::identity_not_found()),
        Err(Unreadable::Forbidden(missing)) => return Err(missing.into()),
    };
    let of = KeysOf::Identity { identity_id: identity.id };
    page_of_keys(&state, &root_key.workspace, &of, request.cursor.as_deref(), request.limit).await
}
