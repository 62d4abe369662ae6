//! v1 `identities.createIdentity` (POST, JSON body `{externalId, meta?, ratelimits?}`): creates an
//! identity, as v2's create does.
//!
//! Permission: `identity.*.create_identity`. Errors: 400 `BAD_REQUEST` (the first schema problem; meta over
//! 64,000 characters; an externalId over 256 characters or holding a NUL, or over 50 ratelimits, which
//! Unkey answered 500 or stored), 403 `UNAUTHORIZED` / `INSUFFICIENT_PERMISSIONS`, 409 `CONFLICT` (the externalId is
//! taken; or two ratelimits share a name, where Unkey answered 500).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Serialize;

use crate::AppState;
use crate::domain::identity::{Creation, NewIdentity};
use crate::domain::permission::{IdentityAction, Needed};
use crate::idempotency::{IdempotencyKey, run_write};
use crate::routes::v1::auth::authenticate;
use crate::routes::v1::identities::{check_meta_size, check_unique_names};
use crate::routes::v1::input::Fields;
use crate::routes::v1::{V1Error, V1Json};

/// The size of Unkey's externalId column, `varchar(256)`: Unkey answered a longer one 500.
const MAX_EXTERNAL_ID_CHARS: usize = 256;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedIdentity {
    identity_id: String,
}

pub async fn create_identity(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, V1Error> {
    let fields = Fields::of_body(&headers, &body)?;
    let external_id = fields
        .bounded_string("externalId", 3, MAX_EXTERNAL_ID_CHARS)?
        .ok_or_else(|| V1Error::bad_request("externalId: Required"))?;
    let meta = fields.object("meta")?;
    let ratelimits = fields.ratelimits("ratelimits")?;
    let idempotency_key = IdempotencyKey::of_request(&headers, uri.path(), &body)?;
    let caller = authenticate(&state, &headers).await?;
    caller.authorize(Needed::identity(IdentityAction::Create, None))?;
    check_meta_size(meta.as_ref())?;
    check_unique_names(ratelimits.as_deref())?;
    let new = NewIdentity {
        id: None,
        external_id,
        meta: meta.unwrap_or_default(),
        ratelimits: ratelimits.unwrap_or_default(),
    };
    let (store, workspace) = (state.store.clone(), caller.root_key.workspace.clone());
    let external_id = new.external_id.clone();
    let answer = move |creation: &Creation| match creation {
        Creation::Created { id } => Ok(V1Json(CreatedIdentity { identity_id: id.clone() })),
        Creation::AlreadyExists { existing_id } => {
            crate::middleware::log_conflict("externalId", &external_id, existing_id);
            Err(V1Error::identity_already_exists(&external_id))
        }
    };
    Ok(run_write(&state, &caller.key_hash, &workspace, idempotency_key, answer, |recording| {
        let (store, workspace, new) = (store.clone(), workspace.clone(), new.clone());
        Box::pin(async move { store.create_identity(&workspace, &new, recording).await })
    })
    .await)
}
