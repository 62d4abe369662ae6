//! Ratelimit counters: what the store offers for them. They are exact, never eventually consistent: on
//! SQLite, whose file one process serves, they live in that process's memory (`sqlite/ratelimits.rs`);
//! PostgreSQL nodes share theirs in PostgreSQL (`postgres/ratelimits.rs`).

use async_trait::async_trait;

use crate::domain::ratelimit::{RatelimitCheck, RatelimitOutcome};
use crate::store::StoreError;

#[async_trait]
pub trait Ratelimits: Send + Sync {
    /// Checks every limit in the window `now_ms` falls in, and takes the costs from all of them or, when one
    /// is exceeded, from none. The outcomes are in the order of `checks`.
    async fn take_ratelimits(
        &self,
        checks: &[RatelimitCheck],
        now_ms: i64,
    ) -> Result<Vec<RatelimitOutcome>, StoreError>;

    /// Whether the counters can be taken from, for `/v2/readiness`. Counters kept by the store are ready
    /// when the store is, which readiness asks anyway.
    async fn counters_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Deletes at most [`PURGE_BATCH`](crate::store::PURGE_BATCH) counters whose window ended at least
    /// [`ENDED_FOR_MS`] before `now_ms` (housekeeping: such a counter counts as 0 anyway); returns how many.
    async fn purge_ended_ratelimit_counters(&self, now_ms: i64) -> Result<u64, StoreError>;
}

/// How long after its window's end a counter is kept: longer than nodes' clocks differ, so that no node's
/// current window is purged.
pub const ENDED_FOR_MS: i64 = 60_000;
