//! v1 `identities.updateIdentity` (POST, JSON body `{identityId?, externalId?, environment?, meta?,
//! ratelimits?}`): replaces meta and/or the whole ratelimit set, matched by name (a matched ratelimit keeps
//! its id and autoApply; a new one is not auto-applied; one not sent is removed).
//!
//! Permission: `identity.*.update_identity`. Errors: 400 (the first schema problem; neither id given; meta
//! over 64,000 characters), 403, 404 `NOT_FOUND` (`identity <identityId or externalId> not found`), 409
//! `CONFLICT` (two ratelimits share a name). `identityId` wins over `externalId`. `environment` defaults
//! to `"default"` as Unkey documented (Unkey's code compared it with NULL, so an update by externalId
//! without it was always 404); Sigil has one environment, so any other matches nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use crate::AppState;
use crate::domain::identity::{Identity, IdentityChanges, IdentityUpdate, RatelimitInput};
use crate::domain::permission::{IdentityAction, Needed};
use crate::idempotency::{IdempotencyKey, run_write};
use crate::routes::v1::auth::authenticate;
use crate::routes::v1::identities::{
    V1Identity, by_external_id, by_id, check_meta_size, check_unique_names, key_has_a_record, not_found, ratelimits,
};
use crate::routes::v1::input::Fields;
use crate::routes::v1::{V1Error, V1Json};

pub async fn update_identity(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V1Error> {
    let fields = Fields::of_body(&headers, &body)?;
    let identity_id = fields.string("identityId", 1)?;
    let external_id = fields.string("externalId", 1)?;
    let environment = fields.string("environment", 0)?.unwrap_or_else(|| "default".to_owned());
    let meta = fields.object("meta")?;
    let sent_ratelimits = fields.ratelimits("ratelimits")?;
    let idempotency_key = IdempotencyKey::of_request(&headers, uri.path(), &body)?;
    let caller = authenticate(&state, &headers).await?;
    caller.authorize(Needed::identity(IdentityAction::Update, None))?;
    let asked = identity_id
        .clone()
        .or(external_id)
        .ok_or_else(|| V1Error::bad_request("Provide either identityId or externalId"))?;
    check_unique_names(sent_ratelimits.as_deref())?;
    check_meta_size(meta.as_ref())?;
    let workspace = caller.root_key.workspace.clone();
    let found = match (&identity_id, environment.as_str()) {
        (Some(_), _) => by_id(&state, &workspace, &asked).await?,
        (None, "default") => by_external_id(&state, &workspace, &asked).await?,
        (None, _) => None,
    };
    let target = match &found {
        Some(current) => current.id.clone(),
        // Gone, perhaps deleted since the request this one retries: the key's record answers it.
        None if key_has_a_record(&state, &workspace, idempotency_key.as_ref()).await? => asked.clone(),
        None => return Err(not_found(&asked)),
    };
    let ratelimits = sent_ratelimits.map(|sent| keeping_auto_apply(found.as_ref(), sent));
    let changes = IdentityChanges { meta, ratelimits, external_id: None };
    Ok(update(&state, &caller.key_hash, &workspace, idempotency_key, target, asked, changes).await)
}

/// v1 never sets autoApply: a ratelimit it names keeps the autoApply it has.
fn keeping_auto_apply(current: Option<&Identity>, sent: Vec<RatelimitInput>) -> Vec<RatelimitInput> {
    let held = current.map(ratelimits).unwrap_or_default();
    sent.into_iter()
        .map(|input| {
            let auto_apply = held.iter().any(|limit| limit.name == input.name && limit.auto_apply);
            RatelimitInput { auto_apply, ..input }
        })
        .collect()
}

async fn update(
    state: &AppState,
    key_hash: &str,
    workspace: &crate::domain::workspace::WorkspaceId,
    idempotency_key: Option<IdempotencyKey>,
    identity_id: String,
    asked: String,
    changes: IdentityChanges,
) -> Response {
    let store = state.store.clone();
    let answer = move |updated: &IdentityUpdate| match updated {
        IdentityUpdate::Updated(identity) => Ok(V1Json(V1Identity::of(identity))),
        // v1 renames nothing, so no externalId can be taken.
        IdentityUpdate::NotFound | IdentityUpdate::ExternalIdTaken { .. } => Err(not_found(&asked)),
    };
    run_write(state, key_hash, workspace, idempotency_key, answer, |recording| {
        let (store, workspace, identity_id, changes) =
            (store.clone(), workspace.clone(), identity_id.clone(), changes.clone());
        Box::pin(async move { store.update_identity(&workspace, &identity_id, &changes, recording).await })
    })
    .await
}
