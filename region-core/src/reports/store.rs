//! The SQL of the operator's reads: a booking with its payment and
//! refund, a show's occupancy and bookings, sales rows, refunds needing
//! attention and payments not yet settled. Reads only, from Postgres (the
//! source of truth); the tables are owned by `bookings`, `holds`,
//! `checkout` and `refunds`.

use super::sales::{Figures, SalesRow};
use crate::bookings::store::BookingStatus;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// A booking's buyer and payment.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentFacts {
    /// The buyer (token subject).
    pub user_id: String,
    /// Payment id (also its gateway idempotency key).
    pub payment_id: Uuid,
    /// CREATED, SUCCEEDED, FAILED or ABANDONED.
    pub payment_status: String,
    /// The gateway's id of the charge.
    pub gateway_payment_id: Option<String>,
}

/// A booking's buyer and payment.
pub async fn payment_of(
    conn: &mut PgConnection,
    booking: Uuid,
) -> Result<Option<PaymentFacts>, sqlx::Error> {
    sqlx::query_as!(
        PaymentFacts,
        "SELECT b.user_id, p.id AS payment_id, p.status AS payment_status, p.gateway_payment_id
           FROM bookings b JOIN payments p ON p.id = b.payment_id
          WHERE b.id = $1",
        booking
    )
    .fetch_optional(conn)
    .await
}

/// A refund as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct RefundDetail {
    /// Refund id (also its gateway idempotency key).
    pub id: Uuid,
    /// PENDING, SUCCEEDED, FAILED or SETTLED_MANUALLY.
    pub status: String,
    /// cancellation, confirmation_failed or late_charge.
    pub reason: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Gateway calls that failed and were retried.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the worker tries next (PENDING).
    pub next_attempt_at: DateTime<Utc>,
    /// The gateway's (or the hand settlement's) reference.
    pub gateway_refund_id: Option<String>,
    /// The operator who settled it by hand.
    pub settled_by: Option<String>,
    /// When.
    pub settled_at: Option<DateTime<Utc>>,
    /// Their note.
    pub settle_note: Option<String>,
    /// The operator who last retried it.
    pub retried_by: Option<String>,
    /// When.
    pub retried_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The refund detail's select, ended by `$rest` (the macro checks whole
/// statements, so the ending is appended as a literal).
macro_rules! select_refund {
    ($rest:literal, $key:expr) => {
        sqlx::query_as!(
            RefundDetail,
            "SELECT id, status, reason, amount_minor, attempts, last_error, next_attempt_at,
                    gateway_refund_id, settled_by, settled_at, settle_note, retried_by,
                    retried_at, created_at, updated_at
               FROM refunds "
                + $rest,
            $key
        )
    };
}

/// A booking's refund, if it has one.
pub async fn refund_of(
    conn: &mut PgConnection,
    booking: Uuid,
) -> Result<Option<RefundDetail>, sqlx::Error> {
    select_refund!("WHERE booking_id = $1", booking)
        .fetch_optional(conn)
        .await
}

/// A refund by its id.
pub async fn refund(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<RefundDetail>, sqlx::Error> {
    select_refund!("WHERE id = $1", id)
        .fetch_optional(conn)
        .await
}

/// Whether a show exists.
pub async fn show_exists(conn: &mut PgConnection, show: Uuid) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM shows WHERE id = $1", show)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// A show's seats of one price category, by state now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every seat.
    pub total: i64,
    /// Free to hold (an expired hold the sweeper has not freed yet counts
    /// here: a new hold may take its seat).
    pub available: i64,
    /// Held by a hold that has not expired.
    pub held: i64,
    /// Booked.
    pub booked: i64,
    /// Out of sale by an operator (house seats, broken seats).
    pub blocked: i64,
}

/// One category's counts.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryCounts {
    /// Price category.
    pub category: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// A show's occupancy by price category, as of `now`.
pub async fn occupancy(
    conn: &mut PgConnection,
    show: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<CategoryCounts>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT s.category,
                  count(*) AS "total!",
                  count(*) FILTER (WHERE ss.status = 'AVAILABLE'
                                      OR (ss.status = 'HELD' AND ss.hold_expires_at <= $2))
                      AS "available!",
                  count(*) FILTER (WHERE ss.status = 'HELD' AND ss.hold_expires_at > $2)
                      AS "held!",
                  count(*) FILTER (WHERE ss.status = 'BOOKED') AS "booked!",
                  count(*) FILTER (WHERE ss.status = 'BLOCKED') AS "blocked!"
             FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
            WHERE ss.show_id = $1
            GROUP BY s.category ORDER BY s.category"#,
        show,
        now
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CategoryCounts {
            category: r.category,
            counts: Counts {
                total: r.total,
                available: r.available,
                held: r.held,
                booked: r.booked,
                blocked: r.blocked,
            },
        })
        .collect())
}

/// A booking in a show's list.
#[derive(Debug, Clone, Serialize)]
pub struct ShowBooking {
    /// Booking id.
    pub id: Uuid,
    /// Booking number.
    pub number: String,
    /// Buyer.
    pub user_id: String,
    /// CONFIRMED or CANCELLED.
    pub status: String,
    /// Seat labels, in seat order.
    pub seats: Vec<String>,
    /// Paid, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Its refund's status, if it has one.
    pub refund_status: Option<String>,
    /// Bought.
    pub created_at: DateTime<Utc>,
    /// Cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// Where a page of a show's bookings starts: after this booking.
pub async fn cursor_exists(
    conn: &mut PgConnection,
    show: Uuid,
    after: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM bookings WHERE id = $1 AND show_id = $2",
        after,
        show
    )
    .fetch_optional(conn)
    .await?
    .is_some())
}

/// Up to `limit` of a show's bookings (of `status`, if given), oldest
/// first, after the booking `after` (keyset on `(created_at, id)`).
pub async fn show_bookings(
    conn: &mut PgConnection,
    show: Uuid,
    status: Option<BookingStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ShowBooking>, sqlx::Error> {
    sqlx::query_as!(
        ShowBooking,
        r#"SELECT b.id, b.number, b.user_id, b.status, b.amount_minor, b.currency,
                  b.created_at, b.cancelled_at, r.status AS "refund_status?",
                  ARRAY(SELECT bs.label
                          FROM booking_seats bs
                          JOIN show_seats ss ON ss.show_id = bs.show_id AND ss.seat_id = bs.seat_id
                         WHERE bs.booking_id = b.id ORDER BY ss.ordinal) AS "seats!"
             FROM bookings b
             LEFT JOIN refunds r ON r.booking_id = b.id
            WHERE b.show_id = $1
              AND ($2::text IS NULL OR b.status = $2)
              AND ($3::uuid IS NULL
                   OR (b.created_at, b.id) > (SELECT a.created_at, a.id FROM bookings a
                                               WHERE a.id = $3))
            ORDER BY b.created_at, b.id
            LIMIT $4"#,
        show,
        status as Option<BookingStatus>,
        after,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Sales of bookings made on venue-local days `from..=to`, per day, show
/// and currency, with their refunds as they stand now.
pub async fn sales_rows(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
    cities: Option<&[String]>,
) -> Result<Vec<SalesRow>, sqlx::Error> {
    // The UTC bounds (a day wider on each side than any time zone's
    // offset) let the index on created_at find the candidates; the local
    // day decides. A booking has at most one refund (one per payment).
    let rows = sqlx::query!(
        r#"SELECT (b.created_at AT TIME ZONE v.time_zone)::date AS "day!",
                  b.show_id, m.title, sh.starts_at AS show_starts_at, b.currency,
                  count(*) AS "bookings!",
                  COALESCE(sum((SELECT count(*) FROM booking_seats bs
                                 WHERE bs.booking_id = b.id)), 0)::int8 AS "seats!",
                  COALESCE(sum(b.amount_minor), 0)::int8 AS "gross!",
                  count(*) FILTER (WHERE b.status = 'CANCELLED') AS "cancelled!",
                  COALESCE(sum(r.amount_minor)
                      FILTER (WHERE r.status IN ('SUCCEEDED', 'SETTLED_MANUALLY')), 0)::int8
                      AS "refunded!",
                  COALESCE(sum(r.amount_minor) FILTER (WHERE r.status = 'PENDING'), 0)::int8
                      AS "pending!",
                  COALESCE(sum(r.amount_minor) FILTER (WHERE r.status = 'FAILED'), 0)::int8
                      AS "failed!"
             FROM bookings b
             JOIN shows sh ON sh.id = b.show_id
             JOIN movies m ON m.id = sh.movie_id
             JOIN screens sc ON sc.id = sh.screen_id
             JOIN venues v ON v.id = sc.venue_id
             LEFT JOIN refunds r ON r.booking_id = b.id
            WHERE b.created_at >= (($1::date - 1)::timestamp AT TIME ZONE 'UTC')
              AND b.created_at < (($2::date + 2)::timestamp AT TIME ZONE 'UTC')
              AND (b.created_at AT TIME ZONE v.time_zone)::date BETWEEN $1 AND $2
              AND ($3::text[] IS NULL OR v.city_code = ANY($3))
            GROUP BY 1, b.show_id, m.title, sh.starts_at, b.currency"#,
        from,
        to,
        cities
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| SalesRow {
            day: r.day,
            show_id: r.show_id,
            title: r.title,
            show_starts_at: r.show_starts_at,
            currency: r.currency,
            figures: Figures {
                bookings_confirmed: r.bookings,
                seats_sold: r.seats,
                gross_minor: r.gross,
                bookings_cancelled: r.cancelled,
                refunded_minor: r.refunded,
                refunds_pending_minor: r.pending,
                refunds_failed_minor: r.failed,
                net_minor: r.gross - r.refunded,
            },
        })
        .collect())
}

/// A refund needing attention, with its booking.
#[derive(Debug, Clone, Serialize)]
pub struct AttentionRefund {
    /// Refund id.
    pub id: Uuid,
    /// PENDING or FAILED.
    pub status: String,
    /// Its booking (none for a checkout's compensation).
    pub booking_id: Option<Uuid>,
    /// That booking's number.
    pub booking_number: Option<String>,
    /// The payment refunded.
    pub payment_id: Uuid,
    /// cancellation, confirmation_failed or late_charge.
    pub reason: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Failed gateway calls so far.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the worker tries next (PENDING).
    pub next_attempt_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Seconds since it was created.
    pub age_seconds: i64,
}

/// Up to `limit` refunds in `statuses`, oldest first.
pub async fn refunds_in(
    conn: &mut PgConnection,
    statuses: &[String],
    cities: Option<&[String]>,
    limit: i64,
) -> Result<Vec<AttentionRefund>, sqlx::Error> {
    sqlx::query_as!(
        AttentionRefund,
        r#"SELECT r.id, r.status, r.booking_id, b.number AS "booking_number?", r.payment_id,
                  r.reason, r.amount_minor, p.currency, r.attempts, r.last_error,
                  r.next_attempt_at, r.created_at,
                  EXTRACT(EPOCH FROM now() - r.created_at)::int8 AS "age_seconds!"
             FROM refunds r
             JOIN payments p ON p.id = r.payment_id
             LEFT JOIN bookings b ON b.id = r.booking_id
            WHERE r.status = ANY($1)
              AND ($3::text[] IS NULL OR EXISTS (
                    SELECT 1 FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                      JOIN venues v ON v.id = sc.venue_id
                     WHERE sh.id = p.show_id AND v.city_code = ANY($3)))
            ORDER BY r.created_at, r.id
            LIMIT $2"#,
        statuses,
        limit,
        cities
    )
    .fetch_all(conn)
    .await
}

/// A payment not yet settled: in flight at the gateway (CREATED), or
/// charged and neither booked nor refunded. Reconciliation settles each.
#[derive(Debug, Clone, Serialize)]
pub struct UnsettledPayment {
    /// Payment id (also its gateway idempotency key and reference).
    pub id: Uuid,
    /// CREATED or SUCCEEDED.
    pub status: String,
    /// The show.
    pub show_id: Uuid,
    /// Its city.
    pub city: String,
    /// The hold paid for.
    pub hold_id: Uuid,
    /// The buyer.
    pub user_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// The gateway's id of the charge, once known.
    pub gateway_payment_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Seconds since it was created.
    pub age_seconds: i64,
}

/// Whether a payment exists (a page cursor).
pub async fn payment_exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM payments WHERE id = $1", id)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// Up to `limit` unsettled payments in `cities` (all: `None`), oldest
/// first, after the payment `after` (keyset on `(created_at, id)`).
pub async fn unsettled_payments(
    conn: &mut PgConnection,
    cities: Option<&[String]>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<UnsettledPayment>, sqlx::Error> {
    sqlx::query_as!(
        UnsettledPayment,
        r#"SELECT p.id, p.status, p.show_id, v.city_code AS city, p.hold_id, p.user_id,
                  p.amount_minor, p.currency, p.gateway_payment_id, p.created_at, p.updated_at,
                  EXTRACT(EPOCH FROM now() - p.created_at)::int8 AS "age_seconds!"
             FROM payments p
             JOIN shows sh ON sh.id = p.show_id
             JOIN screens sc ON sc.id = sh.screen_id
             JOIN venues v ON v.id = sc.venue_id
            WHERE (p.status = 'CREATED' OR (p.status = 'SUCCEEDED' AND p.settled IS NULL))
              AND ($1::text[] IS NULL OR v.city_code = ANY($1))
              AND ($2::uuid IS NULL
                   OR (p.created_at, p.id) > (SELECT a.created_at, a.id FROM payments a
                                               WHERE a.id = $2))
            ORDER BY p.created_at, p.id
            LIMIT $3"#,
        cities,
        after,
        limit
    )
    .fetch_all(conn)
    .await
}
