//! A `region-core serve` child process (the binary `scripts/test.sh`
//! builds) for the tests that signal or kill it as an orchestrator would:
//! one shard's settings, its own port, logs at WARN.

use crate::{GATEWAY_KEY, SECRET};
use testkit::process::ServiceSpec;

/// What a spawned replica is pointed at.
pub struct ShardParts<'a> {
    /// Its Postgres database.
    pub database_url: &'a str,
    /// Its Redis.
    pub redis_url: &'a str,
    /// The sandbox gateway's URL.
    pub gateway_url: &'a str,
    /// `REGION_SHARD_CODE`.
    pub shard_code: &'a str,
}

/// The spec of a region core on `port` serving `shard` (ready when
/// `/readyz` answers), with the test key, the sandbox gateway's API key,
/// and an event stream of its own; `extra` settings on top.
pub fn region_core_spec(
    port: u16,
    shard: &ShardParts<'_>,
    extra: &[(&str, String)],
) -> anyhow::Result<ServiceSpec> {
    let mut spec = ServiceSpec::workspace_binary("region-core", port, "/readyz")?
        .arg("serve")
        .env("RUST_LOG", "warn")
        .env("REGION_LISTEN", format!("127.0.0.1:{port}"))
        .env("REGION_DATABASE_URL", shard.database_url)
        .env("REGION_REDIS_URL", shard.redis_url)
        .env("REGION_JWT_SECRET", SECRET)
        .env("REGION_SHARD_CODE", shard.shard_code)
        .env("REGION_GATEWAY_URL", shard.gateway_url)
        .env("REGION_GATEWAY_API_KEY", GATEWAY_KEY)
        .env(
            "REGION_EVENTS_STREAM_PREFIX",
            format!("{}-{port}:events", shard.shard_code.to_lowercase()),
        );
    for (k, v) in extra {
        spec = spec.env(k, v.clone());
    }
    Ok(spec)
}
