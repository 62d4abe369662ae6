//! `apis.createApi`: creates an API, which owns keys. Names need not be unique, as in Unkey.
//!
//! Permission: `api.*.create_api` only (no per-API form: the API does not exist yet). Errors: 400, 401,
//! 403, 413.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::domain::api::Api;
use crate::domain::permission::{ApiAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;

#[derive(Deserialize)]
pub struct CreateApiRequest {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedApi {
    api_id: String,
}

pub async fn create_api(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<CreateApiRequest>,
) -> Result<Response, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::api(ApiAction::CreateApi, None))?;
    let (store, workspace, name) = (state.store.clone(), root_key.workspace.clone(), write.body.name);
    let answer = |api: &Api| Ok::<_, ApiError>(Envelope::data(CreatedApi { api_id: api.id.clone() }));
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, name) = (store.clone(), workspace.clone(), name.clone());
            Box::pin(async move { store.create_api(&workspace, &name, recording).await })
        },
    )
    .await)
}
