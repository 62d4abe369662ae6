//! v1's root-key check: the `Authorization` header with its first `Bearer ` removed (a key sent without
//! the prefix is used as it is), and a missing or unknown key answered 403 `UNAUTHORIZED`, as Unkey's v1 did.

use axum::http::{HeaderMap, header};

use crate::AppState;
use crate::domain::permission::{Needed, RootKey};
use crate::domain::root_key;
use crate::error::ApiError;
use crate::routes::v1::V1Error;

/// The caller's root key and the hash of the key it sent (which scopes its Idempotency-Keys).
pub struct V1Caller {
    pub root_key: RootKey,
    pub key_hash: String,
}

pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<V1Caller, V1Error> {
    let sent = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).unwrap_or("");
    let key = sent.strip_prefix("Bearer ").unwrap_or(sent).trim();
    if key.is_empty() {
        return Err(V1Error::unauthorized("key required"));
    }
    let key_hash = root_key::hash(key);
    match state.store.find_root_key(&key_hash).await {
        Ok(Some(root_key)) => {
            crate::middleware::log_caller(&root_key);
            Ok(V1Caller { root_key, key_hash })
        }
        Ok(None) => Err(V1Error::unauthorized("key not found")),
        Err(error) => Err(ApiError::from(error).into()),
    }
}

impl V1Caller {
    pub fn authorize(&self, needed: Needed) -> Result<(), V1Error> {
        self.root_key.authorize(needed).map_err(V1Error::from)
    }
}
