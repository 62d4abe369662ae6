//! Every route of the API; one file per operation, named after its RPC.

pub mod identities;
mod liveness;
mod openapi_document;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(liveness::liveness))
        .route("/v2/liveness", get(liveness::liveness))
        .route("/openapi.json", get(openapi_document::openapi_document))
        .route("/metrics", get(crate::metrics::metrics_endpoint))
        .route("/docs/errors", get(crate::error_docs::index))
        .route("/docs/errors/{*path}", get(crate::error_docs::error_page))
        .route("/v2/identities.createIdentity", post(identities::create_identity))
        .route("/v2/identities.getIdentity", post(identities::get_identity))
        .route("/v2/identities.listIdentities", post(identities::list_identities))
        .route("/v2/identities.updateIdentity", post(identities::update_identity))
        .route("/v2/identities.deleteIdentity", post(identities::delete_identity))
        .route("/v2/identities.upsertIdentity", post(identities::upsert_identity))
}
