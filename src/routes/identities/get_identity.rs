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
    let read = Needed::identity(IdentityAction::Read, None);
    // Whether an identity exists is told only to a key that may read every identity, or that one: any other
    // key gets the same 403 whether it exists or not.
    if !root_key.may_for_some(read) {
        return Err(root_key.missing(read).into());
    }
    let found = state.store.get_identity(&root_key.workspace, &request.identity).await?;
    let readable =
        found.as_ref().is_some_and(|identity| root_key.may(Needed::identity(IdentityAction::Read, Some(&identity.id))));
    if readable || (found.is_none() && root_key.may(read)) {
        return found.map(Envelope::data).ok_or_else(ApiError::identity_not_found);
    }
    if found.is_none() && root_key.granted_ids(read).any(|granted| granted == request.identity) {
        return Err(ApiError::identity_not_found());
    }
    // The per-identity grant is named only by the id the caller sent: a 403 must not tell the id behind an
    // externalId.
    let named_by_id = found.filter(|identity| identity.id == request.identity).map(|identity| identity.id);
    Err(root_key.missing(Needed::identity(IdentityAction::Read, named_by_id.as_deref())).into())
}
