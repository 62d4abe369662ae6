//! `identities.deleteIdentity`: soft-deletes a live identity; its externalId can be created again at once.
//!
//! Permission: `identity.*.delete_identity`, checked before the lookup. Errors: 400, 401, 403,
//! 404 `identity_not_found` (unknown, already deleted, or another workspace's), 413.
//! The 200 body is only `{"meta":{"requestId"}}`.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::permission::{IdentityAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};

#[derive(Deserialize)]
pub struct DeleteIdentityRequest {
    identity: String,
}

pub async fn delete_identity(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<DeleteIdentityRequest>,
) -> Result<Envelope<()>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::identity(IdentityAction::Delete, None))?;
    if !state.store.delete_identity(&root_key.workspace, &request.identity).await? {
        return Err(ApiError::identity_not_found());
    }
    Ok(Envelope::empty())
}
