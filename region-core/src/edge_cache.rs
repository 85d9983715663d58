//! Invalidating the edge's cached catalog reads from the region side.
//!
//! The edge caches catalog reads under keys that carry a per-city version
//! (`shared::catalog_version`), kept in the edge's Upstash Redis; the
//! Worker bumps it when an operator write passes through it. A write sent
//! to the region core directly (an operator tool, `curl` from the
//! runbook) never passes the Worker, so the region core bumps the same
//! keys itself, over the same Upstash REST protocol, after the write
//! commits. Chosen over the edge asking the region for a version: that
//! would cost a region round trip on every cache hit, which is what the
//! cache is there to avoid.
//!
//! Best effort, after the commit: a failed bump is logged and counted,
//! and the edge's copies then age out by their TTL (60 s for shows by
//! default), as they would if the edge's own bump failed.

use reqwest::Client;
use shared::catalog_version::version_key;
use std::time::Duration;

/// A client of the edge's Upstash REST endpoint.
#[derive(Clone)]
pub struct EdgeCache {
    pipeline_url: String,
    token: String,
    prefix: String,
    http: Client,
}

/// Attempts of one bump (a lost bump leaves the edge stale for a TTL).
const ATTEMPTS: usize = 3;

impl EdgeCache {
    /// A client of `url` (the Worker's `UPSTASH_REDIS_REST_URL`) with its
    /// bearer `token`, putting `prefix` (the Worker's `KEY_PREFIX`) in
    /// front of each key.
    pub fn new(url: &str, token: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            pipeline_url: format!("{}/pipeline", url.trim_end_matches('/')),
            token: token.to_owned(),
            prefix: prefix.to_owned(),
            http: Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
        })
    }

    /// Increments the catalog versions of `cities` and the global one
    /// (the city list; the Worker bumps it on every operator write too).
    pub async fn bump(&self, cities: &[String]) {
        let body = bump_commands(&self.prefix, cities);
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .http
                .post(&self.pipeline_url)
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    metrics::counter!("edge_cache_bumps_total", "outcome" => "ok").increment(1);
                    return;
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, "edge catalog version bump refused")
                }
                Err(e) => tracing::warn!(error = %e, attempt, "edge catalog version bump failed"),
            }
        }
        metrics::counter!("edge_cache_bumps_total", "outcome" => "failed").increment(1);
    }
}

/// The Upstash pipeline body: one `INCR` per city and one for the
/// global version.
fn bump_commands(prefix: &str, cities: &[String]) -> Vec<[String; 2]> {
    cities
        .iter()
        .map(|c| Some(c.as_str()))
        .chain([None])
        .map(|c| ["INCR".to_owned(), format!("{prefix}{}", version_key(c))])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_each_city_and_the_global_version_under_the_prefix() {
        let body = bump_commands("t1:", &["mum".to_owned()]);
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            r#"[["INCR","t1:edge:catalog:v:mum"],["INCR","t1:edge:catalog:v"]]"#
        );
    }
}
