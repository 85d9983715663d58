//! SQL of the `bookings` and `booking_seats` tables: confirming a hold
//! into a booking, cancelling one, and loading the buyer's view.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use shared::api::{BookedSeat, Booking, BookingStatus, RefundView};
use shared::booking_number::BookingNumber;
use shared::refund::RefundPolicy;
use shared::ShowId;
use sqlx::{PgConnection, Postgres, Transaction};
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

/// Turns the hold's seats into a confirmed booking: booking row (with the
/// show's refund policy as of now), its seats, seats BOOKED, the hold
/// CONSUMED. The caller has locked the seat rows and the hold.
///
/// `protect = false` (the tests' negative control only) books every seat
/// the hold was created with, whoever holds or owns it now.
pub async fn insert_confirmed(
    tx: &mut Transaction<'_, Postgres>,
    b: &NewBooking,
    protect: bool,
) -> Result<(), sqlx::Error> {
    // Which seats: those still HELD by this hold (fencing), or, unprotected,
    // every seat the hold named. Read once, then every write below is a
    // primary-key lookup (no subquery for the planner to misjudge).
    let which = if protect {
        "SELECT seat_id FROM show_seats WHERE show_id = $1 AND hold_id = $2 AND status = 'HELD'"
    } else {
        "SELECT seat_id FROM hold_seats WHERE show_id = $1 AND hold_id = $2"
    };
    let seat_ids: Vec<Uuid> = sqlx::query_scalar(which)
        .bind(b.show_id)
        .bind(b.hold_id)
        .fetch_all(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO bookings (id, number, show_id, hold_id, payment_id, user_id, amount_minor,
                               currency, refund_policy, show_starts_at)
         SELECT $1, $2, sh.id, $3, $4, $5, $6, $7, sh.refund_policy, sh.starts_at
           FROM shows sh WHERE sh.id = $8",
    )
    .bind(b.id)
    .bind(b.number.as_str())
    .bind(b.hold_id)
    .bind(b.payment_id)
    .bind(&b.user_id)
    .bind(b.amount_minor)
    .bind(&b.currency)
    .bind(b.show_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO booking_seats (booking_id, show_id, seat_id, label, category, price_minor)
         SELECT $1, sh.id, s.id, s.label, s.category, (sh.prices ->> s.category)::bigint
           FROM seats s, shows sh
          WHERE sh.id = $2 AND s.id = ANY($3)",
    )
    .bind(b.id)
    .bind(b.show_id)
    .bind(&seat_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE show_seats
            SET status = 'BOOKED', booking_id = $1, hold_id = NULL, hold_expires_at = NULL,
                version = version + 1
          WHERE show_id = $2 AND seat_id = ANY($3)",
    )
    .bind(b.id)
    .bind(b.show_id)
    .bind(&seat_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE hold_seats SET live = false WHERE hold_id = $1 AND live")
        .bind(b.hold_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE holds SET state = 'CONSUMED', updated_at = now() WHERE id = $1")
        .bind(b.hold_id)
        .execute(&mut **tx)
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

type HeadRow = (
    Uuid,
    String,
    Uuid,
    String,
    Uuid,
    i64,
    sqlx::types::Json<RefundPolicy>,
    DateTime<Utc>,
);

fn head_from(r: HeadRow) -> BookingHead {
    BookingHead {
        id: r.0,
        user_id: r.1,
        show_id: r.2,
        status: BookingStatus::from_db_str(&r.3).unwrap_or(BookingStatus::Cancelled),
        payment_id: r.4,
        amount_minor: r.5,
        refund_policy: r.6 .0,
        show_starts_at: r.7,
    }
}

const HEAD_SELECT: &str = "SELECT id, user_id, show_id, status, payment_id, amount_minor, refund_policy, show_starts_at FROM bookings";

/// Finds a booking by id or number (`for_update` locks it).
pub async fn head(
    conn: &mut PgConnection,
    id: &BookingRef,
    for_update: bool,
) -> Result<Option<BookingHead>, sqlx::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let row: Option<HeadRow> = match id {
        BookingRef::Id(id) => {
            sqlx::query_as(&format!("{HEAD_SELECT} WHERE id = $1{lock}"))
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
        BookingRef::Number(n) => {
            sqlx::query_as(&format!("{HEAD_SELECT} WHERE number = $1{lock}"))
                .bind(n.as_str())
                .fetch_optional(conn)
                .await?
        }
    };
    Ok(row.map(head_from))
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
    tx: &mut Transaction<'_, Postgres>,
    booking: &BookingHead,
    refund_minor: i64,
    now: DateTime<Utc>,
) -> Result<Vec<(i32, String)>, sqlx::Error> {
    sqlx::query(
        "UPDATE bookings SET status = 'CANCELLED', cancelled_at = $2, refund_minor = $3, updated_at = now()
          WHERE id = $1 AND status = 'CONFIRMED'",
    )
    .bind(booking.id)
    .bind(now)
    .bind(refund_minor)
    .execute(&mut **tx)
    .await?;
    let freed: Vec<(i32, String)> = sqlx::query_as(
        "WITH freed AS (
             UPDATE show_seats SET status = 'AVAILABLE', booking_id = NULL, version = version + 1
              WHERE show_id = $2 AND booking_id = $1
          RETURNING seat_id, ordinal)
         SELECT f.ordinal, s.label FROM freed f JOIN seats s ON s.id = f.seat_id ORDER BY f.ordinal",
    )
    .bind(booking.id)
    .bind(booking.show_id)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("UPDATE booking_seats SET active = false WHERE booking_id = $1 AND active")
        .bind(booking.id)
        .execute(&mut **tx)
        .await?;
    Ok(freed)
}

type ViewRow = (
    Uuid,
    String,
    String,
    Uuid,
    String,
    String,
    DateTime<Utc>,
    String,
    i64,
    String,
    Uuid,
    sqlx::types::Json<RefundPolicy>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const VIEW_SELECT: &str = "
    SELECT b.id, b.number, b.status, b.show_id, m.title, v.name, b.show_starts_at, v.time_zone,
           b.amount_minor, b.currency, b.payment_id, b.refund_policy, b.created_at, b.cancelled_at
      FROM bookings b
      JOIN shows sh ON sh.id = b.show_id
      JOIN movies m ON m.id = sh.movie_id
      JOIN screens sc ON sc.id = sh.screen_id
      JOIN venues v ON v.id = sc.venue_id";

/// The buyer's view of one booking.
pub async fn load_view(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Booking>> {
    let row: Option<ViewRow> = sqlx::query_as(&format!("{VIEW_SELECT} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(view_from(conn, r).await?)),
        None => Ok(None),
    }
}

/// A user's bookings, newest first.
pub async fn list_for_user(
    conn: &mut PgConnection,
    user: &str,
    limit: i64,
) -> anyhow::Result<Vec<Booking>> {
    let rows: Vec<ViewRow> = sqlx::query_as(&format!(
        "{VIEW_SELECT} WHERE b.user_id = $1 ORDER BY b.created_at DESC, b.id DESC LIMIT $2"
    ))
    .bind(user)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(view_from(conn, r).await?);
    }
    Ok(out)
}

async fn view_from(conn: &mut PgConnection, r: ViewRow) -> anyhow::Result<Booking> {
    let seats: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT bs.label, bs.category, bs.price_minor
           FROM booking_seats bs
           JOIN show_seats ss ON ss.show_id = bs.show_id AND ss.seat_id = bs.seat_id
          WHERE bs.booking_id = $1 ORDER BY ss.ordinal",
    )
    .bind(r.0)
    .fetch_all(&mut *conn)
    .await?;
    let refund: Option<(Uuid, i64, String, String)> = sqlx::query_as(
        "SELECT id, amount_minor, status, reason FROM refunds WHERE booking_id = $1",
    )
    .bind(r.0)
    .fetch_optional(&mut *conn)
    .await?;
    let tz: Tz =
        r.7.parse()
            .map_err(|_| anyhow::anyhow!("venue has invalid time zone {:?}", r.7))?;
    Ok(Booking {
        id: r.0,
        number: BookingNumber::parse(&r.1)?,
        status: BookingStatus::from_db_str(&r.2)
            .ok_or_else(|| anyhow::anyhow!("unknown booking status {:?}", r.2))?,
        show_id: ShowId(r.3),
        title: r.4,
        venue_name: r.5,
        show_starts_at: r.6,
        show_starts_at_local: r.6.with_timezone(&tz).to_rfc3339(),
        time_zone: r.7,
        seats: seats
            .into_iter()
            .map(|(label, category, price_minor)| BookedSeat {
                label,
                category,
                price_minor,
            })
            .collect(),
        amount_minor: r.8,
        currency: r.9,
        payment_id: r.10,
        refund_policy: r.11 .0,
        created_at: r.12,
        cancelled_at: r.13,
        refund: refund.map(|(id, amount_minor, status, reason)| RefundView {
            id,
            amount_minor,
            status,
            reason,
        }),
    })
}

/// Booked seats of shows not yet long over: (show, label, booking, show
/// start). Recovery re-asserts them in Redis after an outage.
pub async fn booked_seats(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, String, Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ss.show_id, s.label, ss.booking_id, sh.starts_at
           FROM show_seats ss
           JOIN seats s ON s.id = ss.seat_id
           JOIN shows sh ON sh.id = ss.show_id
          WHERE ss.status = 'BOOKED' AND sh.starts_at > $1 - interval '6 hours'",
    )
    .bind(now)
    .fetch_all(conn)
    .await
}
