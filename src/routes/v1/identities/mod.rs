//! The five v1 `identities.*` operations, and what they share: v1's view of an identity and its limits.

mod create_identity;
mod delete_identity;
mod get_identity;
mod list_identities;
mod update_identity;

pub use create_identity::create_identity;
pub use delete_identity::delete_identity;
pub use get_identity::get_identity;
pub use list_identities::list_identities;
pub use update_identity::update_identity;

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::AppState;
use crate::domain::identity::{Identity, Ratelimit, RatelimitInput, StoredJson};
use crate::domain::workspace::WorkspaceId;
use crate::error::ApiError;
use crate::idempotency::IdempotencyKey;
use crate::routes::v1::V1Error;

/// v1's cap on meta: its JSON text, in UTF-16 code units as JavaScript counts them.
const MAX_META_CHARS: usize = 64_000;

/// An identity as v1 shows it: its ratelimits without ids or autoApply.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct V1Identity {
    id: String,
    external_id: String,
    meta: StoredJson,
    ratelimits: Vec<V1Ratelimit>,
}

#[derive(Serialize)]
pub struct V1Ratelimit {
    name: String,
    limit: i64,
    duration: i64,
}

impl From<Ratelimit> for V1Ratelimit {
    fn from(held: Ratelimit) -> Self {
        Self { name: held.name, limit: held.limit, duration: held.duration }
    }
}

impl V1Identity {
    pub fn of(identity: &Identity) -> Self {
        Self {
            id: identity.id.clone(),
            external_id: identity.external_id.clone(),
            meta: identity.meta.clone(),
            ratelimits: ratelimits(identity).into_iter().map(V1Ratelimit::from).collect(),
        }
    }
}

/// The ratelimits an identity holds, as stored (the store wrote them; unreadable ones show as none).
fn ratelimits(identity: &Identity) -> Vec<Ratelimit> {
    serde_json::from_str(identity.ratelimits.get()).unwrap_or_default()
}

/// 400 when meta is larger than v1 allowed, with v1's message.
fn check_meta_size(meta: Option<&Map<String, Value>>) -> Result<(), V1Error> {
    let Some(meta) = meta else { return Ok(()) };
    let chars = serde_json::to_string(meta).map_or(usize::MAX, |text| text.encode_utf16().count());
    if chars > MAX_META_CHARS {
        return Err(V1Error::bad_request(format!(
            "metadata is too large, it must be less than 64k characters when json encoded, got: {chars}"
        )));
    }
    Ok(())
}

/// 409, v1's answer to two ratelimits of one name in a request.
fn check_unique_names(ratelimits: Option<&[RatelimitInput]>) -> Result<(), V1Error> {
    let mut seen = HashSet::new();
    match ratelimits.unwrap_or_default().iter().find(|limit| !seen.insert(limit.name.as_str())) {
        Some(repeated) => Err(V1Error::conflict(format!(
            "Ratelimit with name \"{}\" is already defined in the request",
            repeated.name
        ))),
        None => Ok(()),
    }
}

/// The live identity whose id is `identity_id`, and only that one: the store's lookup also matches an
/// externalId, which v1's `identityId` must not.
async fn by_id(state: &AppState, workspace: &WorkspaceId, identity_id: &str) -> Result<Option<Identity>, V1Error> {
    let found = state.store.get_identity(workspace, identity_id).await.map_err(ApiError::from)?;
    Ok(found.filter(|identity| identity.id == identity_id))
}

/// The live identity whose externalId is `external_id`, and only that one.
async fn by_external_id(
    state: &AppState,
    workspace: &WorkspaceId,
    external_id: &str,
) -> Result<Option<Identity>, V1Error> {
    Ok(state.store.get_identity_by_external_id(workspace, external_id).await.map_err(ApiError::from)?)
}

/// Whether a write that found no identity to change goes on to its Idempotency-Key's record: the request it
/// retries may be what deleted the identity, and its answer is replayed.
async fn key_has_a_record(
    state: &AppState,
    workspace: &WorkspaceId,
    idempotency_key: Option<&IdempotencyKey>,
) -> Result<bool, V1Error> {
    let Some(idempotency_key) = idempotency_key else { return Ok(false) };
    let record = state.store.find_idempotency_key(workspace, idempotency_key.key()).await.map_err(ApiError::from)?;
    Ok(record.is_some())
}

fn not_found(identity: &str) -> V1Error {
    V1Error::not_found(format!("identity {identity} not found"))
}
