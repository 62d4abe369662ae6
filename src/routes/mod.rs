//! Every route of the API; one file per operation, named after its RPC.

pub mod apis;
pub mod identities;
pub mod keys;
mod liveness;
mod openapi_document;
mod readiness;
pub mod v1;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

use crate::AppState;

const CREATE_IDENTITY: &str = "/v2/identities.createIdentity";
const GET_IDENTITY: &str = "/v2/identities.getIdentity";
const LIST_IDENTITIES: &str = "/v2/identities.listIdentities";
const UPDATE_IDENTITY: &str = "/v2/identities.updateIdentity";
const DELETE_IDENTITY: &str = "/v2/identities.deleteIdentity";
const UPSERT_IDENTITY: &str = "/v2/identities.upsertIdentity";
const LIST_IDENTITY_KEYS: &str = "/v2/identities.listKeys";
const CREATE_API: &str = "/v2/apis.createApi";
const GET_API: &str = "/v2/apis.getApi";
const DELETE_API: &str = "/v2/apis.deleteApi";
const LIST_KEYS: &str = "/v2/apis.listKeys";
const CREATE_KEY: &str = "/v2/keys.createKey";
const GET_KEY: &str = "/v2/keys.getKey";
const DELETE_KEY: &str = "/v2/keys.deleteKey";
const UPDATE_KEY: &str = "/v2/keys.updateKey";
const UPDATE_CREDITS: &str = "/v2/keys.updateCredits";
const VERIFY_KEY: &str = "/v2/keys.verifyKey";
const WHOAMI: &str = "/v2/keys.whoami";

/// The media type of an error answer to `path`, as Unkey's OpenAPI document declares it: the official clients
/// type an error (`NotFoundErrorResponse`, …) only when its Content-Type is the declared one, and raise a
/// generic error otherwise. deleteIdentity declares `application/problem+json` for every error, every route
/// declares it for 429, and every other error is `application/json`. (Unkey's own server sends
/// `application/json` unless the request's Accept asks otherwise, so its deleteIdentity errors are untyped.)
pub fn declared_error_media_type(path: &str, status: StatusCode) -> &'static str {
    if path == DELETE_IDENTITY || status == StatusCode::TOO_MANY_REQUESTS {
        "application/problem+json"
    } else {
        "application/json"
    }
}

/// Makes every answer one its API's clients read, whichever layer made it: a v1 answer names its request
/// in `Unkey-Request-Id` and an error comes in v1's envelope (a 503 of the load shedder, a 413 of the body
/// reader and the like are made in v2's); a v2 error gets its declared media type.
pub async fn in_each_apis_own_shape<Then, Answer>(request: Request, then: Then) -> Response
where
    Then: FnOnce(Request) -> Answer,
    Answer: std::future::Future<Output = Response>,
{
    let path = request.uri().path().to_owned();
    let mut response = then(request).await;
    let status = response.status();
    if path.starts_with("/v1/") {
        return v1::in_v1_shape(response).await;
    }
    if path.starts_with("/v2/") && (status.is_client_error() || status.is_server_error()) {
        let media_type = HeaderValue::from_static(declared_error_media_type(&path, status));
        response.headers_mut().insert(header::CONTENT_TYPE, media_type);
    }
    response
}

pub fn router() -> Router<AppState> {
    Router::new()
        // Open to anyone: keep /metrics on a private network.
        .route("/", get(liveness::liveness))
        .route("/v2/liveness", get(liveness::liveness))
        .route("/v2/readiness", get(readiness::readiness))
        .route("/openapi.json", get(openapi_document::openapi_document))
        .route("/metrics", get(crate::metrics::metrics_endpoint))
        .route("/docs/errors", get(crate::error_docs::index))
        .route("/docs/errors/{*path}", get(crate::error_docs::error_page))
        // Reads: a root key in `Authorization`, checked by the handler after the body, as Unkey does.
        .route(GET_IDENTITY, post(identities::get_identity))
        .route(LIST_IDENTITIES, post(identities::list_identities))
        .route(LIST_IDENTITY_KEYS, post(identities::list_keys))
        // Writes: a root key, and an optional `Idempotency-Key` (`idempotency.rs`).
        .route(CREATE_IDENTITY, post(identities::create_identity))
        .route(UPDATE_IDENTITY, post(identities::update_identity))
        .route(DELETE_IDENTITY, post(identities::delete_identity))
        .route(UPSERT_IDENTITY, post(identities::upsert_identity))
        .route(CREATE_API, post(apis::create_api))
        .route(GET_API, post(apis::get_api))
        .route(DELETE_API, post(apis::delete_api))
        .route(LIST_KEYS, post(apis::list_keys))
        .route(CREATE_KEY, post(keys::create_key))
        .route(GET_KEY, post(keys::get_key))
        .route(DELETE_KEY, post(keys::delete_key))
        .route(UPDATE_KEY, post(keys::update_key))
        .route(UPDATE_CREDITS, post(keys::update_credits))
        .route(VERIFY_KEY, post(keys::verify_key))
        .route(WHOAMI, post(keys::whoami))
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
}
