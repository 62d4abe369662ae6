//! Ratelimit counters in PostgreSQL, shared by every node: one transaction holds the rows of all the
//! counters a verification checks (taken in one order, so two never wait on each other), and adds the
//! costs only when no limit is exceeded.

use sqlx::PgConnection;

use crate::domain::ratelimit::{RatelimitCheck, RatelimitOutcome, decide, window_start};
use crate::store::StoreError;

/// Holds the counter's row (made on first use) and returns its count in the window starting at `$5`; a
/// count of an earlier window is reset.
const HOLD_COUNTER: &str = "INSERT INTO ratelimit_counters (workspace_id, name, identifier, duration, window_start, count) \
     VALUES ($1, $2, $3, $4, $5, 0) \
     ON CONFLICT (workspace_id, name, identifier, duration) DO UPDATE SET \
       count = CASE WHEN ratelimit_counters.window_start = EXCLUDED.window_start THEN ratelimit_counters.count ELSE 0 END, \
       window_start = EXCLUDED.window_start \
     RETURNING count";
const ADD_TO_COUNTER: &str = "UPDATE ratelimit_counters SET count = count + $5 \
     WHERE workspace_id = $1 AND name = $2 AND identifier = $3 AND duration = $4";

pub(super) async fn take_in(
    connection: &mut PgConnection,
    checks: &[RatelimitCheck],
    now_ms: i64,
) -> Result<Vec<RatelimitOutcome>, StoreError> {
    let mut order: Vec<usize> = (0..checks.len()).collect();
    order.sort_by(|a, b| checks[*a].counter.cmp(&checks[*b].counter));
    let mut counts = vec![0; checks.len()];
    for &index in &order {
        let counter = &checks[index].counter;
        counts[index] = sqlx::query_scalar(HOLD_COUNTER)
            .bind(&counter.workspace)
            .bind(&counter.name)
            .bind(&counter.identifier)
            .bind(counter.duration)
            .bind(window_start(now_ms, counter.duration))
            .fetch_one(&mut *connection)
            .await?;
    }
    let (take, outcomes) = decide(checks, &counts, now_ms);
    if take {
        for &index in &order {
            let check = &checks[index];
            sqlx::query(ADD_TO_COUNTER)
                .bind(&check.counter.workspace)
                .bind(&check.counter.name)
                .bind(&check.counter.identifier)
                .bind(check.counter.duration)
                .bind(check.cost)
                .execute(&mut *connection)
                .await?;
        }
    }
    Ok(outcomes)
}
