//! Unkey's deprecated v1 identities API (`/v1/identities.*`), over the same data as v2, for Unkey's v1
//! client (`@unkey/api` 0.x) and the integrations still built on it. Shapes, codes and messages follow
//! Unkey's TypeScript v1 API (digested in `../shared/spec/unkey-v1-identities.md`); where Sigil chose
//! otherwise, the README's "v1 and v2 over the same data" says why.

mod auth;
mod error;
pub mod identities;
mod input;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub use error::{V1Error, V1Json};

/// Every v1 response names its request in `Unkey-Request-Id`, as Unkey's did: the v1 error body's
/// `requestId` is the same id.
pub async fn request_id_header(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Ok(id) = HeaderValue::from_str(&crate::envelope::current_request_id()) {
        response.headers_mut().insert("unkey-request-id", id);
    }
    response
}
