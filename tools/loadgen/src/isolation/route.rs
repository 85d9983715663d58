//! A city's replicas as the edge sees them (`functions::config` and
//! `functions::breaker`): the load generator's client of one shard.

use anyhow::Context;
use functions::breaker::is_failure;
use functions::config::{may_fail_over, rotation};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use shared::breaker::{Admission, Breaker, BreakerSettings};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A city's replicas as the edge sees them: requests rotate over them
/// (or start at a buyer's own), each replica has a breaker that skips it
/// while it is down, and a read or a keyed write that gets no answer goes
/// to the next (`functions::config::{rotation, may_fail_over}`).
pub(super) struct CityRoute {
    bases: Vec<String>,
    breakers: Mutex<Vec<Breaker>>,
    clock: Instant,
    turn: AtomicU64,
    http: reqwest::Client,
}

/// One request's end, after any failover.
pub(super) struct Answer {
    /// None: no replica answered (or none was tried: all breakers open).
    pub(super) status: Option<u16>,
    pub(super) body: Vec<u8>,
    /// Tries that got no answer (or a 502/504) before this one.
    pub(super) failed_tries: u32,
}

impl CityRoute {
    pub(super) fn new(bases: Vec<String>, connections: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            breakers: Mutex::new(vec![Breaker::new(BreakerSettings::default()); bases.len()]),
            bases,
            clock: Instant::now(),
            turn: AtomicU64::new(0),
            http,
        })
    }

    fn now_ms(&self) -> i64 {
        self.clock.elapsed().as_millis() as i64
    }

    fn breakers(&self) -> std::sync::MutexGuard<'_, Vec<Breaker>> {
        self.breakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `method path` starting at replica `first` (or the next in
    /// turn).
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        token: &HeaderValue,
        body: Option<Vec<u8>>,
        key: Option<&str>,
        first: Option<usize>,
    ) -> Answer {
        let turn = match first {
            Some(f) => f as u64,
            None => self.turn.fetch_add(1, Ordering::Relaxed),
        };
        let fail_over = may_fail_over(method.as_str(), key.is_some());
        let mut failed_tries = 0;
        for i in rotation(self.bases.len(), turn) {
            let admission = self.breakers()[i].admit(self.now_ms());
            if let Admission::Refuse { .. } = admission {
                continue;
            }
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.bases[i]))
                .header(AUTHORIZATION, token.clone());
            if let Some(k) = key {
                req = req.header("Idempotency-Key", k);
            }
            if let Some(b) = &body {
                req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let (status, bytes) = match req.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    match r.bytes().await {
                        Ok(b) => (Some(s), b.to_vec()),
                        Err(_) => (None, Vec::new()),
                    }
                }
                Err(_) => (None, Vec::new()),
            };
            let failed = is_failure(status);
            self.breakers()[i].record(failed, self.now_ms());
            if failed && fail_over {
                failed_tries += 1;
                continue;
            }
            return Answer {
                status,
                body: bytes,
                failed_tries,
            };
        }
        Answer {
            status: None,
            body: Vec::new(),
            failed_tries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback "replica" answering every request 201, and a port
    /// nothing listens on (a dead replica).
    async fn live_and_dead() -> (String, String) {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_url = format!("http://{}", live.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = live.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let answer = "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        (live_url, dead_url)
    }

    #[tokio::test]
    async fn a_keyed_write_fails_over_and_an_unkeyed_one_does_not() {
        let (live, dead) = live_and_dead().await;
        let route = CityRoute::new(vec![dead, live], 4).unwrap();
        let token = HeaderValue::from_static("Bearer t");
        let keyed = route
            .call(
                Method::POST,
                "/x",
                &token,
                Some(b"{}".to_vec()),
                Some("k1"),
                Some(0),
            )
            .await;
        assert_eq!(keyed.status, Some(201));
        assert_eq!(keyed.failed_tries, 1);
        let unkeyed = route
            .call(Method::DELETE, "/x", &token, None, None, Some(0))
            .await;
        assert_eq!(unkeyed.status, None, "a write without a key is not retried");
        // A read fails over too.
        let read = route
            .call(Method::GET, "/x", &token, None, None, Some(0))
            .await;
        assert_eq!(read.status, Some(201));
    }
}
