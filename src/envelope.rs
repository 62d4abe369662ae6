//! Success bodies `{"meta":{"requestId"},"data"?,"pagination"?}` and the request id they carry.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

tokio::task_local! {
    /// Set by the request-id middleware for the whole life of a request, so that any response carries its id
    /// and any line logged while it runs names it (`log_fields::InRequest`).
    pub static REQUEST: RequestTag;
}

/// What names a request in its answers and its log lines.
#[derive(Clone, Debug)]
pub struct RequestTag {
    pub id: String,
    pub method: Method,
    pub path: String,
}

/// The current request's id, or `req_unknown` outside a request (never expected in practice).
pub fn current_request_id() -> String {
    REQUEST.try_with(|request| request.id.clone()).unwrap_or_else(|_| "req_unknown".to_owned())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMeta {
    pub request_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A 200 body. `data` is absent for operations that return nothing (deleteIdentity).
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    meta: ResponseMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination>,
    /// A string in `data` that a record of this answer must not hold as it is (`sealed_secrets.rs`).
    #[serde(skip)]
    secret: Option<String>,
}

impl<T: Serialize> Envelope<T> {
    pub fn data(data: T) -> Self {
        Self::build(Some(data), None)
    }

    pub fn page(data: T, pagination: Pagination) -> Self {
        Self::build(Some(data), Some(pagination))
    }

    fn build(data: Option<T>, pagination: Option<Pagination>) -> Self {
        Self { meta: ResponseMeta { request_id: current_request_id() }, data, pagination, secret: None }
    }

    /// This answer shows `secret` (a new key), which its record keeps sealed.
    pub fn holding_secret(self, secret: String) -> Self {
        Self { secret: Some(secret), ..self }
    }

    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }
}

impl Envelope<()> {
    pub fn empty() -> Self {
        Self::build(None, None)
    }
}

impl<T: Serialize> Envelope<T> {
    /// The body as JSON text, the bytes [`IntoResponse`] sends.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("response bodies always serialize")
    }
}

/// Room for most bodies (a verification with an identity and its limits is about 500 bytes): axum's `Json`
/// starts at 128 bytes and copies the body each time it grows.
const BODY_BYTES: usize = 1024;

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(BODY_BYTES);
        match serde_json::to_writer(&mut body, &self) {
            Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
            // As axum's `Json` answers a body that cannot be serialized.
            Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
        }
    }
}
