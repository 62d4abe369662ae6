//! `apis.deleteApi`: deletes an API softly, as Unkey does: its keys stay, and no longer verify. A second
//! delete is 404.
//!
//! Permission: `api.*.delete_api` or `api.<apiId>.delete_api`, checked before the lookup. Errors: 400, 401,
//! 403, 404 `api_not_found`, 413. The 200 body's `data` is `{}`.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::AppState;
use crate::domain::permission::{ApiAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;
use crate::routes::apis::{ApiIdRequest, api_not_found};

pub async fn delete_api(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<ApiIdRequest>,
) -> Result<Response, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    let api_id = write.body.api_id;
    root_key.authorize(Needed::api(ApiAction::DeleteApi, Some(&api_id)))?;
    let (store, workspace) = (state.store.clone(), root_key.workspace.clone());
    let answer =
        |deleted: &bool| if *deleted { Ok(Envelope::data(Map::<String, Value>::new())) } else { Err(api_not_found()) };
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, api_id) = (store.clone(), workspace.clone(), api_id.clone());
            Box::pin(async move { store.delete_api(&workspace, &api_id, recording).await })
        },
    )
    .await)
}
