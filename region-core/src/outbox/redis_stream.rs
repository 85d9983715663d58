//! The default [`EventSink`]: one Redis Stream per city
//! (`events:<city>`), each entry carrying its `event_id` so consumers can
//! drop redeliveries.

use super::{EventSink, OutboxEvent};
use crate::redis_locator::RedisLocator;
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use std::time::Duration;
use tokio::sync::Mutex;

/// Stream of one city's events: `<prefix>:<city>` (prefix `events` by
/// default, `REGION_EVENTS_STREAM_PREFIX`).
pub fn stream_key(prefix: &str, city: &str) -> String {
    format!("{prefix}:{city}")
}

/// Approximate cap on each stream's length (old entries are trimmed).
const MAX_LEN: usize = 1_000_000;

/// A lazily (re)connected Redis connection outside the seat-lock breaker:
/// the outbox waits out a Redis outage on its own schedule.
pub struct LazyRedis {
    locator: RedisLocator,
    timeout: Duration,
    // tokio Mutex: held across the connect `.await`.
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl LazyRedis {
    /// A connection to the Redis at `url`, opened on first use.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self::located(RedisLocator::fixed(url)?, timeout))
    }

    /// A connection to the Redis `locator` finds (through Sentinel, it
    /// follows a failover after [`LazyRedis::reset`]).
    pub fn located(locator: RedisLocator, timeout: Duration) -> Self {
        Self {
            locator,
            timeout,
            conn: Mutex::new(None),
        }
    }

    /// The connection, connecting if needed.
    pub async fn get(&self) -> anyhow::Result<MultiplexedConnection> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout, async {
            let client = self.locator.client().await?;
            client.get_multiplexed_async_connection().await
        })
        .await
        .map_err(|_| anyhow::anyhow!("redis connect timed out"))??;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forgets a connection that failed, so the next call reconnects.
    pub async fn reset(&self) {
        *self.conn.lock().await = None;
        self.locator.forget();
    }
}

/// Publishes to Redis Streams.
pub struct RedisStreamSink {
    redis: LazyRedis,
    prefix: String,
}

impl RedisStreamSink {
    /// A sink on the Redis at `url`, streams named `<prefix>:<city>`.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self::located(RedisLocator::fixed(url)?, prefix, timeout))
    }

    /// A sink on the Redis `locator` finds.
    pub fn located(locator: RedisLocator, prefix: &str, timeout: Duration) -> Self {
        Self {
            redis: LazyRedis::located(locator, timeout),
            prefix: prefix.to_owned(),
        }
    }
}

#[async_trait]
impl EventSink for RedisStreamSink {
    async fn publish(&self, events: &[OutboxEvent]) -> anyhow::Result<()> {
        let mut conn = self.redis.get().await?;
        let mut pipe = redis::pipe();
        for e in events {
            pipe.cmd("XADD")
                .arg(stream_key(&self.prefix, &e.city))
                .arg("MAXLEN")
                .arg("~")
                .arg(MAX_LEN)
                .arg("*")
                .arg("event_id")
                .arg(e.event_id.to_string())
                .arg("type")
                .arg(&e.event_type)
                .arg("aggregate_id")
                .arg(e.aggregate_id.to_string())
                .arg("seq")
                .arg(e.seq)
                .arg("created_at")
                .arg(e.created_at.to_rfc3339())
                .arg("payload")
                .arg(e.payload.to_string())
                .ignore();
        }
        let res =
            tokio::time::timeout(self.redis.timeout * 4, pipe.query_async::<()>(&mut conn)).await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.redis.reset().await;
                Err(e.into())
            }
            Err(_) => {
                self.redis.reset().await;
                Err(anyhow::anyhow!("publishing to redis streams timed out"))
            }
        }
    }
}
