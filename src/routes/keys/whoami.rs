//! `keys.whoami`: the key whose value is sent, as getKey shows it. The value is hashed and looked up by its
//! hash, as verification will; it is never stored or logged.
//!
//! Permission: `api.*.read_key` or `api.<apiId>.read_key` of the key's API; without it, the 404 of a missing
//! key, as Unkey masks it, so that a root key cannot tell which values are keys. Errors: 400, 401, 404
//! `key_not_found`, 413.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::key::hash;
use crate::domain::permission::{ApiAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};
use crate::routes::keys::get_key::KeyResponseData;
use crate::routes::keys::key_not_found;

#[derive(Deserialize)]
pub struct WhoamiRequest {
    key: String,
}

pub async fn whoami(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<WhoamiRequest>,
) -> Result<Envelope<KeyResponseData>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    let key = state.store.get_key_by_hash(&root_key.workspace, &hash(&request.key)).await?;
    match key {
        Some(key) if root_key.may(Needed::api(ApiAction::ReadKey, Some(&key.api_id))) => {
            Ok(Envelope::data(KeyResponseData::of(std::sync::Arc::unwrap_or_clone(key))?))
        }
        _ => Err(key_not_found()),
    }
}
