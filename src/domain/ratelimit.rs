//! Ratelimit counting: fixed windows, and a check of several limits that takes from all of them or from
//! none (Unkey's issue #1995: a request denied by one limit used to spend the others).

/// One counter: a limit's name, whom it counts (a key's id, or an identity's, which all its keys then
/// share), and its window length in milliseconds. Different names never share a counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub workspace: String,
    pub name: String,
    pub identifier: String,
    pub duration: i64,
}

/// One limit to check: take `cost` from the counter unless that would pass `limit` in this window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatelimitCheck {
    pub counter: CounterKey,
    pub limit: i64,
    pub cost: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatelimitOutcome {
    /// What the window has left after this check.
    pub remaining: i64,
    /// When the window ends (unix ms).
    pub reset: i64,
    pub exceeded: bool,
}

/// The start of the fixed window that `now_ms` falls in.
pub fn window_start(now_ms: i64, duration: i64) -> i64 {
    now_ms - now_ms.rem_euclid(duration.max(1))
}

/// The outcome of each check, given what its counter holds in the current window, and whether the costs
/// are to be taken: all of them when no check is exceeded, none otherwise.
pub fn decide(checks: &[RatelimitCheck], counts: &[i64], now_ms: i64) -> (bool, Vec<RatelimitOutcome>) {
    let exceeded: Vec<bool> =
        checks.iter().zip(counts).map(|(check, count)| count.saturating_add(check.cost) > check.limit).collect();
    let take = !exceeded.contains(&true);
    let outcomes = checks
        .iter()
        .zip(counts)
        .zip(exceeded)
        .map(|((check, count), exceeded)| {
            let counted = if take { count.saturating_add(check.cost) } else { *count };
            RatelimitOutcome {
                remaining: (check.limit - counted).max(0),
                reset: window_start(now_ms, check.counter.duration) + check.counter.duration,
                exceeded,
            }
        })
        .collect();
    (take, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, limit: i64, cost: i64) -> RatelimitCheck {
        let counter =
            CounterKey { workspace: "ws".into(), name: name.into(), identifier: "key".into(), duration: 1000 };
        RatelimitCheck { counter, limit, cost }
    }

    #[test]
    fn all_limits_are_taken_from_or_none() {
        let checks = [check("second", 10, 1), check("month", 200, 1)];
        let (take, outcomes) = decide(&checks, &[3, 187], 2_500);
        assert!(take);
        assert_eq!(outcomes[0], RatelimitOutcome { remaining: 6, reset: 3_000, exceeded: false });
        assert_eq!(outcomes[1].remaining, 12);
        let (take, outcomes) = decide(&checks, &[10, 187], 2_500);
        assert!(!take, "one limit exceeded: nothing is taken");
        assert_eq!((outcomes[0].exceeded, outcomes[1].exceeded), (true, false));
        assert_eq!(outcomes[1].remaining, 13, "the month kept what it had");
        assert_eq!(window_start(2_500, 1000), 2_000);
    }
}
