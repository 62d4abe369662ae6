//! Ratelimit counters in this process's memory: a SQLite file is served by one process alone (its lock
//! file), so every verification passes here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::domain::ratelimit::{CounterKey, RatelimitCheck, RatelimitOutcome, decide, window_start};
use crate::store::StoreError;

/// Counters kept before those of past windows are first dropped; after a prune, twice as many as are left,
/// so that pruning costs a constant share of the takes however many counters are live.
const FIRST_PRUNE: usize = 100_000;

/// Live counters kept at most. A verification's inline limits name counters of the caller's choosing, each
/// kept until its window ends, up to 30 days: without a bound, verifications with 50 invented names of 250
/// characters each (`wrk -t1 -c8`) grew this process to 1.5 GB in 10 s, some 430 bytes a counter. Past the
/// bound, a verification that needs a new counter is refused and counts nothing; counters already live go
/// on counting.
const MAX_COUNTERS: usize = 500_000;

/// While new counters do not fit, how long refusals go on before ended windows are looked for again: each
/// look reads every counter, under the lock every verification takes.
const FULL_FOR_MS: i64 = 1000;

pub(super) struct MemoryCounters {
    counts: Mutex<Counts>,
}

struct Counts {
    /// Each counter's window start and count.
    by_counter: HashMap<CounterKey, (i64, i64)>,
    prune_past: usize,
    /// When ended windows were last looked for because a new counter did not fit.
    looked_when_full_at: Option<i64>,
    /// Whether the last new counter asked for was refused.
    full: bool,
}

impl Counts {
    fn drop_ended(&mut self, now_ms: i64) {
        self.by_counter.retain(|counter, (start, _)| *start + counter.duration > now_ms);
        self.prune_past = FIRST_PRUNE.max(2 * self.by_counter.len());
    }
}

impl Default for MemoryCounters {
    fn default() -> Self {
        Self {
            counts: Mutex::new(Counts {
                by_counter: HashMap::new(),
                prune_past: FIRST_PRUNE,
                looked_when_full_at: None,
                full: false,
            }),
        }
    }
}

impl MemoryCounters {
    pub(super) fn take(&self, checks: &[RatelimitCheck], now_ms: i64) -> Result<Vec<RatelimitOutcome>, StoreError> {
        self.take_within(checks, now_ms, MAX_COUNTERS)
    }

    fn take_within(
        &self,
        checks: &[RatelimitCheck],
        now_ms: i64,
        max_counters: usize,
    ) -> Result<Vec<RatelimitOutcome>, StoreError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        // One lookup a check, on the path every verification takes; the rare full path looks again.
        let stored = |counts: &Counts| -> Vec<Option<(i64, i64)>> {
            checks.iter().map(|check| counts.by_counter.get(&check.counter).copied()).collect()
        };
        let mut found = stored(&counts);
        let new = |found: &[Option<(i64, i64)>]| found.iter().filter(|counter| counter.is_none()).count();
        if new(&found) > 0 && counts.by_counter.len() + new(&found) > max_counters {
            if counts.looked_when_full_at.is_none_or(|at| (now_ms - at).abs() >= FULL_FOR_MS) {
                counts.drop_ended(now_ms);
                counts.looked_when_full_at = Some(now_ms);
                found = stored(&counts);
            }
            if counts.by_counter.len() + new(&found) > max_counters {
                if !counts.full {
                    tracing::warn!(
                        live = counts.by_counter.len(),
                        "ratelimit counters are full: verifications that need a new counter are refused until \
                         windows end"
                    );
                    counts.full = true;
                }
                return Err(StoreError::CountersFull);
            }
        }
        if new(&found) > 0 {
            counts.full = false;
        }
        // A window only moves forward: after the clock steps back, counting goes on in the newer window.
        let current: Vec<(i64, i64)> = checks
            .iter()
            .zip(found)
            .map(|(check, found)| {
                let window = window_start(now_ms, check.counter.duration);
                match found {
                    Some((start, count)) if start >= window => (start, count),
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
                counts.drop_ended(now_ms);
            }
        }
        Ok(outcomes)
    }

    /// Drops every counter whose window ended `ended_for_ms` before `now_ms`: memory has no writer to hold.
    pub(super) fn purge_ended(&self, now_ms: i64, ended_for_ms: i64) -> u64 {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let before = counts.by_counter.len();
        counts.by_counter.retain(|counter, (start, _)| *start + counter.duration + ended_for_ms >= now_ms);
        (before - counts.by_counter.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, duration: i64) -> RatelimitCheck {
        let counter = CounterKey { workspace: "ws".into(), name: name.into(), identifier: "key".into(), duration };
        RatelimitCheck { counter, limit: 10, cost: 1 }
    }

    #[test]
    fn past_the_bound_only_new_counters_are_refused_until_windows_end() {
        let counters = MemoryCounters::default();
        let now = 1_000_000;
        let take = |checks: &[RatelimitCheck], now_ms| counters.take_within(checks, now_ms, 2);
        assert!(take(&[check("short", 1000), check("long", 60_000)], now).is_ok());
        assert!(matches!(take(&[check("invented", 60_000)], now), Err(StoreError::CountersFull)));
        let live = take(&[check("long", 60_000)], now).expect("a live counter goes on counting");
        assert_eq!(live[0].remaining, 8, "two taken of 10");
        assert!(matches!(take(&[check("invented", 60_000)], now + 999), Err(StoreError::CountersFull)), "not looked");
        assert!(take(&[check("invented", 60_000)], now + 1000).is_ok(), "the short window ended: room again");
        assert!(matches!(take(&[check("another", 60_000)], now + 1000), Err(StoreError::CountersFull)));
    }
}
