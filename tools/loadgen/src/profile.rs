//! Where a run's time goes, from the servers' own counters: read once
//! before the load and once after, the difference divided by the
//! bookings made. Sources:
//!
//! - Postgres `pg_stat_database` of the run's own database: commits,
//!   rollbacks, and the time its connections spent running statements or
//!   sitting in an open transaction (`active_time` +
//!   `idle_in_transaction_time`, PostgreSQL 14+), which is the time a
//!   pooled connection was busy on the run's behalf;
//! - `pg_stat_statements` (statements executed), when the server loads
//!   it (`shared_preload_libraries`); otherwise left out;
//! - Redis `INFO stats` `total_commands_processed` (the whole server:
//!   run the benchmark on a Redis nothing else uses, as `scripts/bench.sh`
//!   does);
//! - the region core's `gateway_requests_total` (its `/metrics`).
//!
//! Backends report their statistics to `pg_stat_database` when they go
//! idle, at most once a second; [`Counters::read`] is called a little
//! after the load stops so the last second is in.

use serde::Serialize;
use sqlx::PgPool;

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    commits: i64,
    rollbacks: i64,
    busy_ms: f64,
    statements: Option<i64>,
    redis_commands: Option<u64>,
    gateway_requests: Option<u64>,
}

/// Per booking, between two readings.
#[derive(Debug, Clone, Serialize)]
pub struct PerBooking {
    /// Postgres commits (every transaction, background jobs included).
    pub pg_commits: f64,
    /// Postgres rollbacks (savepoint rollbacks are not counted here).
    pub pg_rollbacks: f64,
    /// Statements, from `pg_stat_statements` (null when not loaded).
    pub pg_statements: Option<f64>,
    /// Connection time: statements running or a transaction open, ms.
    pub pg_connection_ms: f64,
    /// Redis commands (null when INFO could not be read).
    pub redis_calls: Option<f64>,
    /// Requests to the payment gateway (null without the metric).
    pub gateway_calls: Option<f64>,
}

impl Counters {
    /// Reads every source; a source that cannot be read is left out.
    pub async fn read(db: &PgPool, redis_url: &str, metrics_url: &str) -> anyhow::Result<Self> {
        let (commits, rollbacks, busy_ms): (i64, i64, f64) = sqlx::query_as(
            "SELECT xact_commit, xact_rollback,
                    coalesce(active_time, 0) + coalesce(idle_in_transaction_time, 0)
               FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(db)
        .await?;
        let statements = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT sum(calls)::bigint FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(db)
        .await
        .ok()
        .flatten();
        Ok(Self {
            commits,
            rollbacks,
            busy_ms,
            statements,
            redis_commands: redis_commands(redis_url).await,
            gateway_requests: metric_sum(metrics_url, "gateway_requests_total").await,
        })
    }

    /// What happened between `self` (before) and `after`, per booking.
    pub fn per_booking(&self, after: &Counters, bookings: u64) -> PerBooking {
        let n = bookings.max(1) as f64;
        let per = |d: f64| crate::report::r2(d / n);
        let both = |a: Option<u64>, b: Option<u64>| Some(per(b?.saturating_sub(a?) as f64));
        PerBooking {
            pg_commits: per((after.commits - self.commits) as f64),
            pg_rollbacks: per((after.rollbacks - self.rollbacks) as f64),
            pg_statements: self
                .statements
                .zip(after.statements)
                .map(|(a, b)| per((b - a) as f64)),
            pg_connection_ms: per(after.busy_ms - self.busy_ms),
            redis_calls: both(self.redis_commands, after.redis_commands),
            gateway_calls: both(self.gateway_requests, after.gateway_requests),
        }
    }
}

/// `total_commands_processed` of the run's Redis.
async fn redis_commands(url: &str) -> Option<u64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The sum of a metric's series on a Prometheus text page (0 if the page
/// has none yet: a counter appears after its first increment; None if
/// the page cannot be read).
pub async fn metric_sum(url: &str, name: &str) -> Option<u64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    let mut found = false;
    let sum: f64 = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series.split('{').next()? == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .inspect(|_| found = true)
        .sum();
    // A counter appears after its first increment: none yet means 0.
    Some(if found { sum as u64 } else { 0 })
}
