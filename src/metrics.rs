//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text). Everything is recorded in one place,
//! the request-context middleware, from what the response says about itself (status, error code,
//! `Idempotent-Replayed`), so handlers carry no metrics code. The registry belongs to the app instance,
//! not the process, so two servers in one process (as in the tests) count separately.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::error::ErrorCode;
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

/// Workspaces are created by the operator (`sigil root-key create`), so their number, and this label's, is
/// the operator's to bound.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConflictLabels {
    r#type: String,
    operation: String,
    workspace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseFailureLabels {
    kind: &'static str,
}

type LatencyFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    conflicts: Family<ConflictLabels, Counter>,
    database_failures: Family<DatabaseFailureLabels, Counter>,
    idempotent_replays: Counter,
    shed: Counter,
}

/// 0.25 ms to about 4 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Metrics {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("sigil_http_requests", "HTTP requests by operation and status", requests.clone());
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register("sigil_http_request_duration_seconds", "Time to answer, by operation", latency.clone());
        let conflicts = Family::<ConflictLabels, Counter>::default();
        registry.register(
            "sigil_conflicts",
            "409 and 422 answers by error type (identity_already_exists, request_in_progress, key_reused)",
            conflicts.clone(),
        );
        let database_failures = Family::<DatabaseFailureLabels, Counter>::default();
        registry.register(
            "sigil_database_errors",
            "Requests that failed because the database did, by kind (timeout, unavailable, storage_full, \
             transient, invalid_data, other)",
            database_failures.clone(),
        );
        let idempotent_replays = Counter::default();
        registry.register(
            "sigil_idempotent_replays",
            "Responses replayed for a retried Idempotency-Key",
            idempotent_replays.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "sigil_requests_shed",
            "Requests refused at once with 503 because --max-in-flight requests were running",
            shed.clone(),
        );
        registry.register_collector(Box::new(StoreCollector { store }));
        Self { registry, requests, latency, conflicts, database_failures, idempotent_replays, shed }
    }

    /// `operation` is the matched route (`/v2/identities.createIdentity`), so labels stay bounded; `workspace`
    /// the one the request authenticated into, if it did.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        operation: &str,
        workspace: Option<&str>,
        status: u16,
        error: Option<ErrorCode>,
        database_failure: Option<&'static str>,
        replayed: bool,
        elapsed: Duration,
    ) {
        self.requests.get_or_create(&RequestLabels { operation: operation.to_owned(), status }).inc();
        self.latency.get_or_create(&OperationLabels { operation: operation.to_owned() }).observe(elapsed.as_secs_f64());
        if let Some(code) = error.filter(|code| matches!(code.status().as_u16(), 409 | 422)) {
            let labels = ConflictLabels {
                r#type: code.path().to_owned(),
                operation: operation.to_owned(),
                workspace: workspace.unwrap_or_default().to_owned(),
            };
            self.conflicts.get_or_create(&labels).inc();
        }
        if error == Some(ErrorCode::Overloaded) {
            self.shed.inc();
        }
        if let Some(kind) = database_failure {
            self.database_failures.get_or_create(&DatabaseFailureLabels { kind }).inc();
        }
        if replayed {
            self.idempotent_replays.inc();
        }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Reads the store's figures at each scrape.
struct StoreCollector {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.store.stats();
        stats.connection_waits.encode(encoder.encode_descriptor(
            "sigil_database_connection_wait_seconds",
            "How long database work waited for a connection",
            None,
            stats.connection_waits.metric_type(),
        )?)?;
        let mut queued = encoder.encode_descriptor(
            "sigil_database_queued",
            "Work waiting in the store's queues: sqlite_writes (writes waiting for their group commit), \
             postgres_creates, postgres_upserts and postgres_meta_updates (creates, upserts and updates of meta alone waiting for theirs), change_announcements (changes not yet told to other nodes)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (queue, depth) in stats.queued {
            let depth = ConstGauge::new(i64::try_from(depth).unwrap_or(i64::MAX));
            depth.encode(queued.encode_family(&[("queue", queue)])?)?;
        }
        let Some(cache) = stats.identity_cache else { return Ok(()) };
        let serving = ConstGauge::new(i64::from(cache.serving));
        serving.encode(encoder.encode_descriptor(
            "sigil_identity_cache_serving",
            "1 while identities are served from memory; 0 while a PostgreSQL node cannot hear other nodes' changes",
            None,
            serving.metric_type(),
        )?)?;
        for (name, help, value) in [
            ("sigil_identity_cache_hits", "getIdentity reads answered from memory", cache.hits),
            ("sigil_identity_cache_misses", "getIdentity reads that went to the database", cache.misses),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

pub async fn metrics_endpoint(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}
