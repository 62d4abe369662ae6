//! Ratelimit counters in PostgreSQL, shared by every node, in an unlogged table (migration 0012). One limit
//! is checked and taken by one statement, which holds its row only while it runs: a hot counter (an
//! identity's, shared by all its keys) then serializes statements, not transactions and their round trips.
//! (A denied check reads the count with a second statement, and a counter's first use makes it with a
//! third.) Several limits need all or nothing: one transaction holds the rows of all their counters (taken
//! in one order, so two never wait on each other), and adds the costs only when no limit is exceeded. A
//! node's concurrent verifications of the same counters share such a transaction (`combiner.rs`).

use sqlx::PgConnection;

use crate::domain::ratelimit::{CounterKey, RatelimitCheck, RatelimitOutcome, decide, window_start};
use crate::store::ratelimits::ENDED_FOR_MS;
use crate::store::{PURGE_BATCH, StoreError};

/// A batch of counters whose window ended before `$1`. The end is checked again on the row itself: under
/// READ COMMITTED, a counter taken from since the batch was chosen is a new row version, which the outer
/// condition sees, so a live window is never deleted.
const PURGE_ENDED_COUNTERS: &str = "DELETE FROM ratelimit_counters WHERE ctid IN \
     (SELECT ctid FROM ratelimit_counters WHERE window_start + duration < $1 LIMIT $2) \
     AND window_start + duration < $1";

/// Holds the counter's row (made on first use) and returns its count in the window starting at `$5`. Windows
/// only move forward: a node whose clock runs behind counts into the newer window another node began,
/// instead of resetting it (which would forget its count at every boundary).
const HOLD_COUNTER: &str = "INSERT INTO ratelimit_counters (workspace_id, name, identifier, duration, window_start, count) \
     VALUES ($1, $2, $3, $4, $5, 0) \
     ON CONFLICT (workspace_id, name, identifier, duration) DO UPDATE SET \
       count = CASE WHEN EXCLUDED.window_start > ratelimit_counters.window_start THEN 0 ELSE ratelimit_counters.count END, \
       window_start = GREATEST(ratelimit_counters.window_start, EXCLUDED.window_start) \
     RETURNING count";
/// Takes `$6` from the counter, when it exists, and when that leaves it within `$7` in the window starting at
/// `$5` (or a newer one another node began); no row is returned when it would not. The common case, as a
/// plain UPDATE: PostgreSQL spent about a third more time on the speculative insert of [`TAKE_FROM_COUNTER`].
const TAKE_FROM_EXISTING_COUNTER: &str = "UPDATE ratelimit_counters SET \
       count = CASE WHEN $5 > window_start THEN $6 ELSE count + $6 END, \
       window_start = GREATEST(window_start, $5) \
     WHERE workspace_id = $1 AND name = $2 AND identifier = $3 AND duration = $4 \
       AND CASE WHEN $5 > window_start THEN 0 ELSE count END + $6 <= $7 \
     RETURNING count";
/// [`TAKE_FROM_EXISTING_COUNTER`] for a counter that may not exist yet.
const TAKE_FROM_COUNTER: &str = "INSERT INTO ratelimit_counters (workspace_id, name, identifier, duration, window_start, count) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (workspace_id, name, identifier, duration) DO UPDATE SET \
       count = CASE WHEN EXCLUDED.window_start > ratelimit_counters.window_start \
         THEN EXCLUDED.count ELSE ratelimit_counters.count + EXCLUDED.count END, \
       window_start = GREATEST(ratelimit_counters.window_start, EXCLUDED.window_start) \
     WHERE CASE WHEN EXCLUDED.window_start > ratelimit_counters.window_start \
       THEN 0 ELSE ratelimit_counters.count END + EXCLUDED.count <= $7 \
     RETURNING count";
/// The counter's count in the window starting at `$5` or a newer one (0 when it holds an earlier window's); no
/// row when there is no counter.
const COUNT_OF_COUNTER: &str = "SELECT CASE WHEN window_start >= $5 THEN count ELSE 0 END \
     FROM ratelimit_counters WHERE workspace_id = $1 AND name = $2 AND identifier = $3 AND duration = $4";
const ADD_TO_COUNTER: &str = "UPDATE ratelimit_counters SET count = count + $5 \
     WHERE workspace_id = $1 AND name = $2 AND identifier = $3 AND duration = $4";

/// Verifications' checks of the same counters, in turn, in the caller's transaction, which holds the
/// counters' rows (taken in one order, so two transactions never wait on each other): a verification's
/// costs are added when none of its limits is exceeded, given what those before it took. One statement per
/// counter holds it and one adds what the batch took: combined, verifications sharing an identity's
/// counter no longer each wait for a statement of their own.
pub(super) async fn take_in_turn(
    connection: &mut PgConnection,
    batch: &[Vec<RatelimitCheck>],
    now_ms: i64,
) -> Result<Vec<Vec<RatelimitOutcome>>, StoreError> {
    let mut counters: Vec<&CounterKey> = batch.iter().flatten().map(|check| &check.counter).collect();
    counters.sort();
    counters.dedup();
    let mut held = Vec::with_capacity(counters.len());
    for counter in &counters {
        let count: i64 = sqlx::query_scalar(HOLD_COUNTER)
            .bind(&counter.workspace)
            .bind(&counter.name)
            .bind(&counter.identifier)
            .bind(counter.duration)
            .bind(window_start(now_ms, counter.duration))
            .fetch_one(&mut *connection)
            .await?;
        held.push(count);
    }
    let index = |counter: &CounterKey| counters.binary_search(&counter).expect("every counter is held");
    let mut counts = held.clone();
    let outcomes = batch
        .iter()
        .map(|checks| {
            let before: Vec<i64> = checks.iter().map(|check| counts[index(&check.counter)]).collect();
            let (take, outcomes) = decide(checks, &before, now_ms);
            if take {
                for check in checks {
                    counts[index(&check.counter)] += check.cost;
                }
            }
            outcomes
        })
        .collect();
    for ((counter, before), after) in counters.iter().zip(held).zip(counts) {
        if after > before {
            sqlx::query(ADD_TO_COUNTER)
                .bind(&counter.workspace)
                .bind(&counter.name)
                .bind(&counter.identifier)
                .bind(counter.duration)
                .bind(after - before)
                .execute(&mut *connection)
                .await?;
        }
    }
    Ok(outcomes)
}

/// One limit, by one statement: taken when it fits, else read to say what is left.
pub(super) async fn take_one(
    connection: &mut PgConnection,
    check: &RatelimitCheck,
    now_ms: i64,
) -> Result<RatelimitOutcome, StoreError> {
    let counter = &check.counter;
    let window = window_start(now_ms, counter.duration);
    let reset = window + counter.duration;
    let taken = |count: i64| RatelimitOutcome { remaining: (check.limit - count).max(0), reset, exceeded: false };
    let exceeded = |count: i64| RatelimitOutcome { remaining: (check.limit - count).max(0), reset, exceeded: true };
    // A cost over the limit never fits; the statement would insert it into an empty counter.
    if check.cost > check.limit {
        return Ok(exceeded(count_of(connection, check, window).await?.unwrap_or(0)));
    }
    let take = |statement: &'static str| {
        sqlx::query_scalar(statement)
            .bind(&counter.workspace)
            .bind(&counter.name)
            .bind(&counter.identifier)
            .bind(counter.duration)
            .bind(window)
            .bind(check.cost)
            .bind(check.limit)
    };
    if let Some(count) = take(TAKE_FROM_EXISTING_COUNTER).fetch_optional(&mut *connection).await? {
        return Ok(taken(count));
    }
    // Each statement commits on its own: a counter that did not exist for the UPDATE may exist now, made by
    // a concurrent first take, with room left for this one.
    if let Some(count) = count_of(connection, check, window).await?
        && count.saturating_add(check.cost) > check.limit
    {
        return Ok(exceeded(count));
    }
    // The counter's first use (or first since it was purged), or one made since the UPDATE: the statement
    // that takes from it makes it when it is missing.
    match take(TAKE_FROM_COUNTER).fetch_optional(&mut *connection).await? {
        Some(count) => Ok(taken(count)),
        None => Ok(exceeded(count_of(connection, check, window).await?.unwrap_or(0))),
    }
}

/// The counter's count in the window starting at `window` (or a newer one); `None` when there is no counter.
async fn count_of(
    connection: &mut PgConnection,
    check: &RatelimitCheck,
    window: i64,
) -> Result<Option<i64>, StoreError> {
    let counter = &check.counter;
    Ok(sqlx::query_scalar(COUNT_OF_COUNTER)
        .bind(&counter.workspace)
        .bind(&counter.name)
        .bind(&counter.identifier)
        .bind(counter.duration)
        .bind(window)
        .fetch_optional(&mut *connection)
        .await?)
}

pub(super) async fn purge_ended(connection: &mut PgConnection, now_ms: i64) -> Result<u64, StoreError> {
    let purged = sqlx::query(PURGE_ENDED_COUNTERS)
        .bind(now_ms - ENDED_FOR_MS)
        .bind(i64::try_from(PURGE_BATCH).unwrap_or(i64::MAX))
        .execute(&mut *connection)
        .await?;
    Ok(purged.rows_affected())
}
