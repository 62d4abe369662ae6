//! Ratelimit counters in this process's memory: a SQLite file is served by one process alone (its lock
//! file), so every verification passes here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::domain::ratelimit::{CounterKey, RatelimitCheck, RatelimitOutcome, decide, window_start};

/// Counters kept before those of past windows are first dropped; after a prune, twice as many as are left,
/// so that pruning costs a constant share of the takes however many counters are live.
const FIRST_PRUNE: usize = 100_000;

pub(super) struct MemoryCounters {
    counts: Mutex<Counts>,
}

struct Counts {
    /// Each counter's window start and count.
    by_counter: HashMap<CounterKey, (i64, i64)>,
    prune_past: usize,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        Self { counts: Mutex::new(Counts { by_counter: HashMap::new(), prune_past: FIRST_PRUNE }) }
    }
}

impl MemoryCounters {
    pub(super) fn take(&self, checks: &[RatelimitCheck], now_ms: i64) -> Vec<RatelimitOutcome> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        // A window only moves forward: after the clock steps back, counting goes on in the newer window.
        let current: Vec<(i64, i64)> = checks
            .iter()
            .map(|check| {
                let window = window_start(now_ms, check.counter.duration);
                match counts.by_counter.get(&check.counter) {
                    Some(&(start, count)) if start >= window => (start, count),
                    _ => (window, 0),
                }
            })
            .collect();
        let counted: Vec<i64> = current.iter().map(|(_, count)| *count).collect();
        let (take, outcomes) = decide(checks, &counted, now_ms);
        if take {
            for (check, (start, count)) in checks.iter().zip(current) {
                // In place when the counter exists: no copy of its key, no second hash.
                match counts.by_counter.get_mut(&check.counter) {
                    Some(counter) => *counter = (start, count + check.cost),
                    None => {
                        counts.by_counter.insert(check.counter.clone(), (start, count + check.cost));
                    }
                }
            }
            if counts.by_counter.len() > counts.prune_past {
                counts.by_counter.retain(|counter, (start, _)| *start + counter.duration > now_ms);
                counts.prune_past = FIRST_PRUNE.max(2 * counts.by_counter.len());
            }
        }
        outcomes
    }

    /// Drops every counter whose window ended `ended_for_ms` before `now_ms`: memory has no writer to hold.
    pub(super) fn purge_ended(&self, now_ms: i64, ended_for_ms: i64) -> u64 {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let before = counts.by_counter.len();
        counts.by_counter.retain(|counter, (start, _)| *start + counter.duration + ended_for_ms >= now_ms);
        (before - counts.by_counter.len()) as u64
    }
}
