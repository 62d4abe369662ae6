//! `identities.updateIdentity`: replaces meta and/or the ratelimit set of a live identity, and, Sigil's own
//! (Unkey's users asked for it in issue #4432), renames it with `externalId`: a name another live identity
//! holds is a 409 `identity_already_exists` as on create, and nothing is written.
//!
//! Permission: `identity.*.update_identity`, checked before the lookup (403 before 404, as Unkey).
//! Ratelimits are matched by name and keep their ids; omitted parts stay as they are. Errors: 400 (also
//! for duplicate ratelimit names or meta over 1 MiB), 401, 403, 404 `identity_not_found`, 409, 413.
//! The response is the whole identity as stored after the update; to a key that may not read it, only its
//! id and externalId (meta and ratelimits left out, as Unkey leaves out empty ones).

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use crate::AppState;
use crate::domain::identity::{IdentityChanges, IdentityUpdate, Meta, RatelimitInput, check_meta_and_ratelimits};
use crate::domain::permission::{IdentityAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;
use crate::routes::identities::create_identity::already_exists;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateIdentityRequest {
    identity: String,
    meta: Option<Meta>,
    ratelimits: Option<Vec<RatelimitInput>>,
    /// Sigil's own: renames the identity.
    external_id: Option<String>,
}

pub async fn update_identity(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<UpdateIdentityRequest>,
) -> Result<Response, ApiError> {
    let request = write.body;
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::identity(IdentityAction::Update, None))?;
    check_meta_and_ratelimits(request.meta.as_ref(), request.ratelimits.as_deref())?;
    let changes = IdentityChanges {
        meta: request.meta,
        ratelimits: request.ratelimits,
        external_id: request.external_id.clone(),
    };
    let (store, workspace, identity) = (state.store.clone(), root_key.workspace.clone(), request.identity);
    let answer = move |updated: &IdentityUpdate| {
        let identity = match updated {
            IdentityUpdate::Updated(identity) => identity,
            IdentityUpdate::NotFound => return Err(ApiError::identity_not_found()),
            IdentityUpdate::ExternalIdTaken { existing_id } => {
                let renamed = request.external_id.as_deref().unwrap_or_default();
                return Err(already_exists(&root_key, renamed, existing_id));
            }
        };
        if root_key.may(Needed::identity(IdentityAction::Read, Some(&identity.id))) {
            Ok(Envelope::data(identity.clone()))
        } else {
            Ok(Envelope::data(identity.names_only()))
        }
    };
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, identity, changes) =
                (store.clone(), workspace.clone(), identity.clone(), changes.clone());
            Box::pin(async move { store.update_identity(&workspace, &identity, &changes, recording).await })
        },
    )
    .await)
}
