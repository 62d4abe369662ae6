//! `apis.listKeys`: an API's live keys in id order, as getKey shows each, `limit` (1–100, 100) to a page,
//! from `cursor` (the id of the page's first key, as Unkey's) on; with `externalId`, those of that live
//! identity alone (none when it has none).
//!
//! The API is looked up first; then the root key needs `read_key` and `read_api` (each as `api.*.…` or
//! `api.<apiId>.…`), and without them gets the 404 of a missing API, as Unkey masks it. Errors: 400 (also
//! `decrypt: true`, which the schema refuses: Sigil keeps no recoverable keys), 401, 404 `api_not_found`,
//! 413.

use axum::extract::State;
use serde::Deserialize;

use crate::AppState;
use crate::domain::permission::{ApiAction, Needed};
use crate::envelope::{Envelope, Pagination};
use crate::error::ApiError;
use crate::extract::{RootKeyHeader, ValidJson};
use crate::routes::apis::api_not_found;
use crate::routes::keys::{KeyResponseData, page_of_keys};
use crate::store::KeysOf;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListKeysRequest {
    api_id: String,
    #[serde(default = "full_page")]
    limit: i64,
    cursor: Option<String>,
    external_id: Option<String>,
}

fn full_page() -> i64 {
    100
}

pub async fn list_keys(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<ListKeysRequest>,
) -> Result<Envelope<Vec<KeyResponseData>>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    let workspace = &root_key.workspace;
    let api = state.store.get_api(workspace, &request.api_id).await?;
    let may = |action| root_key.may(Needed::api(action, Some(&request.api_id)));
    if api.is_none() || !(may(ApiAction::ReadKey) && may(ApiAction::ReadApi)) {
        return Err(api_not_found());
    }
    let identity_id = match &request.external_id {
        None => None,
        Some(external_id) => match state.store.get_identity_by_external_id(workspace, external_id).await? {
            Some(identity) => Some(identity.id),
            None => return Ok(Envelope::page(Vec::new(), Pagination { has_more: false, cursor: None })),
        },
    };
    let of = KeysOf::Api { api_id: request.api_id, identity_id };
    page_of_keys(&state, workspace, &of, request.cursor.as_deref(), request.limit).await
}
