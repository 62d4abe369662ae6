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
}
