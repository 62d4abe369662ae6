//! What wraps every request: its id and log line, the panic guard, the timeout, and the fallbacks for
//! unknown routes and methods, all answering in the error envelope.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::ids::new_id;
use crate::domain::permission::RootKey;
use crate::envelope::{REQUEST, RequestTag};
use crate::error::{ApiError, DatabaseFailure, ErrorCode, ValidationError};
use crate::idempotency::REPLAYED_HEADER;
use crate::{AppState, InFlight, Limits};

/// A `HeaderName` made once: from a `&str`, a header name is parsed again on every use.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE_HEADER: HeaderName = HeaderName::from_static("keep-alive");

tokio::task_local! {
    /// What the handler learned that the request's log line and metrics name.
    static CALLER: std::cell::RefCell<Caller>;
}

/// Who called, and what a create collided with, once the handler knows.
#[derive(Default)]
struct Caller {
    workspace: Option<String>,
    root_key_id: Option<String>,
    conflict: Option<Conflict>,
}

struct Conflict {
    field: &'static str,
    value: String,
    existing_identity_id: String,
}

/// What every request goes through, outermost first: its id, log line and metrics; its answer in its API's
/// shape (`routes::in_each_apis_own_shape`); its whole body read; load shedding; the timeout. One layer, not
/// five: axum's `from_fn` clones and boxes the rest of the stack for each layer on each request, 10% of a
/// cached read's instructions as five layers.
pub async fn around_each_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (limits, in_flight, body_memory) = (state.limits, state.in_flight.clone(), state.body_memory.clone());
    request_context(&state, request, |request| {
        crate::routes::in_each_apis_own_shape(request, move |request| {
            read_body_first(limits, body_memory, request, move |request| {
                shed_load(in_flight, request, move |request| enforce_timeout(limits.request_timeout, next.run(request)))
            })
        })
    })
    .await
}

/// Gives the request an id (in every body's `meta.requestId`, the `X-Request-Id` header and the log line),
/// writes its log line, and records its metrics. What the handler learns (the caller, a conflict) goes on
/// the one line it ends with; other lines logged while it runs name it through the task-local
/// [`REQUEST`] (`log_fields::InRequest`).
async fn request_context<Then, Answer>(state: &AppState, request: Request, then: Then) -> Response
where
    Then: FnOnce(Request) -> Answer,
    Answer: Future<Output = Response>,
{
    let request_id = new_id("req");
    let operation = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let handled = async {
        let tag = RequestTag { id: request_id.clone(), method: method.clone(), path: path.clone() };
        let response = REQUEST.scope(tag, then(request)).await;
        (response, CALLER.with(|caller| caller.take()))
    };
    let (mut response, caller) = CALLER.scope(std::cell::RefCell::new(Caller::default()), handled).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(&REQUEST_ID_HEADER, value);
    }
    response.headers_mut().insert(&KEEP_ALIVE_HEADER, state.keep_alive.clone());
    let code = response.extensions().get::<ErrorCode>().copied();
    let replayed = response.headers().contains_key(&REPLAYED_HEADER);
    let database_failure = response.extensions().get::<DatabaseFailure>().map(|failure| failure.0);
    state.metrics.observe(
        &operation,
        caller.workspace.as_deref(),
        response.status().as_u16(),
        code,
        database_failure,
        replayed,
        started.elapsed(),
    );
    let error = code.map(ErrorCode::path);
    let conflict = caller.conflict.as_ref();
    crate::request_log::log(&crate::request_log::Handled {
        request_id: &request_id,
        method: method.as_str(),
        path: &path,
        status: response.status().as_u16(),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        error,
        workspace: caller.workspace.as_deref(),
        root_key_id: caller.root_key_id.as_deref(),
        conflicting_field: conflict.map(|conflict| conflict.field),
        conflicting_value: conflict.map(|conflict| conflict.value.as_str()),
        existing_identity_id: conflict.map(|conflict| conflict.existing_identity_id.as_str()),
    });
    response
}

/// Names, on the request's log line, the workspace and the root key (by its id, never the key or its hash)
/// that the request authenticated as; the workspace also labels its conflict metrics.
pub fn log_caller(root_key: &RootKey) {
    // Outside a request (none in the server) there is nothing to name.
    let _ = CALLER.try_with(|caller| {
        let mut caller = caller.borrow_mut();
        caller.workspace = Some(root_key.workspace.as_str().to_owned());
        caller.root_key_id = Some(root_key.id.clone());
    });
}

/// Names, on the request's log line, what a create collided with: the field, its value and the identity that
/// holds it.
pub fn log_conflict(field: &'static str, value: &str, existing_identity_id: &str) {
    let conflict = Conflict { field, value: value.to_owned(), existing_identity_id: existing_identity_id.to_owned() };
    let _ = CALLER.try_with(|caller| caller.borrow_mut().conflict = Some(conflict));
}

/// Routes that never wait on the database, so that the orchestrator asking whether the process lives and
/// Prometheus scraping it still get their answers when a silent database has filled every slot: shed, a
/// liveness probe would have a healthy process restarted, and monitoring would go blind during the incident.
const NEVER_SHED: [&str; 3] = ["/", "/v2/liveness", "/metrics"];

/// Refuses a request at once, with 503 and `Retry-After`, when `in_flight` has no permit left: under a flood
/// the server answers fast and stays up instead of queueing work it cannot finish in time.
async fn shed_load<Then, Answer>(in_flight: InFlight, request: Request, then: Then) -> Response
where
    Then: FnOnce(Request) -> Answer,
    Answer: Future<Output = Response>,
{
    if NEVER_SHED.contains(&request.uri().path()) {
        return then(request).await;
    }
    let Ok(_permit) = in_flight.permits.try_acquire() else {
        return ApiError::new(ErrorCode::Overloaded, "The server is at capacity. Retry after the time in Retry-After.")
            .into_response();
    };
    then(request).await
}

/// Reads the whole body, within `body_read_timeout` and `max_body_bytes`, before the request is worked on:
/// a client trickling its body then holds a connection, not one of the `max_in_flight` slots, and the
/// request timeout counts only the work. The body's memory is counted against `body_memory` until the
/// request is answered.
async fn read_body_first<Then, Answer>(
    limits: Limits,
    body_memory: Arc<Semaphore>,
    request: Request,
    then: Then,
) -> Response
where
    Then: FnOnce(Request) -> Answer,
    Answer: Future<Output = Response>,
{
    let (parts, body) = request.into_parts();
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|length| length.to_str().ok()?.parse::<usize>().ok());
    let read = read_body(body, declared, limits.max_body_bytes, body_memory);
    match tokio::time::timeout(limits.body_read_timeout, read).await {
        Ok(Ok(BodyRead::Whole(body, _counted))) => then(Request::from_parts(parts, Body::from(body))).await,
        Ok(Ok(BodyRead::TooLarge)) => ApiError::body_too_large(limits.max_body_bytes).into_response(),
        Ok(Ok(BodyRead::NoMemoryLeft)) => ApiError::new(
            ErrorCode::Overloaded,
            "The server holds as many request bodies as it may. Retry after the time in Retry-After.",
        )
        .into_response(),
        Ok(Err(_broken)) => ApiError::invalid_input(
            "The request body could not be read.",
            vec![ValidationError::new("body", "The connection broke while the body was being sent.")],
        )
        .into_response(),
        Err(_elapsed) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("The request body did not arrive within {} ms.", limits.body_read_timeout.as_millis()),
        )
        .with_error(ValidationError::new("body", "Timed out").with_fix("Send the body without pausing."))
        .into_response(),
    }
}

/// A body past the limit is still read, and thrown away, up to this many times the limit: answered while it
/// is still sending, a client would see its connection reset instead of the 413.
const DRAINED_PAST_THE_LIMIT: usize = 4;

/// The most a body's buffer holds before its bytes arrive.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

enum BodyRead {
    /// The body, and its memory counted against the budget until dropped.
    Whole(Bytes, Option<OwnedSemaphorePermit>),
    /// Larger than the limit.
    TooLarge,
    /// Every byte the budget allows is held by other requests' bodies: without it, bodies held at once were
    /// bounded only by the connections (4,096 × 4 MiB).
    NoMemoryLeft,
}

/// The body, read whole unless it is larger than `limit` or `body_memory` has no room for it. Its declared
/// length, when it has one, sizes the buffer (up to [`INITIAL_BODY_CAPACITY`]), and a body declared larger
/// than the limit is not kept at all. The buffer never grows past `limit`, and each growth is counted
/// before it is made.
async fn read_body(
    mut body: Body,
    declared: Option<usize>,
    limit: usize,
    body_memory: Arc<Semaphore>,
) -> Result<BodyRead, axum::Error> {
    use http_body_util::BodyExt;
    let keeps = declared.is_none_or(|declared| declared <= limit);
    let mut counted = None;
    let initial = declared.filter(|_| keeps).unwrap_or(0).min(INITIAL_BODY_CAPACITY);
    let mut no_memory_left = !count(&mut counted, &body_memory, initial);
    // Sized by the declared length only up to a point: a header alone must not reserve megabytes.
    let mut kept: Vec<u8> = Vec::with_capacity(if no_memory_left { 0 } else { initial });
    let mut seen = 0_usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if keeps && !no_memory_left && seen <= limit {
            if kept.capacity() - kept.len() < data.len() {
                let wanted = kept.capacity().saturating_mul(2).max(seen).min(limit);
                if count(&mut counted, &body_memory, wanted) {
                    kept.reserve_exact(wanted - kept.len());
                } else {
                    // Refused, the rest is still read and thrown away, as a body past the limit is.
                    no_memory_left = true;
                    kept = Vec::new();
                    counted = None;
                    continue;
                }
            }
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAINED_PAST_THE_LIMIT) {
            break;
        }
    }
    Ok(if no_memory_left {
        BodyRead::NoMemoryLeft
    } else if seen <= limit {
        BodyRead::Whole(Bytes::from(kept), counted)
    } else {
        BodyRead::TooLarge
    })
}

/// Makes `counted` hold at least `bytes` of `body_memory`, in KiB; false when the budget has no room.
fn count(counted: &mut Option<OwnedSemaphorePermit>, body_memory: &Arc<Semaphore>, bytes: usize) -> bool {
    let needed = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    let held = counted.as_ref().map_or(0, |permit| u32::try_from(permit.num_permits()).unwrap_or(u32::MAX));
    if needed <= held {
        return true;
    }
    let Ok(more) = Arc::clone(body_memory).try_acquire_many_owned(needed - held) else { return false };
    match counted {
        Some(counted) => counted.merge(more),
        None => *counted = Some(more),
    }
    true
}

/// A 408's fix: a write that had started runs to its end after the answer, so only a retry with the same
/// Idempotency-Key is sure not to run it twice.
pub const RETRY_AFTER_A_TIMEOUT: &str =
    "Retry the request; a write may still complete after this answer, so retry a write with the same Idempotency-Key.";

async fn enforce_timeout(limit: Duration, answer: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("The request did not complete within {} ms.", limit.as_millis()),
        )
        .with_error(ValidationError::new("request", "Timed out").with_fix(RETRY_AFTER_A_TIMEOUT))
        .into_response(),
    }
}

/// Used by `CatchPanicLayer`: a panicking handler answers 500 in the envelope and the server keeps serving.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned());
    ApiError::unexpected(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

pub async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, format!("There is no route {method} {}.", uri.path()))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("{} does not accept {method}; the API uses POST.", uri.path()))
}
