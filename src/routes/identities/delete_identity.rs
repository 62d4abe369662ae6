//! `identities.deleteIdentity`: soft-deletes a live identity; its externalId can be created again at once.
//!
//! Permission: `identity.*.delete_identity`, checked before the lookup. Errors: 400, 401, 403,
//! 404 `identity_not_found` (unknown, already deleted, or another workspace's), 413.
//! The 200 body is only `{"meta":{"requestId"}}`.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use crate::AppState;
use crate::domain::permission::{IdentityAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;

#[derive(Deserialize)]
pub struct DeleteIdentityRequest {
    identity: String,
}

pub async fn delete_identity(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<DeleteIdentityRequest>,
) -> Result<Response, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::identity(IdentityAction::Delete, None))?;
    let (store, workspace, identity) = (state.store.clone(), root_key.workspace.clone(), write.body.identity);
    let answer = |deleted: &bool| if *deleted { Ok(Envelope::empty()) } else { Err(ApiError::identity_not_found()) };
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, identity) = (store.clone(), workspace.clone(), identity.clone());
            Box::pin(async move { store.delete_identity(&workspace, &identity, recording).await })
        },
    )
    .await)
}
