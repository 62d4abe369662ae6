//! `identities.listKeys` (Sigil's own; Unkey has none, and its users asked for it in issue #6181): a live
//! identity's live keys across every API, in id order, as getKey shows each, `limit` (1–100, 100) to a
//! page, from `cursor` (the id of the page's first key) on.
//!
//! The identity is read as getIdentity reads it (`identity.*.read_identity` or
//! `identity.<id>.read_identity`: 403 whether it exists or not to a key that may read no identity, then 404
//! `identity_not_found`). Each key is then shown only to a root key that may read it (`api.*.read_key` or
//! `api.<apiId>.read_key`); the others are left out, so a page may be short and still have more. Errors:
//! 400, 401, 403, 404, 413.

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
    let readable = |key: &crate::store::StoredKey| root_key.may(Needed::api(ApiAction::ReadKey, Some(&key.api_id)));
    page_of_keys(&state, &root_key.workspace, &of, request.cursor.as_deref(), request.limit, readable).await
}
