//! `identities.upsertIdentity` (a Sigil extension; Unkey has no upsert): get-or-create by externalId.
//!
//! Creates the identity when the externalId is free; otherwise replaces the parts that were sent (meta,
//! ratelimits) and leaves the rest. One statement decides, so concurrent upserts of one externalId end
//! with one identity and never answer 409. Permission: `identity.*.create_identity` and
//! `identity.*.update_identity`. Errors: 400, 401, 403, 413. The response is the identity as stored plus
//! `"created": true|false`, or, for a key that may not read the identity, its `id` and `created` alone:
//! an upsert of an existing externalId must not show what the caller may not read.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::domain::identity::{Identity, IdentityUpsert, Meta, RatelimitInput, check_meta_and_ratelimits};
use crate::domain::permission::{IdentityAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};

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
    ValidJson(request): ValidJson<UpsertIdentityRequest>,
) -> Result<Envelope<UpsertedIdentity>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::identity(IdentityAction::Create, None))?;
    root_key.authorize(Needed::identity(IdentityAction::Update, None))?;
    check_meta_and_ratelimits(request.meta.as_ref(), request.ratelimits.as_deref())?;
    let upsert =
        IdentityUpsert { external_id: request.external_id, meta: request.meta, ratelimits: request.ratelimits };
    let (identity, created) = state.store.upsert_identity(&root_key.workspace, &upsert).await?;
    if root_key.may(Needed::identity(IdentityAction::Read, Some(&identity.id))) {
        Ok(Envelope::data(UpsertedIdentity::Readable { identity, created }))
    } else {
        Ok(Envelope::data(UpsertedIdentity::Unreadable { id: identity.id, created }))
    }
}
