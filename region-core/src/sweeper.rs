//! Frees expired holds in Postgres. Redis keys expire by their own TTL;
//! this makes the durable rows and the seat maps say the same. Batches use
//! `FOR UPDATE SKIP LOCKED`, so the sweeper never waits on a hold in
//! flight and several region-core replicas can sweep side by side.

use crate::holds::store;
use crate::redis_path::RedisPath;
use shared::{SeatState, ShowId};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

/// Seats freed per transaction.
const BATCH: i64 = 1000;

/// Runs until `shutdown` flips, sweeping every `every`.
pub async fn run(
    db: PgPool,
    redis: RedisPath,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match sweep_once(&db, &redis).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(freed = n, "expired holds swept"),
            Err(e) => tracing::warn!(error = %e, "sweep failed; will retry"),
        }
    }
}

/// Frees every seat whose hold has ended; returns how many.
pub async fn sweep_once(db: &PgPool, redis: &RedisPath) -> Result<usize, sqlx::Error> {
    let mut total = 0;
    loop {
        let now = chrono::Utc::now();
        let mut tx = db.begin().await?;
        let freed = store::sweep_expired(&mut tx, now, BATCH).await?;
        tx.commit().await?;
        let n = freed.len();
        total += n;
        let mut by_show: HashMap<uuid::Uuid, Vec<(i32, SeatState)>> = HashMap::new();
        for f in freed {
            by_show
                .entry(f.show_id)
                .or_default()
                .push((f.ordinal, SeatState::Available));
        }
        let changes: Vec<_> = by_show.into_iter().map(|(s, v)| (ShowId(s), v)).collect();
        redis.seatmap_update(&changes).await;
        metrics::counter!("hold_seats_expired_total").increment(n as u64);
        if (n as i64) < BATCH {
            return Ok(total);
        }
    }
}
