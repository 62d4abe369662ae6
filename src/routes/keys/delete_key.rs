//! `keys.deleteKey`: softly by default (the key no longer verifies, and its hash stays taken), or its row
//! with `permanent: true`. Its identity is not touched. A second delete is 404.
//!
//! The key is looked up first, then the permission: `api.*.delete_key` or `api.<apiId>.delete_key`, a plain
//! 403. Errors: 400, 401, 403, 404 `key_not_found`, 413. The 200 body's `data` is `{}`.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::AppState;
use crate::domain::permission::ApiAction;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;
use crate::routes::keys::{authorize_key_write, key_not_found};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteKeyRequest {
    key_id: String,
    #[serde(default)]
    permanent: bool,
}

pub async fn delete_key(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<DeleteKeyRequest>,
) -> Result<Response, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    let (workspace, request) = (root_key.workspace.clone(), write.body);
    authorize_key_write(&state, &root_key, &request.key_id, write.idempotency_key.as_ref(), ApiAction::DeleteKey)
        .await?;
    let store = state.store.clone();
    let answer =
        |deleted: &bool| if *deleted { Ok(Envelope::data(Map::<String, Value>::new())) } else { Err(key_not_found()) };
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, key_id) = (store.clone(), workspace.clone(), request.key_id.clone());
            Box::pin(async move { store.delete_key(&workspace, &key_id, request.permanent, recording).await })
        },
    )
    .await)
}
