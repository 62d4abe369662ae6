//! Unkey's deprecated v1 identities API (`/v1/identities.*`), over the same data as v2, for Unkey's v1
//! client (`@unkey/api` 0.x) and the integrations still built on it. Shapes, codes and messages follow
//! Unkey's TypeScript v1 API (digested in `../shared/spec/unkey-v1-identities.md`); where Sigil chose
//! otherwise, the README's "v1 and v2 over the same data" says why.

mod auth;
mod error;
pub mod identities;
mod input;

use axum::body::{Body, to_bytes};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};

use error::InV1Shape;
pub use error::{V1Error, V1Json};

/// The largest error body read back to be put in v1's envelope; Sigil's own are far smaller.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// `response` as v1's clients read it: with the `Unkey-Request-Id` header Unkey's v1 sent (the same id as a
/// v1 error's `requestId`), and, when it is an error that a layer outside the v1 handlers made in v2's
/// envelope (load shedding, timeouts, body limits, unknown routes), in v1's envelope instead.
pub async fn in_v1_shape(response: Response) -> Response {
    let status = response.status();
    let in_v1_shape = response.extensions().get::<InV1Shape>().is_some();
    let v2_error = response.extensions().get::<ErrorCode>().copied().filter(|_| !in_v1_shape);
    let mut response = match v2_error {
        Some(code) if status.is_client_error() || status.is_server_error() => {
            let (parts, body) = response.into_parts();
            let bytes = to_bytes(body, MAX_ERROR_BODY).await.unwrap_or_default();
            match v2_detail(&bytes) {
                Some(detail) => V1Error::from(ApiError::new(code, detail)).into_response(),
                None => Response::from_parts(parts, Body::from(bytes)),
            }
        }
        _ => response,
    };
    if let Ok(id) = HeaderValue::from_str(&crate::envelope::current_request_id()) {
        response.headers_mut().insert("unkey-request-id", id);
    }
    response
}

/// The `detail` of a v2 error body; `None` for any other body.
fn v2_detail(bytes: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(bytes).ok()?;
    body["error"]["detail"].as_str().map(str::to_owned)
}
