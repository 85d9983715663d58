//! Brings the Redis fast path back after an outage. While the breaker is
//! open, holds are written to Postgres alone; before the fast path is used
//! again, Redis must know every live hold, or a fast-path request could
//! take a seat Redis forgot (Postgres would still refuse it, but as a
//! late conflict). [`reassert`] makes Redis agree with Postgres; the
//! shard's path switch (`crate::path_switch`) calls it when it switches
//! back. [`run`] is a replica recovering on its own breaker (probe,
//! re-assert, close, re-assert once more for holds written in between),
//! used only in the negative control without the switch.

use crate::holds::store;
use crate::redis_path::{seat_key, RedisPath};
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
/// hold with the remaining TTL (and, on the full pass, every booked
/// seat's key names its booking). On the full pass (`since` = None), keys
/// of seats Postgres does not hold are deleted and seat maps dropped (they
/// are rebuilt on the next read). Returns the number of seats asserted.
/// Seat keys go where the seat locks live (with Redlock, every lock
/// server that answers); seat maps stay on the shard's Redis.
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
    let mut locks = redis::pipe();
    let mut maps = redis::pipe();
    let mut wanted: HashSet<String> = HashSet::with_capacity(live.len());
    let mut shows = HashSet::new();
    for seat in &live {
        let key = seat_key(shared::ShowId(seat.show_id), &seat.label);
        let ms = (seat.hold_expires_at - now).num_milliseconds().max(1);
        locks
            .cmd("SET")
            .arg(&key)
            .arg(seat.hold_id.to_string())
            .arg("PX")
            .arg(ms)
            .ignore();
        wanted.insert(key);
        shows.insert(seat.show_id);
    }
    if since.is_none() {
        full_pass(db, redis, now, (&mut locks, &mut maps), &mut wanted).await?;
        // Last in the batch: each lock server it reaches holds every live
        // lock again, so one that had restarted empty may grant at once.
        if redis.redlock().is_some() {
            crate::redlock::Redlock::mark_reasserted(&mut locks);
        }
    } else {
        for show in &shows {
            RedisPath::seatmap_drop_into(&mut maps, shared::ShowId(*show));
        }
    }
    redis.recovery_lock_pipe(locks).await?;
    redis.recovery_pipe(maps).await?;
    take_back_released(db, redis, since, &live).await?;
    Ok(live.len())
}

/// The full pass's extra work, into `locks`: booked seats' keys set (they
/// stay taken in the fast path too), keys of this shard's seats Postgres
/// does not name deleted; into `maps`: its seat maps dropped.
async fn full_pass(
    db: &PgPool,
    redis: &RedisPath,
    now: chrono::DateTime<Utc>,
    (locks, maps): (&mut redis::Pipeline, &mut redis::Pipeline),
    wanted: &mut HashSet<String>,
) -> anyhow::Result<()> {
    // Booked seats stay taken in the fast path too.
    let booked = {
        let mut conn = db.acquire().await?;
        crate::bookings::store::booked_seats(&mut conn, now).await?
    };
    for seat in &booked {
        let key = seat_key(shared::ShowId(seat.show_id), &seat.label);
        let ms = (seat.starts_at + chrono::Duration::hours(6) - now)
            .num_milliseconds()
            .max(1);
        locks
            .cmd("SET")
            .arg(&key)
            .arg(crate::redis_path::booked_value(seat.booking_id))
            .arg("PX")
            .arg(ms)
            .ignore();
        wanted.insert(key);
    }
    // A Redis may be shared with other shards (or test runs): only
    // keys of shows in this shard's database are ours to delete.
    let seat_keys = redis.scan_lock_keys("seat:{*").await?;
    let map_keys = redis.scan_keys("seatmap:{*").await?;
    let ours = own_shows(db, seat_keys.iter().chain(&map_keys)).await?;
    let is_ours = |key: &str| show_of_key(key).is_some_and(|s| ours.contains(&s));
    for key in seat_keys.iter().filter(|k| is_ours(k)) {
        if !wanted.contains(key) {
            locks.cmd("DEL").arg(key).ignore();
        }
    }
    // Maps may have missed updates while Redis was unreachable: dropped,
    // with a resync notice to their live viewers. (The scan also finds the
    // maps' change counters, `seatmap:{<show>}:seq`, which stay.)
    let map_shows: HashSet<uuid::Uuid> = map_keys
        .iter()
        .filter(|k| is_ours(k))
        .filter_map(|k| show_of_key(k))
        .collect();
    for show in map_shows {
        RedisPath::seatmap_drop_into(maps, shared::ShowId(show));
    }
    Ok(())
}

/// A hold released or expired between our read and our writes must not
/// be resurrected in Redis (it would block a free seat until its TTL):
/// read again and take back what is no longer live. A release after this
/// read deletes its own keys, as it always does.
async fn take_back_released(
    db: &PgPool,
    redis: &RedisPath,
    since: Option<chrono::DateTime<Utc>>,
    live: &[store::HeldSeat],
) -> anyhow::Result<()> {
    let still: HashSet<(uuid::Uuid, String, uuid::Uuid)> = {
        let mut conn = db.acquire().await?;
        store::live_held_seats(&mut conn, Utc::now(), since)
            .await?
            .into_iter()
            .map(|s| (s.show_id, s.label, s.hold_id))
            .collect()
    };
    let stale: Vec<(String, uuid::Uuid)> = live
        .iter()
        .filter(|s| !still.contains(&(s.show_id, s.label.clone(), s.hold_id)))
        .map(|s| (seat_key(shared::ShowId(s.show_id), &s.label), s.hold_id))
        .collect();
    redis.release_each(&stale).await?;
    Ok(())
}

/// The show id in a key's hash tag (`seat:{<show>}:A5`, `seatmap:{<show>}`).
fn show_of_key(key: &str) -> Option<uuid::Uuid> {
    let (_, rest) = key.split_once('{')?;
    let (id, _) = rest.split_once('}')?;
    uuid::Uuid::parse_str(id).ok()
}

/// Which of the shows named by `keys` live in this shard's database.
async fn own_shows<'a>(
    db: &PgPool,
    keys: impl Iterator<Item = &'a String>,
) -> Result<HashSet<uuid::Uuid>, sqlx::Error> {
    let named: HashSet<uuid::Uuid> = keys.filter_map(|k| show_of_key(k)).collect();
    if named.is_empty() {
        return Ok(HashSet::new());
    }
    let named: Vec<uuid::Uuid> = named.into_iter().collect();
    let rows = sqlx::query_scalar!("SELECT id FROM shows WHERE id = ANY($1)", &named)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::show_of_key;

    #[test]
    fn show_ids_come_from_the_hash_tag() {
        let id = "01a22050-4c5e-717a-9605-cc121276a339";
        assert_eq!(
            show_of_key(&format!("seat:{{{id}}}:A5")).map(|u| u.to_string()),
            Some(id.into())
        );
        assert_eq!(
            show_of_key(&format!("seatmap:{{{id}}}")).map(|u| u.to_string()),
            Some(id.into())
        );
        assert_eq!(show_of_key("seat:{nope}:A5"), None);
        assert_eq!(show_of_key("other"), None);
    }
}
