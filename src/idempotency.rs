//! The `Idempotency-Key` layer for write operations (draft-ietf-httpapi-idempotency-key-header, with
//! Stripe-style replay). Handlers know nothing of it.
//!
//! The first request with a key claims it in the database, scoped to its workspace, runs, and its response
//! is stored when the operation ran (see [`is_replayable`]). A retry with the same key and the same
//! operation and body gets that response byte for byte with `Idempotent-Replayed: true`, and writes
//! nothing. A retry that arrives while the first still runs waits for it up to a bound, then gets 409
//! `request_in_progress` with `Retry-After`. The same key with another operation or body is 422
//! `key_reused`. Records live in the database, so they hold across restarts and nodes.

use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::domain::idempotency::{StoredResponse, fingerprint, is_replayable, is_valid_key};
use crate::domain::permission::Needed;
use crate::domain::workspace::WorkspaceId;
use crate::error::{ApiError, ErrorCode, ValidationError};
use crate::extract::RootKeyHeader;
use crate::routes::idempotent_write;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// How often a retry looks again at a key whose first request is still running.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// A claim outlives the request timeout by this much, so only a crashed node's claim can expire unanswered.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct IdempotencySettings {
    /// How long an answered request is replayed.
    pub retention: Duration,
    /// How long a retry waits for a still-running first request before answering 409.
    pub in_flight_wait: Duration,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self { retention: Duration::from_secs(24 * 60 * 60), in_flight_wait: Duration::from_secs(5) }
    }
}

enum Claim {
    Held,
    Replay(StoredResponse),
}

pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(header) = request.headers().get(IDEMPOTENCY_KEY_HEADER) else {
        return next.run(request).await;
    };
    let Some(needs) = idempotent_write(request.uri().path()) else {
        return next.run(request).await;
    };
    let Some(key) = header.to_str().ok().filter(|key| is_valid_key(key)).map(str::to_owned) else {
        return invalid_key().into_response();
    };
    // Keys are scoped to the workspace and the root key. Without a valid root key, or with one that may not
    // run the operation, the handler answers exactly as it would without the header (400, 401 or 403), so
    // nothing is claimed and nothing is replayed.
    let auth = RootKeyHeader::from_headers(request.headers());
    let root_key = match auth.authenticate(&state).await {
        Ok(root_key) => root_key,
        Err(unavailable) if unavailable.code.status().is_server_error() => return unavailable.into_response(),
        Err(_refused) => return next.run(request).await,
    };
    if !needs.iter().all(|action| root_key.may(Needed::identity(*action, None))) {
        return next.run(request).await;
    }
    let Some(key_hash) = auth.key_hash() else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, state.limits.max_body_bytes).await else {
        return ApiError::body_too_large(state.limits.max_body_bytes).into_response();
    };
    let fingerprint = fingerprint(&key_hash, parts.uri.path(), &body);
    match claim(&state, &root_key.workspace, &key, &fingerprint).await {
        Ok(Claim::Held) => {}
        Ok(Claim::Replay(stored)) => return replay(stored),
        Err(refusal) => return refusal,
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    settle(&state, &root_key.workspace, &key, response).await
}

/// Claims the key, or waits (bounded) for the request that holds it and returns what to replay.
async fn claim(state: &AppState, workspace: &WorkspaceId, key: &str, fingerprint: &str) -> Result<Claim, Response> {
    let lease_until = unix_ms_after(state.limits.request_timeout + LEASE_MARGIN);
    let store = &*state.store;
    let give_up_at = Instant::now() + state.idempotency.in_flight_wait;
    let mut holder =
        store.claim_idempotency_key(workspace, key, fingerprint, lease_until).await.map_err(into_response)?;
    loop {
        let Some(record) = holder else {
            return Ok(Claim::Held);
        };
        if record.fingerprint != fingerprint {
            return Err(key_reused().into_response());
        }
        if let Some(response) = record.response {
            return Ok(Claim::Replay(response));
        }
        if Instant::now() >= give_up_at {
            return Err(([(header::RETRY_AFTER, "1")], in_progress()).into_response());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        holder = match store.find_idempotency_key(workspace, key).await.map_err(into_response)? {
            Some(record) => Some(record),
            // Released (its request failed) or expired: this request may run under the key now.
            None => {
                store.claim_idempotency_key(workspace, key, fingerprint, lease_until).await.map_err(into_response)?
            }
        };
    }
}

/// Stores a replayable response or releases the key, then hands the response on unchanged.
async fn settle(state: &AppState, workspace: &WorkspaceId, key: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let store = &*state.store;
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        let _ = store.release_idempotency_key(workspace, key).await;
        return ApiError::unexpected(anyhow::anyhow!("could not buffer the response body")).into_response();
    };
    let status = parts.status.as_u16();
    let outcome = match String::from_utf8(body.to_vec()) {
        Ok(text) if is_replayable(status) => {
            let stored = StoredResponse { status, body: text };
            store.complete_idempotency_key(workspace, key, &stored, unix_ms_after(state.idempotency.retention)).await
        }
        _ => store.release_idempotency_key(workspace, key).await,
    };
    if let Err(error) = outcome {
        // The client still gets its answer; the key stays claimed until its lease expires.
        tracing::error!(error = %error, "could not record the idempotent outcome");
    }
    Response::from_parts(parts, Body::from(body))
}

fn replay(stored: StoredResponse) -> Response {
    let status = axum::http::StatusCode::from_u16(stored.status).unwrap_or(axum::http::StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

fn unix_ms_after(duration: Duration) -> i64 {
    let at = std::time::SystemTime::now() + duration;
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn into_response(error: crate::store::StoreError) -> Response {
    ApiError::from(error).into_response()
}

fn invalid_key() -> ApiError {
    ApiError::invalid_input(
        "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
        vec![
            ValidationError::new("header.Idempotency-Key", "invalid idempotency key")
                .with_fix("Send a unique string such as a UUID, at most 255 characters."),
        ],
    )
}

fn key_reused() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyReused,
        "This Idempotency-Key was already used for a different request (another operation or body).",
    )
}

fn in_progress() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyRequestInProgress,
        "A request with this Idempotency-Key is still being processed. Retry after the time in Retry-After.",
    )
}
