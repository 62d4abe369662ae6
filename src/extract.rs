//! Extractors whose every failure is an [`ApiError`], so no response is ever axum's plain-text default.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::AppState;
use crate::domain::permission::{MissingPermission, RootKey};
use crate::domain::root_key;
use crate::error::{ApiError, ErrorCode, ValidationError};
use crate::idempotency::IdempotencyKey;
use crate::{json_shape, openapi};

/// A JSON body that parsed and passed its route's schema in `openapi.json`, deserialized into `T`.
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let path = request.uri().path().to_owned();
        require_json_content_type(request.headers())?;
        let body = read_body(request, state).await?;
        parse_valid_json(&path, &body).map(ValidJson)
    }
}

/// A write's JSON body, as [`ValidJson`] reads it, and its `Idempotency-Key`, if it sent one.
pub struct ValidWrite<T> {
    pub body: T,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl<T: DeserializeOwned> FromRequest<AppState> for ValidWrite<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let path = request.uri().path().to_owned();
        require_json_content_type(request.headers())?;
        let headers = request.headers().clone();
        let bytes = read_body(request, state).await?;
        let body = parse_valid_json(&path, &bytes)?;
        Ok(Self { body, idempotency_key: IdempotencyKey::of_request(&headers, &path, &bytes)? })
    }
}

async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(state.limits.max_body_bytes)
        } else {
            ApiError::invalid_input(
                "The request body could not be read.",
                vec![ValidationError::new("body", rejection.body_text())],
            )
        }
    })
}

/// `body` parsed, checked against the schema of the route at `path`, and deserialized.
fn parse_valid_json<T: DeserializeOwned>(path: &str, body: &Bytes) -> Result<T, ApiError> {
    // Counted before it is built: a tree costs many times its bytes (`json_shape.rs`).
    let not_json = |error: serde_json::Error| {
        ApiError::invalid_input(
            "The request body is invalid. The request body was not valid JSON.",
            vec![ValidationError::new("body", error.to_string()).with_fix("Send a JSON object encoded as UTF-8.")],
        )
    };
    if json_shape::may_hold_too_many_values(body) {
        match json_shape::check(body, json_shape::MAX_VALUES) {
            Ok(()) => {}
            Err(json_shape::Refusal::NotJson(error)) => return Err(not_json(error)),
            Err(json_shape::Refusal::TooManyValues) => {
                return Err(ApiError::body_holds_too_many_values(json_shape::MAX_VALUES));
            }
        }
    }
    let value: Value = serde_json::from_slice(body).map_err(not_json)?;
    openapi::validate_request_body(path, &value)?;
    // The schema admits a few values serde cannot hold, such as 1.0 for an integer.
    serde_json::from_value(value).map_err(|error| {
        ApiError::invalid_input(
            format!("POST request body for '{path}' failed to validate schema"),
            vec![ValidationError::new("body", error.to_string())],
        )
    })
}

fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::invalid_input(
        format!("POST operation request content type '{media_type}' does not exist"),
        vec![
            ValidationError::new("header.Content-Type", "The request body must be JSON.")
                .with_fix("Send the header 'Content-Type: application/json'."),
        ],
    ))
}

/// The raw `Authorization` header. Authentication happens in the handler, after the body was validated,
/// because Unkey answers a bad body with 400 before it looks at the key.
pub struct RootKeyHeader(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for RootKeyHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

impl RootKeyHeader {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self(headers.get(header::AUTHORIZATION).cloned())
    }

    /// The hash of the bearer token, if the header holds one.
    pub fn key_hash(&self) -> Option<String> {
        bearer_token(self.0.as_ref()?).map(root_key::hash)
    }

    /// 400 when the header is missing or not `Bearer <key>`, 401 when no root key has that value.
    pub async fn authenticate(&self, state: &AppState) -> Result<RootKey, ApiError> {
        let Some(header) = &self.0 else {
            return Err(ApiError::invalid_input(
                "Authorization header for 'bearer' scheme",
                vec![
                    ValidationError::new("security", "Authorization header was not found")
                        .with_fix("Add an 'Authorization' header to this request"),
                ],
            ));
        };
        let token = bearer_token(header).ok_or_else(malformed_authorization)?;
        let root_key = state.store.find_root_key(&root_key::hash(token)).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::KeyNotFound,
                "The provided root key is invalid. We could not find the requested key.",
            )
        })?;
        crate::middleware::log_caller(&root_key);
        Ok(root_key)
    }
}

fn bearer_token(header: &HeaderValue) -> Option<&str> {
    header
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

fn malformed_authorization() -> ApiError {
    ApiError::new(
        ErrorCode::Malformed,
        "You must provide a valid root key in the Authorization header in the format 'Bearer ROOT_KEY'.",
    )
    .with_error(
        ValidationError::new("header.Authorization", "The Authorization header is not 'Bearer <root key>'.")
            .with_fix("Send 'Authorization: Bearer <root key>'."),
    )
}

impl From<MissingPermission> for ApiError {
    fn from(missing: MissingPermission) -> Self {
        ApiError::new(
            ErrorCode::InsufficientPermissions,
            format!("Missing one of these permissions: {}", missing.any_of.join(" or ")),
        )
    }
}
