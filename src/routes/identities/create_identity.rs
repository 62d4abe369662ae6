//! `identities.createIdentity`: creates an identity named by the customer's externalId.
//!
//! Permission: `identity.*.create_identity`. Errors: 400 `invalid_input` / `malformed`, 401 `key_not_found`,
//! 403 `insufficient_permissions`, 409 `identity_already_exists`, 413 `request_body_too_large`.
//! The 409 adds extension members: `conflictingField`, `conflictingValue`, and, when the key may read the
//! existing identity, `existingIdentityId` and `retrieve` (the request that fetches it).

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::domain::identity::{Creation, Meta, NewIdentity, RatelimitInput, check_meta_and_ratelimits};
use crate::domain::permission::{IdentityAction, Needed, RootKey};
use crate::envelope::Envelope;
use crate::error::{ApiError, ErrorCode};
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIdentityRequest {
    external_id: String,
    #[serde(default)]
    meta: Meta,
    #[serde(default)]
    ratelimits: Vec<RatelimitInput>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedIdentity {
    identity_id: String,
}

pub async fn create_identity(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<CreateIdentityRequest>,
) -> Result<Response, ApiError> {
    let request = write.body;
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::identity(IdentityAction::Create, None))?;
    check_meta_and_ratelimits(Some(&request.meta), Some(&request.ratelimits))?;
    let new =
        NewIdentity { id: None, external_id: request.external_id, meta: request.meta, ratelimits: request.ratelimits };
    let (store, workspace) = (state.store.clone(), root_key.workspace.clone());
    let external_id = new.external_id.clone();
    let answer = move |creation: &Creation| match creation {
        Creation::Created { id } => Ok(Envelope::data(CreatedIdentity { identity_id: id.clone() })),
        Creation::AlreadyExists { existing_id } => Err(already_exists(&root_key, &external_id, existing_id)),
    };
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, new) = (store.clone(), workspace.clone(), new.clone());
            Box::pin(async move { store.create_identity(&workspace, &new, recording).await })
        },
    )
    .await)
}

pub(super) fn already_exists(root_key: &RootKey, external_id: &str, existing_id: &str) -> ApiError {
    crate::middleware::log_conflict("externalId", external_id, existing_id);
    let mut error = ApiError::new(
        ErrorCode::IdentityAlreadyExists,
        format!("Identity with externalId '{external_id}' already exists in this workspace."),
    )
    .with_extension("conflictingField", json!("externalId"))
    .with_extension("conflictingValue", json!(external_id));
    // Naming the existing id to a key that may not read it would leak more than the 409 itself does.
    if root_key.may(Needed::identity(IdentityAction::Read, Some(existing_id))) {
        error = error.with_extension("existingIdentityId", json!(existing_id)).with_extension(
            "retrieve",
            json!({"method": "POST", "path": "/v2/identities.getIdentity", "body": {"identity": existing_id}}),
        );
    }
    error
}
