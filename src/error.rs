//! The one error type every handler, extractor and middleware returns, and its wire form:
//! `{"meta":{"requestId"},"error":{"detail","status","title","type","errors"?}}`.

use std::sync::OnceLock;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::envelope::{ResponseMeta, current_request_id};
use crate::store::StoreError;

/// Default base of every error `type` URL; clients match on the trailing `<system>/<category>/<code>`.
pub const DEFAULT_ERROR_DOCS_BASE: &str = "https://unkey.com/docs/api-reference/errors-v2";

static ERROR_DOCS_BASE: OnceLock<String> = OnceLock::new();

/// Points every error `type` URL at `base` (e.g. Sigil's own `/docs/errors`). Set once, at startup.
pub fn set_error_docs_base(base: &str) {
    let _ = ERROR_DOCS_BASE.set(base.trim_end_matches('/').to_owned());
}

/// Every error code Sigil emits. Status, title and URL path each come from an exhaustive `match`,
/// so a new code does not compile until all three are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum ErrorCode {
    /// The body is not JSON, breaks the request schema or a domain rule, or the Authorization header is missing.
    InvalidInput,
    /// The Authorization header is not `Bearer <key>`.
    Malformed,
    /// The bearer token is no root key.
    KeyNotFound,
    /// The root key lacks every permission that would allow the operation.
    InsufficientPermissions,
    /// No live identity with that id or externalId in the caller's workspace.
    IdentityNotFound,
    /// A live identity in the workspace already has this externalId.
    IdentityAlreadyExists,
    /// No live key with that id in the caller's workspace.
    ApiKeyNotFound,
    /// No live API with that id in the caller's workspace (or, on key routes, one the key may not use).
    ApiNotFound,
    /// keys.verifyKey named a ratelimit that neither the key nor its identity has.
    PreconditionFailed,
    /// An Idempotency-Key was reused for a different operation or body.
    IdempotencyKeyReused,
    /// A request with this Idempotency-Key is still running.
    IdempotencyRequestInProgress,
    /// The request took longer than the configured timeout.
    RequestTimeout,
    /// The body is larger than the configured limit.
    RequestBodyTooLarge,
    /// No route at this path.
    RouteNotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// More requests are in flight than the server is configured to run; retry after `Retry-After`.
    Overloaded,
    /// The database could not be reached in time; retrying later can succeed.
    ServiceUnavailable,
    /// A bug or an unexpected failure; details are in the server log under the request id.
    UnexpectedError,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidInput | Self::Malformed => StatusCode::BAD_REQUEST,
            Self::KeyNotFound => StatusCode::UNAUTHORIZED,
            Self::InsufficientPermissions => StatusCode::FORBIDDEN,
            Self::IdentityNotFound | Self::ApiNotFound | Self::ApiKeyNotFound | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::IdentityAlreadyExists | Self::IdempotencyRequestInProgress => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::RequestBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnexpectedError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidInput | Self::Malformed => "Bad Request",
            Self::KeyNotFound => "Unauthorized",
            Self::InsufficientPermissions => "Insufficient Permissions",
            Self::IdentityNotFound | Self::ApiNotFound | Self::ApiKeyNotFound | Self::RouteNotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::RequestTimeout => "Request Timeout",
            Self::IdentityAlreadyExists | Self::IdempotencyRequestInProgress => "Conflict",
            Self::IdempotencyKeyReused => "Unprocessable Entity",
            Self::PreconditionFailed => "Precondition Failed",
            Self::RequestBodyTooLarge => "Request Entity Too Large",
            Self::UnexpectedError => "Internal Server Error",
            Self::ServiceUnavailable | Self::Overloaded => "Service Unavailable",
        }
    }

    /// `<system>/<category>/<code>`: Unkey's taxonomy where Unkey has the code, `sigil/…` where it does not.
    pub fn path(self) -> &'static str {
        match self {
            Self::InvalidInput => "unkey/application/invalid_input",
            Self::Malformed => "unkey/authentication/malformed",
            Self::KeyNotFound => "unkey/authentication/key_not_found",
            Self::InsufficientPermissions => "unkey/authorization/insufficient_permissions",
            Self::IdentityNotFound => "unkey/data/identity_not_found",
            Self::ApiNotFound => "unkey/data/api_not_found",
            Self::ApiKeyNotFound => "unkey/data/key_not_found",
            Self::IdentityAlreadyExists => "unkey/data/identity_already_exists",
            Self::IdempotencyKeyReused => "sigil/idempotency/key_reused",
            Self::PreconditionFailed => "unkey/application/precondition_failed",
            Self::IdempotencyRequestInProgress => "sigil/idempotency/request_in_progress",
            Self::RequestTimeout => "user/bad_request/request_timeout",
            Self::RequestBodyTooLarge => "user/bad_request/request_body_too_large",
            Self::RouteNotFound => "sigil/request/route_not_found",
            Self::MethodNotAllowed => "sigil/request/method_not_allowed",
            Self::ServiceUnavailable => "unkey/application/service_unavailable",
            Self::Overloaded => "sigil/capacity/overloaded",
            Self::UnexpectedError => "unkey/application/unexpected_error",
        }
    }

    pub fn type_url(self) -> String {
        let base = ERROR_DOCS_BASE.get().map_or(DEFAULT_ERROR_DOCS_BASE, String::as_str);
        format!("{base}/{}", self.path())
    }

    /// Seconds after which a retry may succeed, for codes whose fix is to retry later (`Retry-After`).
    pub(crate) fn retry_after(self) -> Option<&'static str> {
        matches!(self, Self::Overloaded | Self::IdempotencyRequestInProgress).then_some("1")
    }

    /// Unkey's SDKs reject a 400-family body without an `errors` array.
    fn carries_validation_errors(self) -> bool {
        matches!(self.status(), StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE)
    }
}

/// One reason a request was rejected: where (`location`), what (`message`), and how to fix it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ValidationError {
    pub location: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl ValidationError {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self { location: location.into(), message: message.into(), fix: None }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// An error response in the making. `source` is logged, never rendered: no driver message reaches a client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<ValidationError>,
    /// Extra members of `error` (RFC 9457 extension members) that tell the client how to go on.
    pub extensions: Option<Box<Map<String, Value>>>,
    pub source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), errors: Vec::new(), extensions: None, source: None }
    }

    pub fn invalid_input(detail: impl Into<String>, errors: Vec<ValidationError>) -> Self {
        Self { errors, ..Self::new(ErrorCode::InvalidInput, detail) }
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(ErrorCode::RequestBodyTooLarge, format!("The request body is larger than {limit} bytes.")).with_error(
            ValidationError::new("body", format!("Request bodies may be at most {limit} bytes."))
                .with_fix("Send a smaller body; meta may hold at most 1 MiB of JSON."),
        )
    }

    pub fn body_holds_too_many_values(limit: usize) -> Self {
        Self::new(ErrorCode::RequestBodyTooLarge, format!("The request body holds more than {limit} JSON values."))
            .with_error(
                ValidationError::new("body", format!("Request bodies may hold at most {limit} JSON values."))
                    .with_fix("Send fewer values, e.g. a meta with fewer, larger entries."),
            )
    }

    pub fn idempotency_request_in_progress() -> Self {
        Self::new(
            ErrorCode::IdempotencyRequestInProgress,
            "A request with this Idempotency-Key is still being processed. Retry after the time in Retry-After.",
        )
    }

    pub fn idempotency_key_reused() -> Self {
        Self::new(
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was already used for a different request (another operation or body).",
        )
    }

    pub fn identity_not_found() -> Self {
        Self::new(ErrorCode::IdentityNotFound, "This identity does not exist.")
    }

    pub fn unexpected(source: impl Into<anyhow::Error>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(
                ErrorCode::UnexpectedError,
                "An unexpected error occurred; the server log has the details under this request id.",
            )
        }
    }

    pub fn with_extension(mut self, name: &str, value: Value) -> Self {
        self.extensions.get_or_insert_default().insert(name.to_owned(), value);
        self
    }

    pub fn with_error(mut self, error: ValidationError) -> Self {
        self.errors.push(error);
        self
    }
}

/// A broken domain rule is a 400 whose detail is the rule's message.
impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::invalid_input(error.message.clone(), vec![error])
    }
}

impl ApiError {
    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            meta: ResponseMeta { request_id: current_request_id() },
            error: ErrorDetails {
                detail: &self.detail,
                status: self.code.status().as_u16(),
                title: self.code.title(),
                type_url: self.code.type_url(),
                errors: self.code.carries_validation_errors().then_some(self.errors.as_slice()),
                extensions: self.extensions.as_deref(),
            },
        }
    }

    /// The body as JSON text, the bytes [`IntoResponse`] sends.
    pub fn body_json(&self) -> String {
        serde_json::to_string(&self.body()).expect("error bodies always serialize")
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::TimedOut | StoreError::Transient(_) | StoreError::Contended(_) => {
                Self {
                    source: Some(error.into()),
                    ..Self::new(
                        ErrorCode::ServiceUnavailable,
                        "The database did not answer in time; a write may have been stored all the same. Retry \
                         shortly, a write with the same Idempotency-Key.",
                    )
                }
            }
            StoreError::StorageFull(_) => Self {
                source: Some(error.into()),
                ..Self::new(
                    ErrorCode::ServiceUnavailable,
                    "The database has no room for this write; nothing was stored. Retry later.",
                )
            },
            StoreError::IdempotencyKeyBusy => Self::idempotency_request_in_progress(),
            // A capacity, not a failure: logged once as it fills (`MemoryCounters`), not with every refusal.
            StoreError::CountersFull => Self::new(
                ErrorCode::Overloaded,
                "This server counts as many ratelimit windows as it may, and this verification needs a new one; \
                 nothing was counted. Retry once windows have ended.",
            ),
            other => Self::unexpected(other),
        }
    }
}

/// Put in the extensions of a response that failed because the database did, naming what failed
/// ([`StoreError::failure_kind`]), for metrics.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseFailure(pub &'static str);

#[derive(Serialize)]
struct ErrorBody<'a> {
    meta: ResponseMeta,
    error: ErrorDetails<'a>,
}

#[derive(Serialize)]
struct ErrorDetails<'a> {
    detail: &'a str,
    status: u16,
    title: &'static str,
    #[serde(rename = "type")]
    type_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [ValidationError]>,
    #[serde(flatten)]
    extensions: Option<&'a Map<String, Value>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        if let Some(source) = &self.source {
            tracing::error!(code = self.code.path(), error = format!("{source:#}"), "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        if let Some(seconds) = self.code.retry_after() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(seconds));
        }
        response.extensions_mut().insert(self.code);
        let store_error = self.source.as_ref().and_then(|source| source.downcast_ref::<StoreError>());
        if let Some(kind) = store_error.and_then(StoreError::failure_kind) {
            response.extensions_mut().insert(DatabaseFailure(kind));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_matches_the_documented_wire_values() {
        let code = ErrorCode::IdentityAlreadyExists;
        assert_eq!(code.status(), StatusCode::CONFLICT);
        assert_eq!(code.title(), "Conflict");
        assert_eq!(
            code.type_url(),
            "https://unkey.com/docs/api-reference/errors-v2/unkey/data/identity_already_exists"
        );
    }

    #[test]
    fn only_the_400_family_carries_an_errors_array() {
        assert!(ErrorCode::InvalidInput.carries_validation_errors());
        assert!(ErrorCode::RequestBodyTooLarge.carries_validation_errors());
        assert!(!ErrorCode::IdentityAlreadyExists.carries_validation_errors());
        assert!(!ErrorCode::UnexpectedError.carries_validation_errors());
    }
}
