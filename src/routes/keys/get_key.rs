//! `keys.getKey`: a live key as Unkey's `KeyResponseData` shows it (never the key itself, which is not
//! kept).
//!
//! The key is looked up first, then the permission: `api.*.read_key` or `api.<apiId>.read_key`, a plain 403
//! as in Unkey. Errors: 400 (also `decrypt: true`, which the schema refuses: Sigil has no recoverable keys), 401, 403, 404
//! `key_not_found` (missing, deleted, its API deleted, or another workspace's: one detail for all, where
//! Unkey's differed for another workspace's key and so told that it exists), 413.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::AppState;
use crate::domain::identity::{Identity, StoredJson};
use crate::domain::permission::{ApiAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};
use crate::routes::keys::key_not_found;
use crate::store::StoredKey;

/// `decrypt` may only be false (the schema's rule): Sigil keeps no recoverable keys.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetKeyRequest {
    key_id: String,
}

/// Unkey's `KeyResponseData`: empty parts are left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyResponseData {
    key_id: String,
    start: String,
    created_at: i64,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credits: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimits: Option<StoredJson>,
}

impl KeyResponseData {
    pub fn of(key: StoredKey) -> Result<Self, ApiError> {
        let json = |text: String| RawValue::from_string(text).map_err(ApiError::unexpected);
        let ratelimits = json(key.ratelimits)?;
        Ok(Self {
            key_id: key.id,
            start: key.start,
            created_at: key.created_at,
            enabled: key.enabled,
            name: key.name,
            meta: key.meta.map(json).transpose()?,
            updated_at: key.updated_at,
            expires: key.expires,
            credits: key.credits.filter(|credits| has_a_limit(credits)).map(json).transpose()?,
            identity: key.identity,
            ratelimits: (ratelimits.get() != "[]").then_some(ratelimits),
        })
    }
}

/// Unkey shows credits only for a key with a limit: `remaining` null is none.
fn has_a_limit(credits: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(credits).is_ok_and(|credits| !credits["remaining"].is_null())
}

pub async fn get_key(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<GetKeyRequest>,
) -> Result<Envelope<KeyResponseData>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    let key = state.store.get_key(&root_key.workspace, &request.key_id).await?.ok_or_else(key_not_found)?;
    root_key.authorize(Needed::api(ApiAction::ReadKey, Some(&key.api_id)))?;
    Ok(Envelope::data(KeyResponseData::of(key)?))
}
