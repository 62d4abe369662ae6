//! `identities.upsertIdentity` (a Sigil extension; Unkey has no upsert): get-or-create by externalId.
//!
//! Creates the identity when the externalId is free; otherwise replaces the parts that were sent (meta,
//! ratelimits) and leaves the rest. One statement decides, so concurrent upserts of one externalId end
//! with one identity and never answer 409. Permission: `identity.*.create_identity` and
//! `identity.*.update_identity`. Errors: 400, 401, 403, 413. The response is the identity as stored plus
//! `"created": true|false`, or, for a key that may not read the identity, its `id` and `created` alone:
//! an upsert of an existing externalId must not show what the caller may not read.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::domain::identity::{Identity, IdentityUpsert, Meta, RatelimitInput, check_meta_and_ratelimits};
use crate::domain::permission::{IdentityAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpsertIdentityRequest {
    external_id: String,
    meta: Option<Meta>,
    ratelimits: Option<Vec<RatelimitInput>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum UpsertedIdentity {
    Readable {
        #[serde(flatten)]
        identity: Identity,
        created: bool,
    },
    Unreadable {
        id: String,
        created: bool,
    },
}

pub async fn upsert_identity(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<UpsertIdentityRequest>,
) -> Result<Response, ApiError> {
    let request = write.body;
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::identity(IdentityAction::Create, None))?;
    root_key.authorize(Needed::identity(IdentityAction::Update, None))?;
    check_meta_and_ratelimits(request.meta.as_ref(), request.ratelimits.as_deref())?;
    let upsert =
        IdentityUpsert { external_id: request.external_id, meta: request.meta, ratelimits: request.ratelimits };
    let (store, workspace) = (state.store.clone(), root_key.workspace.clone());
    let answer = move |(identity, created): &(Identity, bool)| {
        let created = *created;
        if root_key.may(Needed::identity(IdentityAction::Read, Some(&identity.id))) {
            Ok(Envelope::data(UpsertedIdentity::Readable { identity: identity.clone(), created }))
        } else {
            Ok(Envelope::data(UpsertedIdentity::Unreadable { id: identity.id.clone(), created }))
        }
    };
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, upsert) = (store.clone(), workspace.clone(), upsert.clone());
            Box::pin(async move { store.upsert_identity(&workspace, &upsert, recording).await })
        },
    )
    .await)
}
