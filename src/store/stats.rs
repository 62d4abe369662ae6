//! What the store tells operators, read at each scrape of `/metrics`.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::store::IdentityCacheStats;

pub struct StoreStats {
    /// `None` when the store keeps no identities in memory (administrative commands).
    pub identity_cache: Option<IdentityCacheStats>,
    /// Work waiting in each of the store's queues, by queue name.
    pub queued: Vec<(&'static str, usize)>,
    /// How long work waited for a database connection, in seconds.
    pub connection_waits: Histogram,
}

/// 10 µs to about 5 s, doubling: a wait past the database deadline (5 s) ends in a 503.
pub(super) fn connection_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}
