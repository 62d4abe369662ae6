//! Sigil: a self-hosted identity service speaking Unkey's v2 HTTP API.

pub mod backup;
pub mod config;
pub mod domain;
pub mod envelope;
pub mod error;
pub mod error_docs;
pub mod extract;
pub mod healthcheck;
pub mod http_server;
pub mod idempotency;
pub mod identities_export;
pub mod identities_import;
pub mod json_shape;
pub mod log_fields;
pub mod log_writer;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod request_log;
pub mod routes;
pub mod sealed_secrets;
pub mod server;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

use crate::idempotency::{IdempotencySettings, KeyTurns};
use crate::metrics::Metrics;
use crate::store::{CreditSpends, Ratelimits, Store, credit_spends};

/// What every handler can reach. Cloned by every layer and extractor of every request, so one shared
/// allocation: its clone and drop were 2.4% of a cached getIdentity's profile as a struct of nine fields.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Arc<dyn Store>,
    /// Where verifyKey counts: the store, or Redis (`--ratelimit-counters`).
    pub ratelimits: Arc<dyn Ratelimits>,
    pub limits: Limits,
    pub idempotency: IdempotencySettings,
    pub idempotency_turns: Arc<KeyTurns>,
    /// verifyKey's spends of one key's credits, combined into one write.
    pub credit_spends: Arc<CreditSpends>,
    pub metrics: Arc<Metrics>,
    pub in_flight: InFlight,
    /// What request bodies may hold in memory, in KiB ([`Limits::max_body_memory_bytes`]).
    pub body_memory: Arc<Semaphore>,
    /// `Keep-Alive: timeout=…`, on every response. An idle connection is closed when the read timeout passes
    /// (`http_server.rs`); telling clients a second less lets a pooling client (undici, Node's fetch) retire
    /// it first instead of racing the close.
    pub keep_alive: HeaderValue,
}

/// The requests being worked on (their bodies read, their answers not yet made), at most
/// `Limits::max_in_flight`.
#[derive(Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max)), max }
    }

    pub fn is_idle(&self) -> bool {
        self.permits.available_permits() == self.max
    }
}

impl AppState {
    /// Ratelimits are counted in the store unless `ratelimits` names another place (`--ratelimit-counters`).
    pub fn new(
        store: Arc<dyn Store>,
        limits: Limits,
        idempotency: IdempotencySettings,
        ratelimits: Option<Arc<dyn Ratelimits>>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(Arc::clone(&store)));
        let idle = limits.body_read_timeout.as_secs().saturating_sub(1).max(1);
        let keep_alive = HeaderValue::from_str(&format!("timeout={idle}")).expect("digits are a header value");
        Self(Arc::new(Shared {
            ratelimits: ratelimits.unwrap_or_else(|| store.clone()),
            credit_spends: credit_spends(Arc::clone(&store)),
            store,
            limits,
            idempotency,
            idempotency_turns: Arc::default(),
            metrics,
            in_flight: InFlight::new(limits.max_in_flight),
            body_memory: Arc::new(Semaphore::new(limits.max_body_memory_bytes / 1024)),
            keep_alive,
        }))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// How long a client may take to send a request's body (its head: `http_server::ConnectionLimits`).
    pub body_read_timeout: Duration,
    /// Identities one list search looks at, at most.
    pub search_scan_rows: usize,
    /// Requests running at once; more are refused with 503 at once instead of queueing.
    pub max_in_flight: usize,
    /// Bytes of request bodies held in memory at once, all requests together; a body that would pass it is
    /// refused with 503.
    pub max_body_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            max_body_memory_bytes: 256 * 1024 * 1024,
            search_scan_rows: 10_000,
        }
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    with_layers(routes::router(), state)
}

/// Wraps `router` in what every route gets, outermost first (`middleware::around_each_request`): request id,
/// log line and metrics; every answer put in its API's shape (`routes::in_each_apis_own_shape`: v1's
/// envelope on v1 routes, the declared media type of v2 errors); reading the whole body (before the request
/// counts as in flight, so a slow upload holds no slot); load shedding; timeout; then the panic guard around
/// the handler, and the body limit. Unknown paths and methods answer in the error envelope. (Idempotency-Key
/// is the write handlers' own: `idempotency.rs`.)
pub fn with_layers(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(middleware::route_not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::around_each_request))
        .with_state(state)
}
