//! `identities.getIdentity`: one live identity by its id or, failing that, its externalId.
//!
//! Permission: `identity.*.read_identity` or `identity.<id>.read_identity`, checked after the lookup as
//! Unkey does (a missing identity is 404 even without permission). Errors: 400, 401, 403, 404
//! `identity_not_found` (also for another workspace's or a deleted identity), 413. A 403 names the
//! per-identity grant only when the request named the identity by its id.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::identity::Identity;
use crate::domain::permission::{IdentityAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
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
    let identity = state
        .store
        .get_identity(&root_key.workspace, &request.identity)
        .await?
        .ok_or_else(ApiError::identity_not_found)?;
    if !root_key.may(Needed::identity(IdentityAction::Read, Some(&identity.id))) {
        // The per-identity grant is named only by the id the caller sent: a 403 must not tell the id behind
        // an externalId to a key that may not read it.
        let named_by_id = (request.identity == identity.id).then_some(identity.id.as_str());
        return Err(root_key.missing(Needed::identity(IdentityAction::Read, named_by_id)).into());
    }
    Ok(Envelope::data(identity))
}
