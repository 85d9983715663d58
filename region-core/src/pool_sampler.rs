//! Samples the Postgres pools every few seconds into gauges (connections
//! in use and idle, the maximum) and, since sqlx does not say how many
//! tasks wait for a connection, times one probe `acquire()` per pool
//! into `db_pool_acquire_seconds{pool}`: when the pool is saturated the
//! probe waits in line like a request would, so its time is the wait.
//!
//! The pools are named in their `pool` label: `main` (requests and most
//! background work), `writers` (the group-commit writers' own
//! connections) and `coordination` (the shard's path switch and lease).

use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the pools are sampled (a scrape every 15-30 s sees a fresh
/// value; a probe every 5 s costs a pool next to nothing).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The request pool's label; also the pool whose `PoolTimedOut` a failed
/// request counts (`crate::error`).
pub const MAIN: &str = "main";
/// The group-commit writers' pool.
pub const WRITERS: &str = "writers";
/// The path switch's and leases' pool.
pub const COORDINATION: &str = "coordination";

/// One pool's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    /// Connections lent out.
    pub in_use: u32,
    /// Connections open and waiting in the pool.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl Occupancy {
    /// From sqlx's counts: `size` connections open, `idle` of them idle
    /// (read one after the other, so `idle` may briefly exceed `size`).
    pub fn from_counts(size: u32, idle: usize, max: u32) -> Self {
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        Self {
            in_use: size - idle,
            idle,
            max,
        }
    }
}

fn occupancy(pool: &PgPool) -> Occupancy {
    Occupancy::from_counts(
        pool.size(),
        pool.num_idle(),
        pool.options().get_max_connections(),
    )
}

/// Samples one pool: its gauges, then the probe's wait.
async fn sample(name: &'static str, pool: &PgPool) {
    let o = occupancy(pool);
    metrics::gauge!("db_pool_connections", "pool" => name, "state" => "in_use")
        .set(f64::from(o.in_use));
    metrics::gauge!("db_pool_connections", "pool" => name, "state" => "idle")
        .set(f64::from(o.idle));
    metrics::gauge!("db_pool_max_connections", "pool" => name).set(f64::from(o.max));
    let started = Instant::now();
    match pool.acquire().await {
        // Given back at once: the probe only measures the wait.
        Ok(conn) => drop(conn),
        Err(sqlx::Error::PoolTimedOut) => {
            metrics::counter!("db_pool_acquire_timeouts_total", "pool" => name).increment(1);
        }
        // The database is away: `/readyz` and the requests say so.
        Err(e) => tracing::debug!(pool = name, error = %e, "pool probe failed"),
    }
    metrics::histogram!("db_pool_acquire_seconds", "pool" => name)
        .record(started.elapsed().as_secs_f64());
}

/// Samples `pools` every `every` until `shutdown` flips (the first pass at
/// once, so the series exist from start-up).
pub async fn run(
    pools: Vec<(&'static str, PgPool)>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // One after the other: a saturated pool's probe waits up to its
        // acquire timeout, and the next pass simply comes later.
        for (name, pool) in &pools {
            tokio::select! {
                _ = sample(name, pool) => {}
                _ = shutdown.changed() => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_is_open_minus_idle_and_never_negative() {
        assert_eq!(
            Occupancy::from_counts(10, 3, 16),
            Occupancy {
                in_use: 7,
                idle: 3,
                max: 16
            }
        );
        // The two counts are read apart: a connection given back between
        // them must not make `in_use` wrap around.
        assert_eq!(
            Occupancy::from_counts(2, 3, 16),
            Occupancy {
                in_use: 0,
                idle: 2,
                max: 16
            }
        );
    }
}
