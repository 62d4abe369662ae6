//! v1 `identities.deleteIdentity` (POST, JSON body `{identityId}`): deletes the identity as v2's delete
//! does, softly (Unkey's v1 deleted its row), so its externalId is free again at once.
//!
//! Permission: `identity.*.delete_identity` or `identity.<id>.delete_identity`. Errors: 400, 403, 404
//! `NOT_FOUND` (`identity <id> not found`). The 200 body is `{}`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::AppState;
use crate::domain::permission::{IdentityAction, Needed};
use crate::idempotency::{IdempotencyKey, run_write};
use crate::routes::v1::auth::authenticate;
use crate::routes::v1::identities::{by_id, key_has_a_record, not_found};
use crate::routes::v1::input::Fields;
use crate::routes::v1::{V1Error, V1Json};

pub async fn delete_identity(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V1Error> {
    let fields = Fields::of_body(&headers, &body)?;
    let identity_id = fields.required_string("identityId", 1)?;
    let idempotency_key = IdempotencyKey::of_request(&headers, uri.path(), &body)?;
    let caller = authenticate(&state, &headers).await?;
    caller.authorize(Needed::identity(IdentityAction::Delete, Some(&identity_id)))?;
    let workspace = caller.root_key.workspace.clone();
    // The store's delete also matches an externalId, which v1's identityId must not: the id is checked first.
    if by_id(&state, &workspace, &identity_id).await?.is_none()
        && !key_has_a_record(&state, &workspace, idempotency_key.as_ref()).await?
    {
        return Err(not_found(&identity_id));
    }
    let store = state.store.clone();
    let answered_id = identity_id.clone();
    let answer = move |deleted: &bool| {
        if *deleted { Ok(V1Json(Map::<String, Value>::new())) } else { Err(not_found(&answered_id)) }
    };
    Ok(run_write(&state, &caller.key_hash, &workspace, idempotency_key, answer, |recording| {
        let (store, workspace, identity_id) = (store.clone(), workspace.clone(), identity_id.clone());
        Box::pin(async move { store.delete_identity(&workspace, &identity_id, recording).await })
    })
    .await)
}
