//! Ratelimit counters in Redis (`sigil serve --ratelimit-counters redis://…`), for PostgreSQL nodes whose
//! verifications contend on one hot counter: Redis takes from one counter about seven times as often per
//! second as PostgreSQL updates one row on the same machine (README, Performance). Exact as PostgreSQL's
//! are: one script checks every limit of a verification and takes from all of them or none, and Redis runs
//! scripts one at a time. Counters need no durability (Unkey keeps its own in memory); each expires a minute
//! after its window ends, so nothing purges them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::domain::ratelimit::{RatelimitCheck, RatelimitOutcome, decide, window_start};
use crate::store::ratelimits::{ENDED_FOR_MS, Ratelimits};
use crate::store::{DATABASE_DEADLINE, StoreError};

/// For each counter `KEYS[i]`: its window start (`ARGV[4i-3]`), cost, limit and how long to keep it from
/// now (ms): until a minute after that window ends, or after the newer one a node ahead of this one began. A counter holds `w` (its window start) and `c` (its count); windows only move forward,
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
    redis.call('PEXPIRE', key, tonumber(ARGV[4 * i]) + starts[i] - tonumber(ARGV[4 * i - 3]))
  end
end
return counts
"#;

/// Within readiness's own bound, so that a silent Redis makes readiness answer 503, and start a
/// replacement connection, rather than be cut short first.
const PING_DEADLINE: Duration = Duration::from_secs(1);

pub struct RedisCounters {
    client: redis::Client,
    /// Reconnects by itself when the connection breaks, but not when it goes silent: see [`Self::run`].
    connection: Arc<Mutex<ConnectionManager>>,
    /// Held while a replacement connection is being made, so that a silent Redis gets one attempt at a time.
    replacing: Arc<tokio::sync::Mutex<()>>,
    take: redis::Script,
}

impl RedisCounters {
    /// Connects, and fails when Redis does not answer: a node must not serve verifications it cannot count.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let connection = tokio::time::timeout(DATABASE_DEADLINE, client.get_connection_manager())
            .await
            .map_err(|_| anyhow::anyhow!("Redis at {} did not answer", crate::config::without_password(url)))??;
        Ok(Self {
            client,
            connection: Arc::new(Mutex::new(connection)),
            replacing: Arc::default(),
            take: redis::Script::new(TAKE),
        })
    }

    /// Runs `work` within `deadline`. Past it, or past the client's own response timeout, the connection
    /// may have gone silent without closing (a dropped NAT entry, a failover), which the connection manager
    /// never notices: a replacement is made in the background, and the work answers 503 at once.
    async fn run<T, Work>(
        &self,
        deadline: Duration,
        work: impl FnOnce(ConnectionManager) -> Work,
    ) -> Result<T, StoreError>
    where
        Work: Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match tokio::time::timeout(deadline, work(connection)).await {
            // The client's own response timeout, shorter than ours, comes back as an error; the connection
            // it gave up on is no better.
            Ok(Err(error)) if error.is_timeout() => {
                self.replace_connection();
                Err(unavailable(error))
            }
            Ok(answer) => answer.map_err(unavailable),
            Err(_) => {
                self.replace_connection();
                Err(StoreError::TimedOut)
            }
        }
    }

    fn replace_connection(&self) {
        let Ok(replacing) = Arc::clone(&self.replacing).try_lock_owned() else { return };
        let (client, connection) = (self.client.clone(), Arc::clone(&self.connection));
        tokio::spawn(async move {
            let _replacing = replacing;
            match tokio::time::timeout(DATABASE_DEADLINE, client.get_connection_manager()).await {
                Ok(Ok(fresh)) => *connection.lock().unwrap_or_else(PoisonError::into_inner) = fresh,
                Ok(Err(error)) => tracing::warn!(%error, "cannot reconnect to the Redis of the ratelimit counters"),
                Err(_) => tracing::warn!("the Redis of the ratelimit counters did not answer a new connection"),
            }
        });
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
        let counts: Vec<i64> = self
            .run(DATABASE_DEADLINE, |mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(decide(checks, &counts, now_ms).1)
    }

    async fn counters_ready(&self) -> Result<(), StoreError> {
        let ping = |mut connection: ConnectionManager| async move {
            redis::cmd("PING").query_async::<String>(&mut connection).await
        };
        self.run(PING_DEADLINE, ping).await.map(drop)
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
