//! Every route of the API; one file per operation, named after its RPC.

pub mod identities;
mod liveness;
mod openapi_document;
pub mod v1;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

const CREATE_IDENTITY: &str = "/v2/identities.createIdentity";
const GET_IDENTITY: &str = "/v2/identities.getIdentity";
const LIST_IDENTITIES: &str = "/v2/identities.listIdentities";
const UPDATE_IDENTITY: &str = "/v2/identities.updateIdentity";
const DELETE_IDENTITY: &str = "/v2/identities.deleteIdentity";
const UPSERT_IDENTITY: &str = "/v2/identities.upsertIdentity";

pub fn router() -> Router<AppState> {
    Router::new()
        // Open to anyone: keep /metrics on a private network.
        .route("/", get(liveness::liveness))
        .route("/v2/liveness", get(liveness::liveness))
        .route("/openapi.json", get(openapi_document::openapi_document))
        .route("/metrics", get(crate::metrics::metrics_endpoint))
        .route("/docs/errors", get(crate::error_docs::index))
        .route("/docs/errors/{*path}", get(crate::error_docs::error_page))
        // Reads: a root key in `Authorization`, checked by the handler after the body, as Unkey does.
        .route(GET_IDENTITY, post(identities::get_identity))
        .route(LIST_IDENTITIES, post(identities::list_identities))
        // Writes: a root key, and an optional `Idempotency-Key` (`idempotency.rs`).
        .route(CREATE_IDENTITY, post(identities::create_identity))
        .route(UPDATE_IDENTITY, post(identities::update_identity))
        .route(DELETE_IDENTITY, post(identities::delete_identity))
        .route(UPSERT_IDENTITY, post(identities::upsert_identity))
        .merge(v1_router())
}

/// Unkey's deprecated v1 identities API (`routes/v1/`): reads are GETs with query strings.
fn v1_router() -> Router<AppState> {
    Router::new()
        .route("/v1/identities.createIdentity", post(v1::identities::create_identity))
        .route("/v1/identities.getIdentity", get(v1::identities::get_identity))
        .route("/v1/identities.listIdentities", get(v1::identities::list_identities))
        .route("/v1/identities.updateIdentity", post(v1::identities::update_identity))
        .route("/v1/identities.deleteIdentity", post(v1::identities::delete_identity))
        .layer(axum::middleware::from_fn(v1::request_id_header))
}
