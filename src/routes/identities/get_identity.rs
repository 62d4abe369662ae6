//! `identities.getIdentity`: one live identity by its id or, failing that, its externalId.
//!
//! Permission: `identity.*.read_identity` or `identity.<id>.read_identity`. Errors: 400, 401, 403, 404
//! `identity_not_found` (also for another workspace's or a deleted identity), 413. Unkey looked the
//! identity up before checking the key, so a 404 or a 403 told any key whether an externalId existed;
//! here a key that may not read an identity gets 403 whether it exists or not (404 only for a missing
//! identity it was granted by id, or with `identity.*.read_identity`). A 403 names the per-identity grant
//! only when the request named the identity by its id.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::identity::Identity;
use crate::domain::permission::{IdentityAction, Needed, RootKey, Unreadable};
use crate::envelope::Envelope;
use crate::error::{ApiError, ErrorCode};
use crate::extract::{RootKeyHeader, ValidJson};

#[derive(Deserialize)]
pub struct GetIdentityRequest {
    identity: String,
}

pub async fn get_identity(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<GetIdentityRequest>,
) -> Result<Envelope<Identity>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    let read = Needed::identity(IdentityAction::Read, None);
    // A key that may read no identity learns nothing, not even whether the lookup found one.
    if !root_key.may_for_some(read) {
        return Err(root_key.missing(read).into());
    }
    let found = state.store.get_identity(&root_key.workspace, &request.identity).await?;
    match root_key.reads(&request.identity, found) {
        Ok(identity) => Ok(Envelope::data(identity)),
        Err(Unreadable::NotFound) => Err(not_found(&state, &root_key, &request.identity).await?),
        Err(Unreadable::Forbidden(missing)) => Err(missing.into()),
    }
}

/// 404, saying so when a live identity's externalId differs from the one asked for only in case and the key
/// may read that identity: externalIds are case-sensitive, and that is the most common cause of this 404.
async fn not_found(state: &AppState, root_key: &RootKey, asked: &str) -> Result<ApiError, ApiError> {
    let other_case = state.store.find_external_id_in_other_case(&root_key.workspace, asked).await?;
    let readable = other_case.filter(|(id, _)| root_key.may(Needed::identity(IdentityAction::Read, Some(id))));
    Ok(match readable {
        None => ApiError::identity_not_found(),
        Some((_, external_id)) => ApiError::new(
            ErrorCode::IdentityNotFound,
            format!(
                "This identity does not exist. An identity with externalId '{external_id}' does: externalIds are \
                 case-sensitive."
            ),
        )
        .with_extension("otherCaseExternalId", serde_json::json!(external_id)),
    })
}
