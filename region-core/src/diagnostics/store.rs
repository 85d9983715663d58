//! The SQL of the operator's diagnostics: the shard's coordination rows
//! (leases, the Redis path, replicas' links), the backlogs of its
//! background work (outbox, sweeper, mail, money), shows kept overlapping,
//! and the seat consistency checks. Reads only; the tables are owned by
//! `lease`, `path_switch`, `outbox`, `sweeper`, `mail`, `checkout`,
//! `refunds`, `catalog`, `holds` and `bookings`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// A once-per-shard job's lease.
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    /// The job (`redis-path`, `reconcile`).
    pub job: String,
    /// The replica holding it.
    pub holder: String,
    /// Grows by one each time the lease changes hands (the fencing token).
    pub epoch: i64,
    /// When this holder took it.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Whether it has not lapsed (by the database's clock).
    pub live: bool,
}

/// Every lease of the shard.
pub async fn leases(conn: &mut PgConnection) -> Result<Vec<Lease>, sqlx::Error> {
    sqlx::query_as!(
        Lease,
        r#"SELECT job, holder, epoch, acquired_at, expires_at, expires_at > now() AS "live!"
             FROM shard_leases ORDER BY job"#
    )
    .fetch_all(conn)
    .await
}

/// The shard's hold path as last switched.
#[derive(Debug, Clone, Serialize)]
pub struct RedisPathRow {
    /// Even: the Redis fast path; odd: Postgres alone.
    pub generation: i64,
    /// When it last changed.
    pub changed_at: DateTime<Utc>,
    /// Which replica changed it (`migration` before any switch).
    pub changed_by: String,
    /// Why.
    pub reason: String,
}

/// The shard's hold path (one row, written by the migration).
pub async fn redis_path(conn: &mut PgConnection) -> Result<Option<RedisPathRow>, sqlx::Error> {
    sqlx::query_as!(
        RedisPathRow,
        "SELECT generation, changed_at, changed_by, reason FROM redis_path_state"
    )
    .fetch_optional(conn)
    .await
}

/// A replica's report of its link to Redis.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaLink {
    /// The replica.
    pub replica: String,
    /// Whether it reached Redis.
    pub ok: bool,
    /// When it last reported.
    pub seen_at: DateTime<Utc>,
    /// Whether the report is fresh enough to count (a stopped replica's
    /// report stops counting).
    pub counted: bool,
}

/// Every replica's last report; those older than `fresh_secs` are not
/// counted.
pub async fn replica_links(
    conn: &mut PgConnection,
    fresh_secs: f64,
) -> Result<Vec<ReplicaLink>, sqlx::Error> {
    sqlx::query_as!(
        ReplicaLink,
        r#"SELECT replica, ok, seen_at,
                  seen_at > now() - make_interval(secs => $1) AS "counted!"
             FROM replica_redis_links ORDER BY replica"#,
        fresh_secs
    )
    .fetch_all(conn)
    .await
}

/// Events not yet published by the outbox relay.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxBacklog {
    /// How many.
    pub unpublished: i64,
    /// Seconds since the oldest was written (null: none).
    pub oldest_seconds: Option<f64>,
}

/// The outbox's backlog.
pub async fn outbox_backlog(conn: &mut PgConnection) -> Result<OutboxBacklog, sqlx::Error> {
    sqlx::query_as!(
        OutboxBacklog,
        r#"SELECT count(*) AS "unpublished!",
                  EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_seconds
             FROM outbox WHERE published_at IS NULL"#
    )
    .fetch_one(conn)
    .await
}

/// Held seats whose hold has ended but which the sweeper has not freed.
#[derive(Debug, Clone, Serialize)]
pub struct SweeperBacklog {
    /// Every such seat (a new hold may take them meanwhile).
    pub expired_held_seats: i64,
    /// Those ended more than `overdue_after_seconds` ago: the sweeper is
    /// behind (it runs every second).
    pub overdue_seats: i64,
    /// The threshold of `overdue_seats`.
    pub overdue_after_seconds: f64,
    /// When the oldest one's hold ended (null: none).
    pub oldest_expired_at: Option<DateTime<Utc>>,
}

/// The sweeper's backlog; `overdue_secs` is what counts as behind.
pub async fn sweeper_backlog(
    conn: &mut PgConnection,
    overdue_secs: f64,
) -> Result<SweeperBacklog, sqlx::Error> {
    sqlx::query_as!(
        SweeperBacklog,
        r#"SELECT count(*) AS "expired_held_seats!",
                  count(*) FILTER (WHERE hold_expires_at <= now() - make_interval(secs => $1))
                      AS "overdue_seats!",
                  $1::float8 AS "overdue_after_seconds!",
                  min(hold_expires_at) AS oldest_expired_at
             FROM show_seats
            WHERE status = 'HELD' AND hold_expires_at <= now()"#,
        overdue_secs
    )
    .fetch_one(conn)
    .await
}

/// E-mail not sent yet, and given up.
#[derive(Debug, Clone, Serialize)]
pub struct MailBacklog {
    /// Waiting to be sent (or retried).
    pub pending: i64,
    /// Given up (the server refused them): an operator's to re-send.
    pub failed: i64,
    /// Seconds since the oldest waiting one was queued (null: none).
    pub oldest_pending_seconds: Option<f64>,
}

/// The mail queue's backlog.
pub async fn mail_backlog(conn: &mut PgConnection) -> Result<MailBacklog, sqlx::Error> {
    sqlx::query_as!(
        MailBacklog,
        r#"SELECT count(*) FILTER (WHERE state = 'pending') AS "pending!",
                  count(*) FILTER (WHERE state = 'failed') AS "failed!",
                  EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE state = 'pending'))::float8
                      AS oldest_pending_seconds
             FROM outgoing_mail WHERE state IN ('pending', 'failed')"#
    )
    .fetch_one(conn)
    .await
}

/// Money on its way: charges not yet booked or refunded, refunds not yet
/// sent.
#[derive(Debug, Clone, Serialize)]
pub struct MoneyBacklog {
    /// Payments in flight (CREATED) or charged and not settled: each ends
    /// as a booking or a refund within a reconciliation pass.
    pub payments_unsettled: i64,
    /// Seconds since the oldest of them was created (null: none).
    pub oldest_unsettled_seconds: Option<f64>,
    /// Refunds the worker is sending (or backing off).
    pub refunds_pending: i64,
    /// Refunds the gateway refused: an operator's to retry or settle.
    pub refunds_failed: i64,
}

/// The money backlog.
pub async fn money_backlog(conn: &mut PgConnection) -> Result<MoneyBacklog, sqlx::Error> {
    sqlx::query_as!(
        MoneyBacklog,
        r#"SELECT p.n AS "payments_unsettled!", p.oldest AS oldest_unsettled_seconds,
                  r.pending AS "refunds_pending!", r.failed AS "refunds_failed!"
             FROM (SELECT count(*) AS n,
                          EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest
                     FROM payments
                    WHERE status = 'CREATED' OR (status = 'SUCCEEDED' AND settled IS NULL)) p,
                  (SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending,
                          count(*) FILTER (WHERE status = 'FAILED') AS failed
                     FROM refunds WHERE status IN ('PENDING', 'FAILED')) r"#
    )
    .fetch_one(conn)
    .await
}

/// A show kept when the overlap constraint came because it overlapped
/// another on its screen (`overlap_checked = false`).
#[derive(Debug, Clone, Serialize)]
pub struct Overlap {
    /// The show.
    pub show_id: Uuid,
    /// Its city.
    pub city: String,
    /// Its venue.
    pub venue_id: Uuid,
    /// The venue's name.
    pub venue: String,
    /// Its screen.
    pub screen_id: Uuid,
    /// The screen's name.
    pub screen: String,
    /// What plays.
    pub title: String,
    /// Starts.
    pub starts_at: DateTime<Utc>,
    /// Ends (start + the movie's duration).
    pub ends_at: DateTime<Utc>,
    /// SCHEDULED or CANCELLED.
    pub status: String,
    /// The shows of the same screen it overlaps now (empty: resolved).
    pub overlaps_with: Vec<Uuid>,
}

/// Every unchecked show in `cities` (all: `None`), by screen and start.
pub async fn overlaps(
    conn: &mut PgConnection,
    cities: Option<&[String]>,
) -> Result<Vec<Overlap>, sqlx::Error> {
    sqlx::query_as!(
        Overlap,
        r#"SELECT sh.id AS show_id, v.city_code AS city, v.id AS venue_id, v.name AS venue,
                  sc.id AS screen_id, sc.name AS screen, m.title, sh.starts_at, sh.ends_at,
                  sh.status,
                  ARRAY(SELECT o.id FROM shows o
                         WHERE o.screen_id = sh.screen_id AND o.id <> sh.id
                           AND tstzrange(o.starts_at, o.ends_at) && tstzrange(sh.starts_at, sh.ends_at)
                         ORDER BY o.starts_at, o.id) AS "overlaps_with!"
             FROM shows sh
             JOIN screens sc ON sc.id = sh.screen_id
             JOIN venues v ON v.id = sc.venue_id
             JOIN movies m ON m.id = sh.movie_id
            WHERE NOT sh.overlap_checked AND ($1::text[] IS NULL OR v.city_code = ANY($1))
            ORDER BY sc.id, sh.starts_at, sh.id"#,
        cities
    )
    .fetch_all(conn)
    .await
}

/// What the consistency checks read: one show, or the shows of some
/// cities (all of them when both are `None`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Only this show.
    pub show: Option<Uuid>,
    /// Only these cities' shows.
    pub cities: Option<&'a [String]>,
    /// At most this many rows per check.
    pub limit: i64,
}

/// A seat in two or more unexpired ACTIVE holds: a double hold.
#[derive(Debug, Clone, Serialize)]
pub struct DoubleHold {
    /// The show.
    pub show_id: Uuid,
    /// The seat.
    pub seat: String,
    /// The holds, oldest first.
    pub holds: Vec<Uuid>,
}

/// Check 1: seats in two or more unexpired ACTIVE holds, by the holds
/// table (not by the `live` flag the unique index guards).
pub async fn double_holds(
    conn: &mut PgConnection,
    scope: Scope<'_>,
) -> Result<Vec<DoubleHold>, sqlx::Error> {
    sqlx::query_as!(
        DoubleHold,
        r#"SELECT hs.show_id, s.label AS seat,
                  array_agg(h.id ORDER BY h.created_at, h.id) AS "holds!"
             FROM hold_seats hs
             JOIN holds h ON h.id = hs.hold_id
             JOIN seats s ON s.id = hs.seat_id
            WHERE h.state = 'ACTIVE' AND h.expires_at > now()
              AND ($1::uuid IS NULL OR hs.show_id = $1)
              AND ($2::text[] IS NULL OR hs.show_id IN (
                    SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
            GROUP BY hs.show_id, hs.seat_id, s.label
           HAVING count(*) > 1
            ORDER BY hs.show_id, s.label
            LIMIT $3"#,
        scope.show,
        scope.cities,
        scope.limit
    )
    .fetch_all(conn)
    .await
}

/// A seat whose row and live `hold_seats` row disagree about its holder.
#[derive(Debug, Clone, Serialize)]
pub struct HolderMismatch {
    /// The show.
    pub show_id: Uuid,
    /// The seat.
    pub seat: String,
    /// Its status in `show_seats`.
    pub status: String,
    /// The hold `show_seats` names.
    pub show_seats_says: Option<Uuid>,
    /// The hold of the seat's live `hold_seats` row.
    pub hold_seats_says: Option<Uuid>,
}

/// Check 2: HELD with no live hold or another one, or a live hold on a
/// seat that is not HELD. (Two index-friendly halves: HELD seats, then
/// live hold rows.)
pub async fn holder_mismatches(
    conn: &mut PgConnection,
    scope: Scope<'_>,
) -> Result<Vec<HolderMismatch>, sqlx::Error> {
    sqlx::query_as!(
        HolderMismatch,
        r#"SELECT ss.show_id AS "show_id!", s.label AS "seat!", ss.status AS "status!",
                  ss.hold_id AS "show_seats_says?", hs.hold_id AS "hold_seats_says?"
             FROM show_seats ss
             JOIN seats s ON s.id = ss.seat_id
             LEFT JOIN hold_seats hs
                    ON hs.show_id = ss.show_id AND hs.seat_id = ss.seat_id AND hs.live
            WHERE ss.status = 'HELD' AND ss.hold_id IS DISTINCT FROM hs.hold_id
              AND ($1::uuid IS NULL OR ss.show_id = $1)
              AND ($2::text[] IS NULL OR ss.show_id IN (
                    SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
           UNION ALL
           SELECT ss.show_id, s.label, ss.status, ss.hold_id, hs.hold_id
             FROM hold_seats hs
             JOIN show_seats ss ON ss.show_id = hs.show_id AND ss.seat_id = hs.seat_id
             JOIN seats s ON s.id = ss.seat_id
            WHERE hs.live AND ss.status <> 'HELD'
              AND ($1::uuid IS NULL OR hs.show_id = $1)
              AND ($2::text[] IS NULL OR hs.show_id IN (
                    SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
            ORDER BY 1, 2
            LIMIT $3"#,
        scope.show,
        scope.cities,
        scope.limit
    )
    .fetch_all(conn)
    .await
}

/// A hold that owns some but not all of its seats, or owns seats while
/// not active.
#[derive(Debug, Clone, Serialize)]
pub struct PartialHold {
    /// The hold.
    pub hold_id: Uuid,
    /// Its show.
    pub show_id: Uuid,
    /// ACTIVE, RELEASED, EXPIRED or CONSUMED.
    pub state: String,
    /// The seats it was taken for.
    pub seat_count: i32,
    /// The seats it owns now (live `hold_seats` rows).
    pub live_seats: i64,
}

/// Check 3, all-or-nothing: an unexpired ACTIVE hold that does not own
/// exactly its `seat_count` seats, or a hold that is not ACTIVE and still
/// owns seats.
pub async fn partial_holds(
    conn: &mut PgConnection,
    scope: Scope<'_>,
) -> Result<Vec<PartialHold>, sqlx::Error> {
    sqlx::query_as!(
        PartialHold,
        r#"SELECT h.id AS "hold_id!", h.show_id AS "show_id!", h.state AS "state!",
                  h.seat_count AS "seat_count!", l.n AS "live_seats!"
             FROM holds h
             CROSS JOIN LATERAL (SELECT count(*) AS n FROM hold_seats hs
                                  WHERE hs.hold_id = h.id AND hs.live) l
            WHERE h.state = 'ACTIVE' AND h.expires_at > now() AND l.n <> h.seat_count
              AND ($1::uuid IS NULL OR h.show_id = $1)
              AND ($2::text[] IS NULL OR h.show_id IN (
                    SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
           UNION ALL
           SELECT h.id, h.show_id, h.state, h.seat_count, count(*)
             FROM hold_seats hs JOIN holds h ON h.id = hs.hold_id
            WHERE hs.live AND h.state <> 'ACTIVE'
              AND ($1::uuid IS NULL OR hs.show_id = $1)
              AND ($2::text[] IS NULL OR hs.show_id IN (
                    SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
            GROUP BY h.id
            ORDER BY 2, 1
            LIMIT $3"#,
        scope.show,
        scope.cities,
        scope.limit
    )
    .fetch_all(conn)
    .await
}

/// A seat whose `show_seats` row and confirmed bookings disagree.
#[derive(Debug, Clone, Serialize)]
pub struct BookingMismatch {
    /// The show.
    pub show_id: Uuid,
    /// The seat.
    pub seat: String,
    /// `two_active_bookings` (sold twice), `booked_without_booking` (the
    /// seat is BOOKED for a booking that does not hold it, or is not
    /// confirmed) or `booking_seat_not_booked` (a confirmed booking's seat
    /// is not BOOKED for it: free for someone else).
    pub problem: String,
    /// Its status in `show_seats`.
    pub status: String,
    /// The booking `show_seats` names.
    pub show_seats_says: Option<Uuid>,
    /// The bookings whose active seat it is.
    pub bookings_say: Vec<Uuid>,
}

/// Check 4, the booking side of invariant 1: a seat in two active
/// bookings, or `show_seats` and the confirmed bookings disagreeing.
pub async fn booking_mismatches(
    conn: &mut PgConnection,
    scope: Scope<'_>,
) -> Result<Vec<BookingMismatch>, sqlx::Error> {
    sqlx::query_as!(
        BookingMismatch,
        r#"SELECT d.show_id AS "show_id!", s.label AS "seat!",
                  'two_active_bookings' AS "problem!", ss.status AS "status!",
                  ss.booking_id AS "show_seats_says?", d.bookings AS "bookings_say!"
             FROM (SELECT show_id, seat_id, array_agg(booking_id ORDER BY booking_id) AS bookings
                     FROM booking_seats
                    WHERE active
                      AND ($1::uuid IS NULL OR show_id = $1)
                      AND ($2::text[] IS NULL OR show_id IN (
                            SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                              JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
                    GROUP BY show_id, seat_id HAVING count(*) > 1) d
             JOIN show_seats ss ON ss.show_id = d.show_id AND ss.seat_id = d.seat_id
             JOIN seats s ON s.id = d.seat_id
           UNION ALL
           SELECT ss.show_id, s.label, 'booked_without_booking', ss.status, ss.booking_id,
                  ARRAY(SELECT bs.booking_id FROM booking_seats bs
                         WHERE bs.show_id = ss.show_id AND bs.seat_id = ss.seat_id AND bs.active
                         ORDER BY bs.booking_id)
             FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
            WHERE ss.status = 'BOOKED'
              AND NOT EXISTS (
                    SELECT 1 FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
                     WHERE bs.show_id = ss.show_id AND bs.seat_id = ss.seat_id AND bs.active
                       AND bs.booking_id = ss.booking_id AND b.status = 'CONFIRMED')
              AND ($1::uuid IS NULL OR ss.show_id = $1)
              AND ($2::text[] IS NULL OR ss.show_id IN (
                    SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
           UNION ALL
           SELECT bs.show_id, s.label, 'booking_seat_not_booked', ss.status, ss.booking_id,
                  ARRAY[bs.booking_id]
             FROM booking_seats bs
             JOIN bookings b ON b.id = bs.booking_id
             JOIN show_seats ss ON ss.show_id = bs.show_id AND ss.seat_id = bs.seat_id
             JOIN seats s ON s.id = bs.seat_id
            WHERE bs.active AND b.status = 'CONFIRMED'
              AND NOT (ss.status = 'BOOKED' AND ss.booking_id = bs.booking_id)
              AND ($1::uuid IS NULL OR bs.show_id = $1)
              AND ($2::text[] IS NULL OR bs.show_id IN (
                    SELECT sh.id FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id WHERE v.city_code = ANY($2)))
            ORDER BY 1, 2
            LIMIT $3"#,
        scope.show,
        scope.cities,
        scope.limit
    )
    .fetch_all(conn)
    .await
}

/// One seat of a show as Postgres has it now, for the comparison with
/// Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRow {
    /// The seat's label (its Redis key's last part).
    pub label: String,
    /// AVAILABLE, HELD, BOOKED or BLOCKED.
    pub status: String,
    /// The hold of a HELD seat.
    pub hold_id: Option<Uuid>,
    /// Whether that hold has not expired.
    pub unexpired: Option<bool>,
    /// The booking of a BOOKED seat.
    pub booking_id: Option<Uuid>,
}

/// Every seat of `show`, in seat order.
pub async fn seats_of(conn: &mut PgConnection, show: Uuid) -> Result<Vec<SeatRow>, sqlx::Error> {
    sqlx::query_as!(
        SeatRow,
        r#"SELECT s.label, ss.status, ss.hold_id, ss.hold_expires_at > now() AS unexpired,
                  ss.booking_id
             FROM show_seats ss
             JOIN seats s ON s.id = ss.seat_id
            WHERE ss.show_id = $1
            ORDER BY ss.ordinal"#,
        show
    )
    .fetch_all(conn)
    .await
}
