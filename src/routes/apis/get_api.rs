//! `apis.getApi`: one live API, `{id, name}`.
//!
//! Permission: `api.*.read_api` or `api.<apiId>.read_api`, checked before the lookup, so a key without it
//! learns nothing of which APIs exist. Errors: 400, 401, 403, 404 `api_not_found` (missing, deleted, or
//! another workspace's), 413.

use axum::extract::State;

use crate::AppState;
use crate::domain::api::Api;
use crate::domain::permission::{ApiAction, Needed};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};
use crate::routes::apis::{ApiIdRequest, api_not_found};

pub async fn get_api(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<ApiIdRequest>,
) -> Result<Envelope<Api>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    root_key.authorize(Needed::api(ApiAction::ReadApi, Some(&request.api_id)))?;
    let api = state.store.get_api(&root_key.workspace, &request.api_id).await?;
    api.map(Envelope::data).ok_or_else(api_not_found)
}
