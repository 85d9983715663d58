//! Brings the Redis fast path back after an outage. While the breaker is
//! open, holds are written to Postgres alone; before the fast path is used
//! again, Redis must know every live hold, or a fast-path request could
//! take a seat Redis forgot (Postgres would still refuse it, but as a
//! late conflict). So: probe, re-assert from Postgres, close the breaker,
//! then re-assert once more for holds written in between.

use crate::holds::store;
use crate::redis_path::{seat_key, seatmap_key, RedisPath};
use chrono::Utc;
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;

/// Watches the breaker until `shutdown` flips.
pub async fn run(db: PgPool, redis: RedisPath, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !redis.probe_if_due().await {
            continue;
        }
        tracing::info!("redis answers again; re-asserting live holds");
        let started = Utc::now() - chrono::Duration::seconds(1);
        match reassert(&db, &redis, None).await {
            Ok(n) => {
                redis.finish_recovery();
                metrics::counter!("redis_recoveries_total").increment(1);
                tracing::info!(seats = n, "live holds re-asserted");
                // Holds written through Postgres while the first pass ran.
                if let Err(e) = reassert(&db, &redis, Some(started)).await {
                    tracing::warn!(error = %e, "second re-assertion pass failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-assertion failed; will probe again");
                redis.recovery_failed();
            }
        }
    }
}

/// Makes Redis agree with Postgres: every live held seat's key names its
/// hold with the remaining TTL. On the full pass (`since` = None), keys
/// of seats Postgres does not hold are deleted and seat maps dropped (they
/// are rebuilt on the next read). Returns the number of seats asserted.
pub async fn reassert(
    db: &PgPool,
    redis: &RedisPath,
    since: Option<chrono::DateTime<Utc>>,
) -> anyhow::Result<usize> {
    let now = Utc::now();
    let live = {
        let mut conn = db.acquire().await?;
        store::live_held_seats(&mut conn, now, since).await?
    };
    let mut pipe = redis::pipe();
    let mut wanted: HashSet<String> = HashSet::with_capacity(live.len());
    let mut shows = HashSet::new();
    for (show, label, hold, exp) in &live {
        let key = seat_key(shared::ShowId(*show), label);
        let ms = (*exp - now).num_milliseconds().max(1);
        pipe.cmd("SET")
            .arg(&key)
            .arg(hold.to_string())
            .arg("PX")
            .arg(ms)
            .ignore();
        wanted.insert(key);
        shows.insert(*show);
    }
    if since.is_none() {
        for key in redis.scan_keys("seat:{*").await? {
            if !wanted.contains(&key) {
                pipe.cmd("DEL").arg(&key).ignore();
            }
        }
        // Maps may have missed updates while Redis was unreachable.
        for key in redis.scan_keys("seatmap:{*").await? {
            pipe.cmd("DEL").arg(&key).ignore();
        }
    } else {
        for show in &shows {
            pipe.cmd("DEL")
                .arg(seatmap_key(shared::ShowId(*show)))
                .ignore();
        }
    }
    redis.recovery_pipe(pipe).await?;
    // A hold released or expired between our read and our writes must not
    // be resurrected in Redis (it would block a free seat until its TTL):
    // read again and take back what is no longer live. A release after
    // this read deletes its own keys, as it always does.
    let still: HashSet<(uuid::Uuid, String, uuid::Uuid)> = {
        let mut conn = db.acquire().await?;
        store::live_held_seats(&mut conn, Utc::now(), since)
            .await?
            .into_iter()
            .map(|(show, label, hold, _)| (show, label, hold))
            .collect()
    };
    let stale: Vec<(String, uuid::Uuid)> = live
        .iter()
        .filter(|(show, label, hold, _)| !still.contains(&(*show, label.clone(), *hold)))
        .map(|(show, label, hold, _)| (seat_key(shared::ShowId(*show), label), *hold))
        .collect();
    redis.release_each(&stale).await?;
    Ok(live.len())
}
