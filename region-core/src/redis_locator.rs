//! Where the shard's Redis master is: a fixed URL (`REGION_REDIS_URL`), or
//! whatever Redis Sentinel says (`REGION_REDIS_SENTINELS`).
//!
//! The `redis` crate's Sentinel support looks the master up when asked and
//! does not follow failovers: a connection made to the old master keeps
//! pointing at it (dead, or demoted to a replica that answers writes with
//! `READONLY`). So every user of Redis here asks this locator for a client
//! when it (re)connects, and calls [`RedisLocator::forget`] after a failed
//! call: the next connection asks the sentinels again and lands on the new
//! master. A fixed URL ignores `forget`.

use redis::sentinel::Sentinel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The shard's Redis, found by URL or through Sentinel. Cheap to clone.
#[derive(Clone)]
pub struct RedisLocator {
    inner: Arc<Source>,
}

enum Source {
    Fixed(redis::Client),
    Sentinel {
        // tokio Mutex: held across the sentinel query's `.await`.
        sentinel: tokio::sync::Mutex<Sentinel>,
        service: String,
        timeout: Duration,
        // std Mutex: only held to read or swap the cached client.
        current: Mutex<Option<redis::Client>>,
    },
}

impl RedisLocator {
    /// A fixed Redis at `url`.
    pub fn fixed(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            inner: Arc::new(Source::Fixed(redis::Client::open(url)?)),
        })
    }

    /// The master of `service` as the sentinels at `sentinels` (URLs) name
    /// it, each query bounded by `timeout`.
    pub fn sentinel(
        sentinels: &[String],
        service: &str,
        timeout: Duration,
    ) -> redis::RedisResult<Self> {
        Ok(Self {
            inner: Arc::new(Source::Sentinel {
                sentinel: tokio::sync::Mutex::new(Sentinel::build(sentinels.to_vec())?),
                service: service.to_owned(),
                timeout,
                current: Mutex::new(None),
            }),
        })
    }

    /// A client for the master: the fixed one, or the one the sentinels
    /// named last (asking them if none is cached).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match &*self.inner {
            Source::Fixed(c) => Ok(c.clone()),
            Source::Sentinel {
                sentinel,
                service,
                timeout,
                current,
            } => {
                if let Some(c) = current.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                    return Ok(c);
                }
                let mut s = sentinel.lock().await;
                let found = tokio::time::timeout(*timeout, s.async_master_for(service, None))
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((
                            redis::ErrorKind::IoError,
                            "no sentinel answered in time",
                        ))
                    })??;
                tracing::info!(
                    master = %found.get_connection_info().addr,
                    %service,
                    "redis master found through sentinel"
                );
                *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
                Ok(found)
            }
        }
    }

    /// After a failed call: ask the sentinels again on the next connect.
    pub fn forget(&self) {
        if let Source::Sentinel { current, .. } = &*self.inner {
            *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Whether the master is found through Sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(&*self.inner, Source::Sentinel { .. })
    }
}
