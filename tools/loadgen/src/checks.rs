//! Housekeeping behind the API: VACUUM between phases, and removal of the
//! Redis keys a run created. (The invariant checks are the test kit's:
//! `testkit::invariants`.)

use anyhow::Context;
use redis::AsyncCommands;
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use uuid::Uuid;

/// VACUUM ANALYZE the tables a run writes: new shows' rows get
/// statistics, hint bits and visibility-map bits, as autovacuum keeps them
/// in a long-running database (and autovacuum does not then arrive
/// mid-phase). Without it, statistics taken while one show (pgbench's,
/// 100,000 seats) filled the tables mislead the planner for the next
/// phase's queries. Every table the purchase path writes is listed: one
/// left out (`webhook_events` was) keeps whatever autovacuum saw in the
/// warm-up's first second, and its lookup by key was planned as a
/// sequential scan of a table that then grew by 500 rows a second.
pub async fn vacuum(db_url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(db_url).await?;
    sqlx::query(
        "VACUUM (ANALYZE) seats, show_seats, holds, hold_seats, payments, bookings,
                          booking_seats, refunds, idempotency_keys, outbox, notifications,
                          spent_passes, webhook_events",
    )
    .execute(&mut conn)
    .await
    .context("VACUUM (ANALYZE) before a phase")?;
    let _ = conn.close().await;
    Ok(())
}

/// Deletes every key matching `pattern` for which `keep_if` is true
/// (SCAN + UNLINK, never KEYS, so a shared Redis is never blocked).
/// Returns how many were deleted.
pub async fn delete_keys(
    redis_url: &str,
    pattern: &str,
    select: impl Fn(&str) -> bool,
) -> anyhow::Result<u64> {
    let client = redis::Client::open(redis_url).context("LOADGEN_REDIS_URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis for cleanup")?;
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(5000)
            .query_async(&mut conn)
            .await?;
        let ours: Vec<&String> = keys.iter().filter(|k| select(k)).collect();
        if !ours.is_empty() {
            let n: u64 = conn.unlink(&ours).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// The hash tag of a key (`seat:{<show>}:A5` -> `<show>`).
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = open + key[open..].find('}')?;
    Some(&key[open + 1..close])
}

/// Deletes the seat keys and seat maps of `shows` (one SCAN for all).
pub async fn delete_show_keys(redis_url: &str, shows: &[Uuid]) -> anyhow::Result<u64> {
    let ours: HashSet<String> = shows.iter().map(Uuid::to_string).collect();
    delete_keys(redis_url, "seat*", |k| {
        hash_tag(k).is_some_and(|t| ours.contains(t))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_are_found() {
        assert_eq!(hash_tag("seat:{abc}:A5"), Some("abc"));
        assert_eq!(hash_tag("seatmap:{abc}"), Some("abc"));
        assert_eq!(hash_tag("seat:abc"), None);
    }
}
