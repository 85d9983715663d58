//! Looks behind the API after a run: the no-double-booking invariant as
//! Postgres (the source of truth) sees it, for holds and for bookings, and
//! removal of the Redis keys the run created.

use anyhow::Context;
use redis::AsyncCommands;
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use uuid::Uuid;

/// What Postgres says about the seats of a set of shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeatAudit {
    /// (show, seat) pairs with more than one live `hold_seats` row.
    pub multi_live: i64,
    /// `show_seats` rows HELD by a hold that is not the seat's live
    /// `hold_seats` owner.
    pub held_not_owner: i64,
    /// Hold rows of these shows.
    pub holds: i64,
    /// Seats HELD in `show_seats`.
    pub seats_held: i64,
}

impl SeatAudit {
    /// Seats that are, or could be, double-booked: must be 0.
    pub fn double_booked(&self) -> i64 {
        self.multi_live + self.held_not_owner
    }
}

/// Audits the seats of `shows` in the database at `db_url`.
pub async fn audit_seats(db_url: &str, shows: &[Uuid]) -> anyhow::Result<SeatAudit> {
    let mut conn = PgConnection::connect(db_url)
        .await
        .context("connecting to the database to check for double bookings")?;
    let (multi_live, held_not_owner, holds, seats_held): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM (
               SELECT 1 FROM hold_seats
                WHERE live AND show_id = ANY($1)
                GROUP BY show_id, seat_id HAVING count(*) > 1) d),
           (SELECT count(*) FROM show_seats ss
             WHERE ss.show_id = ANY($1) AND ss.status = 'HELD'
               AND NOT EXISTS (
                   SELECT 1 FROM hold_seats hs
                    WHERE hs.show_id = ss.show_id AND hs.seat_id = ss.seat_id
                      AND hs.live AND hs.hold_id = ss.hold_id)),
           (SELECT count(*) FROM holds WHERE show_id = ANY($1)),
           (SELECT count(*) FROM show_seats WHERE show_id = ANY($1) AND status = 'HELD')",
    )
    .bind(shows)
    .fetch_one(&mut conn)
    .await
    .context("auditing seats")?;
    let _ = conn.close().await;
    Ok(SeatAudit {
        multi_live,
        held_not_owner,
        holds,
        seats_held,
    })
}

/// What Postgres says about the bookings of a set of shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct BookingAudit {
    /// (show, seat) pairs with more than one active `booking_seats` row.
    pub multi_active: i64,
    /// `show_seats` rows BOOKED for a booking that is not a confirmed
    /// booking actively holding that seat.
    pub booked_not_owner: i64,
    /// Active seats of confirmed bookings whose `show_seats` row is not
    /// BOOKED for that booking (free for someone else to take).
    pub owner_not_booked: i64,
    /// Bookings of these shows (confirmed or cancelled).
    pub bookings: i64,
    /// Of which cancelled.
    pub cancelled: i64,
    /// Seats BOOKED in `show_seats`.
    pub seats_booked: i64,
}

impl BookingAudit {
    /// Seats that are, or could be, sold twice: must be 0.
    pub fn double_booked(&self) -> i64 {
        self.multi_active + self.booked_not_owner + self.owner_not_booked
    }
}

/// Audits the bookings of `shows` in the database at `db_url`.
pub async fn audit_bookings(db_url: &str, shows: &[Uuid]) -> anyhow::Result<BookingAudit> {
    let mut conn = PgConnection::connect(db_url)
        .await
        .context("connecting to the database to check bookings")?;
    let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM (
               SELECT 1 FROM booking_seats
                WHERE active AND show_id = ANY($1)
                GROUP BY show_id, seat_id HAVING count(*) > 1) d),
           (SELECT count(*) FROM show_seats ss
             WHERE ss.show_id = ANY($1) AND ss.status = 'BOOKED'
               AND NOT EXISTS (
                   SELECT 1 FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
                    WHERE bs.show_id = ss.show_id AND bs.seat_id = ss.seat_id
                      AND bs.active AND bs.booking_id = ss.booking_id
                      AND b.status = 'CONFIRMED')),
           (SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
             WHERE bs.show_id = ANY($1) AND bs.active AND b.status = 'CONFIRMED'
               AND NOT EXISTS (
                   SELECT 1 FROM show_seats ss
                    WHERE ss.show_id = bs.show_id AND ss.seat_id = bs.seat_id
                      AND ss.status = 'BOOKED' AND ss.booking_id = bs.booking_id)),
           (SELECT count(*) FROM bookings WHERE show_id = ANY($1)),
           (SELECT count(*) FROM bookings WHERE show_id = ANY($1) AND status = 'CANCELLED'),
           (SELECT count(*) FROM show_seats WHERE show_id = ANY($1) AND status = 'BOOKED')",
    )
    .bind(shows)
    .fetch_one(&mut conn)
    .await
    .context("auditing bookings")?;
    let _ = conn.close().await;
    let (multi_active, booked_not_owner, owner_not_booked, bookings, cancelled, seats_booked) = row;
    Ok(BookingAudit {
        multi_active,
        booked_not_owner,
        owner_not_booked,
        bookings,
        cancelled,
        seats_booked,
    })
}

/// VACUUM ANALYZE the tables a run writes: new shows' rows get
/// statistics, hint bits and visibility-map bits, as autovacuum keeps them
/// in a long-running database (and autovacuum does not then arrive
/// mid-phase). Without it, statistics taken while one show (pgbench's,
/// 100,000 seats) filled the tables mislead the planner for the next
/// phase's queries.
pub async fn vacuum(db_url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(db_url).await?;
    sqlx::query(
        "VACUUM (ANALYZE) seats, show_seats, holds, hold_seats,
                          payments, bookings, booking_seats, refunds, idempotency_keys",
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
