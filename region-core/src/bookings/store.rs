//! SQL of the `bookings` and `booking_seats` tables: confirming a hold
//! into a booking, cancelling one, and loading the buyer's view.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use shared::api::{self, BookedSeat, Booking, RefundView};
use shared::booking_number::BookingNumber;
use shared::refund::RefundPolicy;
use shared::ShowId;
use sqlx::types::Json;
use sqlx::PgConnection;
use std::collections::HashMap;
use uuid::Uuid;

/// A booking about to be confirmed.
#[derive(Debug, Clone)]
pub struct NewBooking {
    /// Booking id (UUID v7).
    pub id: Uuid,
    /// Human-readable number.
    pub number: BookingNumber,
    /// Show.
    pub show_id: Uuid,
    /// The hold it consumes (its seats must be HELD by it, locked).
    pub hold_id: Uuid,
    /// The payment that paid for it.
    pub payment_id: Uuid,
    /// Buyer.
    pub user_id: String,
    /// Total paid.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
}

/// A booking's status (the `bookings.status` column). The API spells it
/// [`api::BookingStatus`]; this is how the column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    /// Paid and confirmed; the seats are the buyer's.
    Confirmed,
    /// Cancelled; the seats are free again.
    Cancelled,
}

impl From<BookingStatus> for api::BookingStatus {
    fn from(s: BookingStatus) -> Self {
        match s {
            BookingStatus::Confirmed => api::BookingStatus::Confirmed,
            BookingStatus::Cancelled => api::BookingStatus::Cancelled,
        }
    }
}

/// The seats a hold was created with (the negative control books them
/// whoever holds or owns them now).
pub async fn hold_seat_ids(
    conn: &mut PgConnection,
    show: Uuid,
    hold: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT seat_id FROM hold_seats WHERE show_id = $1 AND hold_id = $2",
        show,
        hold
    )
    .fetch_all(&mut *conn)
    .await
}

/// Turns `seat_ids` (the hold's seats, locked by the caller, who also
/// locked the hold) into a confirmed booking: booking row (with the
/// show's refund policy as of now), its seats, seats BOOKED, the hold
/// CONSUMED.
pub async fn insert_confirmed(
    tx: &mut PgConnection,
    b: &NewBooking,
    seat_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO bookings (id, number, show_id, hold_id, payment_id, user_id, amount_minor,
                               currency, refund_policy, show_starts_at)
         SELECT $1, $2, sh.id, $3, $4, $5, $6, $7, sh.refund_policy, sh.starts_at
           FROM shows sh WHERE sh.id = $8",
        b.id,
        b.number.as_str(),
        b.hold_id,
        b.payment_id,
        &b.user_id,
        b.amount_minor,
        &b.currency,
        b.show_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO booking_seats (booking_id, show_id, seat_id, label, category, price_minor)
         SELECT $1, sh.id, s.id, s.label, s.category,
                COALESCE(hs.price_minor, (sh.prices ->> s.category)::bigint)
           FROM seats s JOIN shows sh ON sh.id = $2
           LEFT JOIN hold_seats hs ON hs.hold_id = $4 AND hs.seat_id = s.id
          WHERE s.id = ANY($3)",
        b.id,
        b.show_id,
        seat_ids,
        b.hold_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE show_seats
            SET status = 'BOOKED', booking_id = $1, hold_id = NULL, hold_expires_at = NULL,
                version = version + 1
          WHERE show_id = $2 AND seat_id = ANY($3)",
        b.id,
        b.show_id,
        seat_ids
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE hold_seats SET live = false WHERE hold_id = $1 AND live",
        b.hold_id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE holds SET state = 'CONSUMED', updated_at = now() WHERE id = $1",
        b.hold_id
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The facts of a booking that cancellation decides on.
#[derive(Debug, Clone)]
pub struct BookingHead {
    /// Booking id.
    pub id: Uuid,
    /// Buyer.
    pub user_id: String,
    /// Show.
    pub show_id: Uuid,
    /// Status.
    pub status: BookingStatus,
    /// The payment behind it.
    pub payment_id: Uuid,
    /// Total paid.
    pub amount_minor: i64,
    /// Policy fixed at purchase.
    pub refund_policy: RefundPolicy,
    /// Show start, UTC.
    pub show_starts_at: DateTime<Utc>,
}

/// A `bookings` row as [`head`] reads it.
struct HeadRow {
    id: Uuid,
    user_id: String,
    show_id: Uuid,
    status: BookingStatus,
    payment_id: Uuid,
    amount_minor: i64,
    refund_policy: Json<RefundPolicy>,
    show_starts_at: DateTime<Utc>,
}

impl From<HeadRow> for BookingHead {
    fn from(r: HeadRow) -> Self {
        BookingHead {
            id: r.id,
            user_id: r.user_id,
            show_id: r.show_id,
            status: r.status,
            payment_id: r.payment_id,
            amount_minor: r.amount_minor,
            refund_policy: r.refund_policy.0,
            show_starts_at: r.show_starts_at,
        }
    }
}

/// Finds a booking by id or number (`for_update` locks it).
pub async fn head(
    conn: &mut PgConnection,
    id: &BookingRef,
    for_update: bool,
) -> Result<Option<BookingHead>, sqlx::Error> {
    // One select list, four endings (which key, whether locked): the macro
    // checks whole statements, so each ending is appended as a literal.
    macro_rules! select_head {
        ($rest:literal, $key:expr) => {
            sqlx::query_as!(
                HeadRow,
                r#"SELECT id, user_id, show_id, status AS "status: BookingStatus", payment_id,
                          amount_minor, refund_policy AS "refund_policy: Json<RefundPolicy>",
                          show_starts_at
                     FROM bookings "#
                    + $rest,
                $key
            )
            .fetch_optional(conn)
            .await?
        };
    }
    let row = match (id, for_update) {
        (BookingRef::Id(id), false) => select_head!("WHERE id = $1", id),
        (BookingRef::Id(id), true) => select_head!("WHERE id = $1 FOR UPDATE", id),
        (BookingRef::Number(n), false) => select_head!("WHERE number = $1", n.as_str()),
        (BookingRef::Number(n), true) => {
            select_head!("WHERE number = $1 FOR UPDATE", n.as_str())
        }
    };
    Ok(row.map(BookingHead::from))
}

/// How a path names a booking: its UUID or its booking number.
#[derive(Debug, Clone)]
pub enum BookingRef {
    /// Internal id.
    Id(Uuid),
    /// Human-readable number.
    Number(BookingNumber),
}

/// Cancels a confirmed booking: status, refund amount, seats freed.
/// Returns the freed ordinals and labels. The caller has locked the row.
pub async fn cancel(
    tx: &mut PgConnection,
    booking: &BookingHead,
    refund_minor: i64,
    now: DateTime<Utc>,
) -> Result<Vec<(i32, String)>, sqlx::Error> {
    sqlx::query!(
        "UPDATE bookings SET status = 'CANCELLED', cancelled_at = $2, refund_minor = $3, updated_at = now()
          WHERE id = $1 AND status = 'CONFIRMED'",
        booking.id,
        now,
        refund_minor
    )
    .execute(&mut *tx)
    .await?;
    let freed = sqlx::query!(
        "WITH freed AS (
             UPDATE show_seats SET status = 'AVAILABLE', booking_id = NULL, version = version + 1
              WHERE show_id = $2 AND booking_id = $1
          RETURNING seat_id, ordinal)
         SELECT f.ordinal, s.label FROM freed f JOIN seats s ON s.id = f.seat_id ORDER BY f.ordinal",
        booking.id,
        booking.show_id
    )
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE booking_seats SET active = false WHERE booking_id = $1 AND active",
        booking.id
    )
    .execute(&mut *tx)
    .await?;
    Ok(freed.into_iter().map(|f| (f.ordinal, f.label)).collect())
}

/// A booking with its show, movie and venue, as the buyer's view needs it
/// (read here, or returned by the statement that wrote it: checkout's
/// batch confirmation).
pub struct ViewRow {
    pub id: Uuid,
    pub number: String,
    pub status: BookingStatus,
    pub show_id: Uuid,
    pub title: String,
    pub venue_name: String,
    pub show_starts_at: DateTime<Utc>,
    pub time_zone: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_id: Uuid,
    pub refund_policy: Json<RefundPolicy>,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// The buyer's view's select (its joins), ended by `$rest`: the macro
/// checks whole statements, so the ending is appended as a literal.
macro_rules! select_view {
    ($rest:literal, $($arg:expr),+) => {
        sqlx::query_as!(
            ViewRow,
            r#"SELECT b.id, b.number, b.status AS "status: BookingStatus", b.show_id, m.title,
                      v.name AS venue_name, b.show_starts_at, v.time_zone, b.amount_minor,
                      b.currency, b.payment_id,
                      b.refund_policy AS "refund_policy: Json<RefundPolicy>", b.created_at,
                      b.cancelled_at
                 FROM bookings b
                 JOIN shows sh ON sh.id = b.show_id
                 JOIN movies m ON m.id = sh.movie_id
                 JOIN screens sc ON sc.id = sh.screen_id
                 JOIN venues v ON v.id = sc.venue_id
                "# + $rest,
            $($arg),+
        )
    };
}

/// The buyer's view of one booking.
pub async fn load_view(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Booking>> {
    let rows = select_view!("WHERE b.id = $1", id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(views_from(conn, rows).await?.pop())
}

/// A user's bookings, newest first.
pub async fn list_for_user(
    conn: &mut PgConnection,
    user: &str,
    limit: i64,
) -> anyhow::Result<Vec<Booking>> {
    let rows = select_view!(
        "WHERE b.user_id = $1 ORDER BY b.created_at DESC, b.id DESC LIMIT $2",
        user,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    views_from(conn, rows).await
}

/// A booked seat with its booking, as [`views_from`] reads them.
struct SeatRow {
    booking_id: Uuid,
    label: String,
    category: String,
    price_minor: i64,
}

/// A refund with its booking, as [`views_from`] reads them.
struct RefundRow {
    booking_id: Uuid,
    id: Uuid,
    amount_minor: i64,
    status: String,
    reason: String,
}

/// Completes booking rows with their seats and refunds: two statements
/// for all of them, the rows' order kept.
async fn views_from(conn: &mut PgConnection, rows: Vec<ViewRow>) -> anyhow::Result<Vec<Booking>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let seat_rows = sqlx::query_as!(
        SeatRow,
        "SELECT bs.booking_id, bs.label, bs.category, bs.price_minor
           FROM booking_seats bs
           JOIN show_seats ss ON ss.show_id = bs.show_id AND ss.seat_id = bs.seat_id
          WHERE bs.booking_id = ANY($1) ORDER BY bs.booking_id, ss.ordinal",
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let refund_rows = sqlx::query_as!(
        RefundRow,
        r#"SELECT booking_id AS "booking_id!", id, amount_minor, status, reason
             FROM refunds WHERE booking_id = ANY($1)"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut seats: HashMap<Uuid, Vec<BookedSeat>> = HashMap::new();
    for s in seat_rows {
        seats.entry(s.booking_id).or_default().push(BookedSeat {
            label: s.label,
            category: s.category,
            price_minor: s.price_minor,
        });
    }
    let mut refunds: HashMap<Uuid, RefundView> = refund_rows
        .into_iter()
        .map(|r| {
            let view = RefundView {
                id: r.id,
                amount_minor: r.amount_minor,
                status: r.status,
                reason: r.reason,
            };
            (r.booking_id, view)
        })
        .collect();
    rows.into_iter()
        .map(|r| {
            let (seats, refund) = (
                seats.remove(&r.id).unwrap_or_default(),
                refunds.remove(&r.id),
            );
            view_of(r, seats, refund)
        })
        .collect()
}

/// The buyer's view of a booking row with its seats and refund.
pub fn view_of(
    r: ViewRow,
    seats: Vec<BookedSeat>,
    refund: Option<RefundView>,
) -> anyhow::Result<Booking> {
    let tz: Tz = r
        .time_zone
        .parse()
        .map_err(|_| anyhow::anyhow!("venue has invalid time zone {:?}", r.time_zone))?;
    Ok(Booking {
        id: r.id,
        number: BookingNumber::parse(&r.number)?,
        status: r.status.into(),
        show_id: ShowId(r.show_id),
        title: r.title,
        venue_name: r.venue_name,
        show_starts_at: r.show_starts_at,
        show_starts_at_local: r.show_starts_at.with_timezone(&tz).to_rfc3339(),
        time_zone: r.time_zone,
        seats,
        amount_minor: r.amount_minor,
        currency: r.currency,
        payment_id: r.payment_id,
        refund_policy: r.refund_policy.0,
        created_at: r.created_at,
        cancelled_at: r.cancelled_at,
        refund,
    })
}

/// A booked seat of a show not yet long over, as Redis must know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookedSeatKey {
    /// Show id.
    pub show_id: Uuid,
    /// Seat label.
    pub label: String,
    /// The booking that has it.
    pub booking_id: Uuid,
    /// The show's start.
    pub starts_at: DateTime<Utc>,
}

/// Booked seats of shows not yet long over. Recovery re-asserts them in
/// Redis after an outage.
pub async fn booked_seats(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<BookedSeatKey>, sqlx::Error> {
    // A BOOKED row always names its booking (the table's CHECK).
    sqlx::query_as!(
        BookedSeatKey,
        r#"SELECT ss.show_id, s.label, ss.booking_id AS "booking_id!", sh.starts_at
             FROM show_seats ss
             JOIN seats s ON s.id = ss.seat_id
             JOIN shows sh ON sh.id = ss.show_id
            WHERE ss.status = 'BOOKED' AND sh.starts_at > $1::timestamptz - interval '6 hours'"#,
        now
    )
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booking_statuses_are_spelled_as_the_column_allows_and_map_to_the_api() {
        let all = [BookingStatus::Confirmed, BookingStatus::Cancelled];
        let spelled: Vec<String> = all.map(crate::db::spelling).into();
        assert_eq!(spelled, ["CONFIRMED", "CANCELLED"]);
        let api: Vec<api::BookingStatus> = all.map(api::BookingStatus::from).into();
        assert_eq!(
            api,
            [api::BookingStatus::Confirmed, api::BookingStatus::Cancelled]
        );
    }
}
