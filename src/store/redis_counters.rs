//! Ratelimit counters in Redis (`sigil serve --ratelimit-counters redis://…`), for PostgreSQL nodes whose
//! verifications contend on one hot counter: Redis takes from one counter about seven times as often per
//! second as PostgreSQL updates one row on the same machine (README, Performance). Exact as PostgreSQL's
//! are: one script checks every limit of a verification and takes from all of them or none, and Redis runs
//! scripts one at a time. Counters need no durability (Unkey keeps its own in memory); each expires a minute
//! after its window ends, so nothing purges them.

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::domain::ratelimit::{RatelimitCheck, RatelimitOutcome, decide, window_start};
use crate::store::ratelimits::{ENDED_FOR_MS, Ratelimits};
use crate::store::{StoreError, within_deadline};

/// For each counter `KEYS[i]`: its window start (`ARGV[4i-3]`), cost, limit and how long to keep it past
/// that window (ms). A counter holds `w` (its window start) and `c` (its count); windows only move forward,
/// as in the other stores. Returns the counts before the take, which [`decide`] reads exactly as the script
/// did: taken from all when no count plus its cost passes its limit.
const TAKE: &str = r#"
local starts, counts, take = {}, {}, true
for i, key in ipairs(KEYS) do
  local window, cost, limit = tonumber(ARGV[4 * i - 3]), tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i - 1])
  local held = redis.call('HMGET', key, 'w', 'c')
  local start, count = tonumber(held[1]), tonumber(held[2]) or 0
  if start == nil or start < window then start, count = window, 0 end
  starts[i], counts[i] = start, count
  if count + cost > limit then take = false end
end
if take then
  for i, key in ipairs(KEYS) do
    redis.call('HSET', key, 'w', starts[i], 'c', counts[i] + tonumber(ARGV[4 * i - 2]))
    redis.call('PEXPIRE', key, tonumber(ARGV[4 * i]))
  end
end
return counts
"#;

pub struct RedisCounters {
    connection: ConnectionManager,
    take: redis::Script,
}

impl RedisCounters {
    /// Connects, and fails when Redis does not answer: a node must not serve verifications it cannot count.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let connection = tokio::time::timeout(crate::store::DATABASE_DEADLINE, client.get_connection_manager())
            .await
            .map_err(|_| anyhow::anyhow!("Redis at {url} did not answer"))??;
        Ok(Self { connection, take: redis::Script::new(TAKE) })
    }
}

#[async_trait]
impl Ratelimits for RedisCounters {
    async fn take_ratelimits(
        &self,
        checks: &[RatelimitCheck],
        now_ms: i64,
    ) -> Result<Vec<RatelimitOutcome>, StoreError> {
        let mut invocation = self.take.prepare_invoke();
        for check in checks {
            let counter = &check.counter;
            let window = window_start(now_ms, counter.duration);
            let key =
                serde_json::to_string(&(&counter.workspace, &counter.name, &counter.identifier, counter.duration))
                    .map_err(|error| StoreError::InvalidData(error.to_string()))?;
            let keep_ms = (window + counter.duration + ENDED_FOR_MS - now_ms).max(1);
            invocation.key(format!("sigil:ratelimit:{key}")).arg(window).arg(check.cost).arg(check.limit).arg(keep_ms);
        }
        let mut connection = self.connection.clone();
        let counts: Vec<i64> =
            within_deadline(async { invocation.invoke_async(&mut connection).await.map_err(unavailable) }).await?;
        Ok(decide(checks, &counts, now_ms).1)
    }

    /// Counters expire by themselves.
    async fn purge_ended_ratelimit_counters(&self, _now_ms: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// Redis, like a database that stopped answering: the verification answers 503 and may be retried.
fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(std::io::Error::other(format!("redis: {error}"))))
}
