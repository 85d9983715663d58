//! The seat invariants, read behind the API (invariants 1 and 2 in
//! docs/architecture.md: *a seat belongs to at most one live hold and at
//! most one confirmed booking*; *a hold owns all its seats or none*), as
//! Postgres, the source of truth, sees them, and whether Redis agrees.
//!
//! One checker for the end-to-end tests (which assert every count is zero,
//! and whose negative controls assert it sees a break) and the benchmarks
//! (which report it). Each check can be scoped to some shows: a benchmark
//! against a deployment's database must not count other shows' rows.

use anyhow::Context;
use redis::AsyncCommands;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// Which shows a check reads.
#[derive(Debug, Clone, Copy)]
pub enum Shows<'a> {
    /// Every show of the database (a test's own database).
    All,
    /// Only these.
    Only(&'a [Uuid]),
}

impl Shows<'_> {
    /// The `$1` of the statements: NULL reads every show.
    fn bind(&self) -> Option<Vec<Uuid>> {
        match self {
            Shows::All => None,
            Shows::Only(ids) => Some(ids.to_vec()),
        }
    }
}

/// The holds side; every violation count must be zero.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// (show, seat) pairs in more than one live hold. Invariant 1.
    pub double_live_holds: i64,
    /// Seat rows whose holder disagrees with the live `hold_seats` rows
    /// (either way).
    pub owner_mismatch: i64,
    /// Holds that own some but not all of their seats, or own seats while
    /// not active. Invariant 2.
    pub partial_holds: i64,
    /// Live held seats whose Redis key does not name their hold.
    pub redis_missing: usize,
    /// Redis seat keys naming a hold that does not own the seat.
    pub redis_extra: usize,
}

/// How many holds and held seats there are (not violations: what a
/// benchmark compares with what it was told).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldCounts {
    /// Hold rows.
    pub holds: i64,
    /// Seats HELD in `show_seats`.
    pub seats_held: i64,
}

impl Report {
    /// True when Postgres alone is consistent.
    pub fn postgres_ok(&self) -> bool {
        self.double_live_holds == 0 && self.owner_mismatch == 0 && self.partial_holds == 0
    }

    /// Seats that are, or could be, held twice.
    pub fn double_held(&self) -> i64 {
        self.double_live_holds + self.owner_mismatch
    }
}

/// Checks the holds side in Postgres.
pub async fn check_postgres(db: &PgPool, shows: Shows<'_>) -> anyhow::Result<Report> {
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM (SELECT 1 FROM hold_seats
                                   WHERE live AND ($1::uuid[] IS NULL OR show_id = ANY($1))
                                   GROUP BY show_id, seat_id HAVING count(*) > 1) x),
           (SELECT count(*) FROM hold_seats hs JOIN show_seats ss USING (show_id, seat_id)
             WHERE hs.live AND ($1::uuid[] IS NULL OR hs.show_id = ANY($1))
               AND (ss.status <> 'HELD' OR ss.hold_id <> hs.hold_id))
         + (SELECT count(*) FROM show_seats ss
             WHERE ss.status = 'HELD' AND ($1::uuid[] IS NULL OR ss.show_id = ANY($1))
               AND NOT EXISTS (SELECT 1 FROM hold_seats hs
                                WHERE hs.live AND hs.hold_id = ss.hold_id
                                  AND hs.show_id = ss.show_id AND hs.seat_id = ss.seat_id)),
           (SELECT count(*) FROM holds h
             WHERE ($1::uuid[] IS NULL OR h.show_id = ANY($1))
               AND ((h.state = 'ACTIVE' AND h.expires_at > now()
                     AND h.seat_count <> (SELECT count(*) FROM hold_seats hs
                                           WHERE hs.hold_id = h.id AND hs.live))
                 OR (h.state <> 'ACTIVE'
                     AND EXISTS (SELECT 1 FROM hold_seats hs WHERE hs.hold_id = h.id AND hs.live))))",
    )
    .bind(shows.bind())
    .fetch_one(db)
    .await
    .context("checking the holds invariants")?;
    let (double_live_holds, owner_mismatch, partial_holds) = row;
    Ok(Report {
        double_live_holds,
        owner_mismatch,
        partial_holds,
        ..Report::default()
    })
}

/// Counts holds and held seats.
pub async fn count_holds(db: &PgPool, shows: Shows<'_>) -> anyhow::Result<HoldCounts> {
    let (holds, seats_held): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM holds WHERE $1::uuid[] IS NULL OR show_id = ANY($1)),
                (SELECT count(*) FROM show_seats
                  WHERE status = 'HELD' AND ($1::uuid[] IS NULL OR show_id = ANY($1)))",
    )
    .bind(shows.bind())
    .fetch_one(db)
    .await
    .context("counting holds")?;
    Ok(HoldCounts { holds, seats_held })
}

/// Checks Postgres, and that Redis agrees with it for `shows`: every live
/// held seat's key names its hold, and no key names another hold or a
/// booking the seat is not booked for.
pub async fn check(db: &PgPool, redis_url: &str, shows: &[String]) -> anyhow::Result<Report> {
    let mut report = check_postgres(db, Shows::All).await?;
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    for show in shows {
        let show_id = Uuid::parse_str(show)?;
        let held: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT s.label, ss.hold_id FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
              WHERE ss.show_id = $1 AND ss.status = 'HELD' AND ss.hold_expires_at > now()",
        )
        .bind(show_id)
        .fetch_all(db)
        .await?;
        let pg: HashMap<String, String> = held
            .into_iter()
            .map(|(label, hold)| (format!("seat:{{{show}}}:{label}"), hold.to_string()))
            .collect();
        // A booked seat's key says `booked:<booking>` (the fast path refuses
        // it like a held one). One may be missing (Postgres refuses the
        // seat anyway), but one naming any other booking is extra.
        let booked: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT s.label, ss.booking_id FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
              WHERE ss.show_id = $1 AND ss.status = 'BOOKED'",
        )
        .bind(show_id)
        .fetch_all(db)
        .await?;
        let pg_booked: HashMap<String, String> = booked
            .into_iter()
            .map(|(label, booking)| {
                (
                    format!("seat:{{{show}}}:{label}"),
                    format!("booked:{booking}"),
                )
            })
            .collect();
        let keys: Vec<String> = conn.keys(format!("seat:{{{show}}}:*")).await?;
        let mut redis_map = HashMap::new();
        for k in keys {
            let v: Option<String> = conn.get(&k).await?;
            if let Some(v) = v {
                redis_map.insert(k, v);
            }
        }
        report.redis_missing += pg
            .iter()
            .filter(|(k, v)| redis_map.get(*k) != Some(*v))
            .count();
        report.redis_extra += redis_map
            .iter()
            .filter(|(k, v)| pg.get(*k) != Some(*v) && pg_booked.get(*k) != Some(*v))
            .count();
    }
    Ok(report)
}

/// The bookings side.
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
    /// Bookings (confirmed or cancelled).
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

/// Audits the bookings side.
pub async fn audit_bookings(db: &PgPool, shows: Shows<'_>) -> anyhow::Result<BookingAudit> {
    let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM (
               SELECT 1 FROM booking_seats
                WHERE active AND ($1::uuid[] IS NULL OR show_id = ANY($1))
                GROUP BY show_id, seat_id HAVING count(*) > 1) d),
           (SELECT count(*) FROM show_seats ss
             WHERE ($1::uuid[] IS NULL OR ss.show_id = ANY($1)) AND ss.status = 'BOOKED'
               AND NOT EXISTS (
                   SELECT 1 FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
                    WHERE bs.show_id = ss.show_id AND bs.seat_id = ss.seat_id
                      AND bs.active AND bs.booking_id = ss.booking_id
                      AND b.status = 'CONFIRMED')),
           (SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
             WHERE ($1::uuid[] IS NULL OR bs.show_id = ANY($1)) AND bs.active
               AND b.status = 'CONFIRMED'
               AND NOT EXISTS (
                   SELECT 1 FROM show_seats ss
                    WHERE ss.show_id = bs.show_id AND ss.seat_id = bs.seat_id
                      AND ss.status = 'BOOKED' AND ss.booking_id = bs.booking_id)),
           (SELECT count(*) FROM bookings WHERE $1::uuid[] IS NULL OR show_id = ANY($1)),
           (SELECT count(*) FROM bookings
             WHERE ($1::uuid[] IS NULL OR show_id = ANY($1)) AND status = 'CANCELLED'),
           (SELECT count(*) FROM show_seats
             WHERE ($1::uuid[] IS NULL OR show_id = ANY($1)) AND status = 'BOOKED')",
    )
    .bind(shows.bind())
    .fetch_one(db)
    .await
    .context("auditing bookings")?;
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

/// A pool of one connection to `db_url`, for a benchmark's audit.
pub async fn connect(db_url: &str) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(db_url)
        .await
        .context("connecting to the database to audit it")
}
