//! v1's error envelope, `{"error":{"code","docs","message","requestId"}}`, and its success bodies, which are
//! bare JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::idempotency::StoredResponse;
use crate::domain::permission::MissingPermission;
use crate::envelope::current_request_id;
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::WriteAnswer;

/// A v1 error: its code names its status, as Unkey's `codeToStatus` did.
#[derive(Debug)]
pub struct V1Error {
    code: &'static str,
    status: StatusCode,
    message: String,
    /// The v2 code it stands for, for metrics (a conflict counts as one, whichever API answered it).
    counted_as: Option<ErrorCode>,
}

impl V1Error {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into(), counted_as: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { counted_as: Some(ErrorCode::InvalidInput), ..Self::new("BAD_REQUEST", StatusCode::BAD_REQUEST, message) }
    }

    /// A missing or unknown key: 403, never 401, as Unkey's v1 answered.
    pub fn unauthorized(message: &str) -> Self {
        Self { counted_as: Some(ErrorCode::KeyNotFound), ..Self::new("UNAUTHORIZED", StatusCode::FORBIDDEN, message) }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { counted_as: Some(ErrorCode::IdentityNotFound), ..Self::new("NOT_FOUND", StatusCode::NOT_FOUND, message) }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new("CONFLICT", StatusCode::CONFLICT, message)
    }

    pub fn identity_already_exists(external_id: &str) -> Self {
        Self {
            counted_as: Some(ErrorCode::IdentityAlreadyExists),
            ..Self::conflict(format!("Identity with externalId \"{external_id}\" already exists in this workspace"))
        }
    }

    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetails {
                code: self.code,
                docs: format!("https://unkey.dev/docs/api-reference/errors/code/{}", self.code),
                message: &self.message,
                request_id: current_request_id(),
            },
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetails<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorDetails<'a> {
    code: &'static str,
    docs: String,
    message: &'a str,
    request_id: String,
}

/// Marks a response already in v1's envelope, so that [`super::in_v1_shape`] leaves it as it is.
#[derive(Debug, Clone, Copy)]
pub struct InV1Shape;

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        response.extensions_mut().insert(InV1Shape);
        if let Some(code) = self.counted_as {
            if let Some(seconds) = code.retry_after() {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
            }
            response.extensions_mut().insert(code);
        }
        response
    }
}

/// The v1 list of permissions a key lacks, as Unkey's RBAC printed it: each JSON-quoted, then single-quoted.
impl From<MissingPermission> for V1Error {
    fn from(missing: MissingPermission) -> Self {
        let any_of: Vec<String> = missing.any_of.iter().map(|permission| format!("'\"{permission}\"'")).collect();
        Self {
            counted_as: Some(ErrorCode::InsufficientPermissions),
            ..Self::new(
                "INSUFFICIENT_PERMISSIONS",
                StatusCode::FORBIDDEN,
                format!("Missing one of these permissions: [{}]", any_of.join(", ")),
            )
        }
    }
}

/// Sigil's own failures (a database out of reach, a busy or reused Idempotency-Key) in v1's envelope, with
/// the v1 code of their status (Unkey's `statusToCode`); the status itself is kept, so that a v1 client
/// retries a 503 as it retries any 5xx.
impl From<ApiError> for V1Error {
    fn from(error: ApiError) -> Self {
        let status = error.code.status();
        let code = match error.code {
            ErrorCode::InvalidInput | ErrorCode::Malformed | ErrorCode::RequestBodyTooLarge => "BAD_REQUEST",
            ErrorCode::KeyNotFound => "UNAUTHORIZED",
            ErrorCode::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            ErrorCode::IdentityNotFound
            | ErrorCode::ApiNotFound
            | ErrorCode::ApiKeyNotFound
            | ErrorCode::RouteNotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::IdentityAlreadyExists
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::IdempotencyRequestInProgress => "CONFLICT",
            ErrorCode::RequestTimeout
            | ErrorCode::Overloaded
            | ErrorCode::ServiceUnavailable
            | ErrorCode::UnexpectedError => "INTERNAL_SERVER_ERROR",
        };
        if let Some(source) = &error.source {
            tracing::error!(code = error.code.path(), error = format!("{source:#}"), "request failed");
        }
        Self { code, status, message: error.detail, counted_as: Some(error.code) }
    }
}

/// A v1 success: the bare JSON body.
pub struct V1Json<T>(pub T);

impl<T: Serialize> IntoResponse for V1Json<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

impl<T: Serialize> WriteAnswer for Result<V1Json<T>, V1Error> {
    fn stored(&self) -> StoredResponse {
        let body = match self {
            Ok(V1Json(body)) => serde_json::to_string(body),
            Err(error) => serde_json::to_string(&error.body()),
        };
        let status = self.as_ref().map_or_else(|error| error.status, |_| StatusCode::OK);
        StoredResponse { status: status.as_u16(), body: body.expect("response bodies always serialize") }
    }

    fn failure(error: ApiError) -> Response {
        V1Error::from(error).into_response()
    }
}
