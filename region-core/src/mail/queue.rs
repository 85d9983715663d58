//! The operators' side of the mail queue (`outgoing_mail`): messages by
//! state, kind, show and city (a message's booking, through its event
//! body, gives its show and city); failed messages put back in the queue;
//! a booking's confirmation queued again. Every write is audited in its
//! own transaction. The mail workers (`crate::mail`) send what is queued.

use crate::audit::store::{self as audit, Entry};
use crate::auth::Operator;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// A message of the queue as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Mail {
    /// The event it tells of (its key; the Message-ID is made from it).
    pub event_id: Uuid,
    /// `booking.confirmed`, `booking.cancelled` or `refund.succeeded`.
    pub kind: String,
    /// The buyer's address.
    pub recipient: String,
    /// pending, sent or failed.
    pub state: String,
    /// Sending attempts so far.
    pub attempts: i32,
    /// Of which refused for good (5xx) since it was last queued.
    pub permanent_failures: i32,
    /// The server's last answer, or why it could not be composed.
    pub last_error: Option<String>,
    /// When a pending message is tried next.
    pub next_attempt_at: DateTime<Utc>,
    /// When it went out.
    pub sent_at: Option<DateTime<Utc>>,
    /// Queued.
    pub created_at: DateTime<Utc>,
    /// Its booking.
    pub booking_id: Option<Uuid>,
    /// That booking's number.
    pub booking_number: Option<String>,
    /// Its show.
    pub show_id: Option<Uuid>,
    /// Its city.
    pub city: Option<String>,
}

/// Which messages to list.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    /// Only this state: pending, sent or failed.
    pub state: &'a str,
    /// Only this kind.
    pub kind: Option<&'a str>,
    /// Only this show's.
    pub show: Option<Uuid>,
    /// Only these cities' (all: `None`).
    pub cities: Option<&'a [String]>,
    /// Only older than this message (the previous page's last).
    pub after: Option<Uuid>,
    /// At most this many.
    pub limit: i64,
}

/// The message select, ended by `$rest` (the macro checks whole
/// statements). A body's booking id that is not a UUID names no booking.
macro_rules! select_mail {
    ($rest:literal, $($arg:expr),*) => {
        sqlx::query_as!(
            Mail,
            r#"SELECT m.event_id, m.kind, m.recipient, m.state, m.attempts,
                      m.permanent_failures, m.last_error, m.next_attempt_at, m.sent_at,
                      m.created_at, b.id AS "booking_id?", b.number AS "booking_number?",
                      b.show_id AS "show_id?", v.city_code AS "city?"
                 FROM outgoing_mail m
                 LEFT JOIN bookings b
                        ON b.id = CASE WHEN m.body ->> 'booking_id'
                                            ~ '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'
                                       THEN (m.body ->> 'booking_id')::uuid END
                 LEFT JOIN shows sh ON sh.id = b.show_id
                 LEFT JOIN screens sc ON sc.id = sh.screen_id
                 LEFT JOIN venues v ON v.id = sc.venue_id "#
                + $rest,
            $($arg),*
        )
    };
}

/// Messages matching `f`, newest first.
pub async fn list(conn: &mut PgConnection, f: Filter<'_>) -> Result<Vec<Mail>, sqlx::Error> {
    select_mail!(
        "WHERE m.state = $1
           AND ($2::text IS NULL OR m.kind = $2)
           AND ($3::uuid IS NULL OR b.show_id = $3)
           AND ($4::text[] IS NULL OR v.city_code = ANY($4))
           AND ($5::uuid IS NULL OR m.seq < (SELECT a.seq FROM outgoing_mail a WHERE a.event_id = $5))
         ORDER BY m.seq DESC
         LIMIT $6",
        f.state,
        f.kind,
        f.show,
        f.cities,
        f.after,
        f.limit
    )
    .fetch_all(conn)
    .await
}

/// One message.
pub async fn get(conn: &mut PgConnection, event_id: Uuid) -> Result<Option<Mail>, sqlx::Error> {
    select_mail!("WHERE m.event_id = $1", event_id)
        .fetch_optional(conn)
        .await
}

/// The messages `ids` that exist, locked for a re-send.
pub async fn lock(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Mail>, sqlx::Error> {
    select_mail!(
        "WHERE m.event_id = ANY($1) ORDER BY m.seq FOR UPDATE OF m",
        ids
    )
    .fetch_all(conn)
    .await
}

/// Up to `limit` failed messages (of `kind`, of `show`, in `cities`),
/// oldest first, locked for a re-send; rows another re-send holds are
/// skipped.
pub async fn lock_failed(
    conn: &mut PgConnection,
    kind: Option<&str>,
    show: Option<Uuid>,
    cities: Option<&[String]>,
    limit: i64,
) -> Result<Vec<Mail>, sqlx::Error> {
    select_mail!(
        "WHERE m.state = 'failed'
           AND ($1::text IS NULL OR m.kind = $1)
           AND ($2::uuid IS NULL OR b.show_id = $2)
           AND ($3::text[] IS NULL OR v.city_code = ANY($3))
         ORDER BY m.seq
         LIMIT $4
         FOR UPDATE OF m SKIP LOCKED",
        kind,
        show,
        cities,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Puts failed `rows` (locked by [`lock`] or [`lock_failed`]) back in the
/// queue, due now, with a fresh budget of permanent refusals; attempts and
/// the last error stay as history. One audit row each, on `conn` (the
/// caller's transaction).
pub async fn requeue(
    conn: &mut PgConnection,
    who: &Operator,
    rows: &[Mail],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    sqlx::query!(
        "UPDATE outgoing_mail SET state = 'pending', next_attempt_at = now(), permanent_failures = 0
          WHERE event_id = ANY($1) AND state = 'failed'",
        &ids
    )
    .execute(&mut *conn)
    .await?;
    for r in rows {
        let entry = Entry {
            action: "mail.resend",
            target_kind: "mail",
            target_id: r.event_id.to_string(),
            city: r.city.as_deref(),
            before: Some(serde_json::json!({
                "state": r.state, "kind": r.kind, "attempts": r.attempts,
                "last_error": r.last_error, "booking_id": r.booking_id,
            })),
            after: Some(serde_json::json!({ "state": "pending" })),
        };
        audit::record(conn, who, entry).await?;
    }
    Ok(())
}

/// A confirmation of `booking` still waiting to be sent, if any.
pub async fn pending_confirmation(
    conn: &mut PgConnection,
    booking: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT event_id FROM outgoing_mail
          WHERE body ->> 'booking_id' = $1 AND kind = 'booking.confirmed' AND state = 'pending'
          ORDER BY seq LIMIT 1",
        booking.to_string()
    )
    .fetch_optional(conn)
    .await
}

/// Queues `booking`'s confirmation again as a new message (`event_id`, a
/// new Message-ID: the earlier one may have been delivered, and mail
/// systems drop a second message with the same id), composed when sent
/// from the booking as it is then (its tickets signed with today's key).
/// `None` when the buyer's user id is not an e-mail address. Audited on
/// `conn` (the caller's transaction, which holds the booking's lock).
pub async fn queue_confirmation(
    conn: &mut PgConnection,
    who: &Operator,
    booking: Uuid,
    event_id: Uuid,
    city: Option<&str>,
) -> Result<Option<Uuid>, sqlx::Error> {
    let earlier = sqlx::query_scalar!(
        "SELECT event_id FROM outgoing_mail
          WHERE body ->> 'booking_id' = $1 AND kind = 'booking.confirmed'
          ORDER BY seq DESC LIMIT 1",
        booking.to_string()
    )
    .fetch_optional(&mut *conn)
    .await?;
    let queued = sqlx::query_scalar!(
        "INSERT INTO outgoing_mail (event_id, kind, recipient, body)
         SELECT $1, 'booking.confirmed', b.user_id,
                jsonb_build_object('booking_id', b.id, 'user_id', b.user_id,
                                   'resent_by', $3::text, 'resend_of', $4::uuid)
           FROM bookings b WHERE b.id = $2 AND is_mail_address(b.user_id)
         RETURNING event_id",
        event_id,
        booking,
        who.id,
        earlier
    )
    .fetch_optional(&mut *conn)
    .await?;
    if queued.is_some() {
        let entry = Entry {
            action: "booking.resend_confirmation",
            target_kind: "booking",
            target_id: booking.to_string(),
            city,
            before: Some(serde_json::json!({ "last_confirmation": earlier })),
            after: Some(serde_json::json!({ "event_id": event_id, "state": "pending" })),
        };
        audit::record(conn, who, entry).await?;
    }
    Ok(queued)
}
