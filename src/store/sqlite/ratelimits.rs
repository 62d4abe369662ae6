//! Ratelimit counters in this process's memory: a SQLite file is served by one process alone (its lock
//! file), so every verification passes here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::domain::ratelimit::{CounterKey, RatelimitCheck, RatelimitOutcome, decide, window_start};

/// Counters kept at most before those of past windows are dropped.
const PRUNE_PAST: usize = 100_000;

#[derive(Default)]
pub(super) struct MemoryCounters {
    /// Each counter's window start and count.
    counts: Mutex<HashMap<CounterKey, (i64, i64)>>,
}

impl MemoryCounters {
    pub(super) fn take(&self, checks: &[RatelimitCheck], now_ms: i64) -> Vec<RatelimitOutcome> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let current: Vec<i64> = checks
            .iter()
            .map(|check| {
                let window = window_start(now_ms, check.counter.duration);
                counts.get(&check.counter).filter(|(start, _)| *start == window).map_or(0, |(_, count)| *count)
            })
            .collect();
        let (take, outcomes) = decide(checks, &current, now_ms);
        if take {
            for (check, count) in checks.iter().zip(current) {
                let window = window_start(now_ms, check.counter.duration);
                counts.insert(check.counter.clone(), (window, count + check.cost));
            }
            if counts.len() > PRUNE_PAST {
                counts.retain(|counter, (start, _)| *start + counter.duration > now_ms);
            }
        }
        outcomes
    }
}
