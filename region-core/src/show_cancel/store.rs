//! SQL of show cancellation: the show's status (`shows.status`), the job
//! row (`show_cancellations`), and one batch of the job's work (holds
//! released, bookings cancelled with full refunds and their events).
//!
//! Why the show row's lock: a cancellation takes it `FOR UPDATE` before
//! it marks the show; every writer of a hold or booking reads the status
//! `FOR KEY SHARE` ([`lock_cancelled`]; for bookings, a trigger of the
//! migration as the last line) in the transaction that writes. The two conflict,
//! so each such write either commits before the cancellation starts (and
//! the job finds it) or sees the show cancelled.

use crate::bookings::store::{self as bookings, BookingRef};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The job's status (the `show_cancellations.status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Work remains (or refunds are still on their way).
    Running,
    /// Every booking cancelled, every hold released, every refund sent
    /// (or failed, for an operator).
    Done,
}

/// A `show_cancellations` row.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Job id.
    pub id: Uuid,
    /// The show.
    pub show_id: Uuid,
    /// RUNNING or DONE.
    pub status: JobStatus,
    /// Why (the operator's words; the buyers' e-mail quotes them).
    pub reason: String,
    /// The operator who asked.
    pub requested_by: String,
    /// When the show was marked cancelled.
    pub started_at: DateTime<Utc>,
    /// When the job finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Bookings this job cancelled so far.
    pub bookings_cancelled: i32,
    /// Holds this job released so far.
    pub holds_released: i32,
}

/// The shows among `shows` that are cancelled, their rows locked
/// `FOR KEY SHARE` until the caller's transaction ends: a cancellation
/// cannot begin meanwhile, and one being committed is waited for.
pub async fn lock_cancelled(
    conn: &mut PgConnection,
    shows: &[Uuid],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if shows.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = sqlx::query!(
        "SELECT id, status FROM shows WHERE id = ANY($1) ORDER BY id FOR KEY SHARE",
        shows
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.status == "CANCELLED")
        .map(|r| r.id)
        .collect())
}

/// Whether `show` is cancelled (a plain read).
pub async fn is_cancelled(conn: &mut PgConnection, show: Uuid) -> Result<bool, sqlx::Error> {
    let status = sqlx::query_scalar!("SELECT status FROM shows WHERE id = $1", show)
        .fetch_optional(conn)
        .await?;
    Ok(status.as_deref() == Some("CANCELLED"))
}

/// The cancellation of `show`, if there is one.
pub async fn job_of_show(conn: &mut PgConnection, show: Uuid) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        r#"SELECT id, show_id, status AS "status: JobStatus", reason, requested_by, started_at,
                  finished_at, bookings_cancelled, holds_released
             FROM show_cancellations WHERE show_id = $1"#,
        show
    )
    .fetch_optional(conn)
    .await
}

/// What [`start`] found.
#[derive(Debug)]
pub enum Started {
    /// The show was cancelled now by this job.
    New(Job),
    /// The show was cancelled before: its job, unchanged.
    Existing(Job),
}

/// Marks `show` cancelled and records its job, in the caller's
/// transaction (which appends the audit row and commits). The show row
/// is locked `FOR UPDATE` first, so this waits for every transaction
/// writing a hold or booking of the show; `started_at` is read after
/// that, so every booking of the show was created before it.
pub async fn start(
    conn: &mut PgConnection,
    show: Uuid,
    reason: &str,
    who: &str,
) -> Result<Started, sqlx::Error> {
    sqlx::query!("SELECT id FROM shows WHERE id = $1 FOR UPDATE", show)
        .fetch_one(&mut *conn)
        .await?;
    if let Some(job) = job_of_show(conn, show).await? {
        return Ok(Started::Existing(job));
    }
    sqlx::query!(
        "UPDATE shows SET status = 'CANCELLED', cancelled_at = clock_timestamp() WHERE id = $1",
        show
    )
    .execute(&mut *conn)
    .await?;
    let job = sqlx::query_as!(
        Job,
        r#"INSERT INTO show_cancellations (id, show_id, reason, requested_by, started_at)
           VALUES ($1, $2, $3, $4, clock_timestamp())
           RETURNING id, show_id, status AS "status: JobStatus", reason, requested_by, started_at,
                     finished_at, bookings_cancelled, holds_released"#,
        Uuid::now_v7(),
        show,
        reason,
        who
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Started::New(job))
}

/// Claims one RUNNING job for a batch: its row locked until the caller's
/// transaction ends, `SKIP LOCKED` so replicas work on different shows
/// and never on the same one at once.
pub async fn claim(conn: &mut PgConnection) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as!(
        Job,
        r#"SELECT id, show_id, status AS "status: JobStatus", reason, requested_by, started_at,
                  finished_at, bookings_cancelled, holds_released
             FROM show_cancellations WHERE status = 'RUNNING'
            ORDER BY updated_at LIMIT 1
            FOR UPDATE SKIP LOCKED"#
    )
    .fetch_optional(conn)
    .await
}

/// A hold released by a batch: its seats, for Redis and the seat map.
#[derive(Debug, Clone)]
pub struct ReleasedHold {
    /// Hold id (the value of its Redis seat keys).
    pub hold_id: Uuid,
    /// Every seat label it was taken with.
    pub labels: Vec<String>,
    /// Ordinals freed in Postgres now.
    pub freed: Vec<i32>,
}

/// Releases up to `limit` ACTIVE holds of `show` (expired or not: the
/// sweeper may not have reached them), seats first, as every hold path
/// locks them.
pub async fn release_holds(
    conn: &mut PgConnection,
    show: Uuid,
    limit: i64,
) -> Result<Vec<ReleasedHold>, sqlx::Error> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM holds WHERE show_id = $1 AND state = 'ACTIVE' ORDER BY id LIMIT $2",
        show,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let seats = sqlx::query!(
        r#"SELECT ordinal, hold_id AS "hold_id!" FROM show_seats
            WHERE show_id = $1 AND hold_id = ANY($2) AND status = 'HELD'
            ORDER BY show_id, seat_id
            FOR UPDATE"#,
        show,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    // A hold checkout consumed meanwhile is left alone (its booking is
    // cancelled by the booking half of the batch).
    let released = sqlx::query_scalar!(
        "UPDATE holds SET state = 'RELEASED', updated_at = now()
          WHERE id = ANY($1) AND state = 'ACTIVE' RETURNING id",
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE show_seats
            SET status = 'AVAILABLE', hold_id = NULL, hold_expires_at = NULL, version = version + 1
          WHERE show_id = $1 AND hold_id = ANY($2) AND status = 'HELD'",
        show,
        &released
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE hold_seats SET live = false WHERE hold_id = ANY($1) AND live",
        &released
    )
    .execute(&mut *conn)
    .await?;
    let labels = sqlx::query!(
        "SELECT hs.hold_id, s.label FROM hold_seats hs JOIN seats s ON s.id = hs.seat_id
          WHERE hs.hold_id = ANY($1)",
        &released
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<Uuid, ReleasedHold> = released
        .iter()
        .map(|id| {
            let hold = ReleasedHold {
                hold_id: *id,
                labels: Vec::new(),
                freed: Vec::new(),
            };
            (*id, hold)
        })
        .collect();
    for l in labels {
        if let Some(h) = out.get_mut(&l.hold_id) {
            h.labels.push(l.label);
        }
    }
    for s in seats {
        if let Some(h) = out.get_mut(&s.hold_id) {
            h.freed.push(s.ordinal);
        }
    }
    Ok(out.into_values().collect())
}

/// A booking cancelled by a batch: its freed seats, for Redis and the map.
#[derive(Debug, Clone)]
pub struct CancelledBooking {
    /// Booking id (`booked:<id>` in its Redis seat keys).
    pub booking_id: Uuid,
    /// (ordinal, label) of the seats freed.
    pub freed: Vec<(i32, String)>,
}

/// Cancels up to `limit` CONFIRMED bookings of `show`, each with a full
/// refund (reason `show_cancelled`, whatever the buyer policy says) and
/// its `booking.cancelled` event, in the caller's transaction. A booking
/// a buyer is cancelling right now is skipped (`SKIP LOCKED`) and found
/// again by a later batch if still confirmed.
pub async fn cancel_bookings(
    conn: &mut PgConnection,
    job: &Job,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<CancelledBooking>> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM bookings WHERE show_id = $1 AND status = 'CONFIRMED'
          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
        job.show_id,
        limit
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(head) = bookings::head(conn, &BookingRef::Id(id), false).await? else {
            continue;
        };
        let freed = bookings::cancel(conn, &head, head.amount_minor, now).await?;
        let refund_id = Uuid::now_v7();
        sqlx::query!(
            "INSERT INTO refunds (id, payment_id, booking_id, reason, amount_minor)
             VALUES ($1, $2, $3, 'show_cancelled', $4)",
            refund_id,
            head.payment_id,
            head.id,
            head.amount_minor
        )
        .execute(&mut *conn)
        .await?;
        let view = bookings::load_view(conn, head.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("booking {id} vanished"))?;
        // The buyer's cancellation event, with why: the notifier and the
        // e-mail treat it as any cancellation (seats, refund, amount).
        crate::outbox::record(
            conn,
            head.show_id,
            head.id,
            "booking.cancelled",
            serde_json::json!({
                "user_id": head.user_id,
                "booking_id": head.id,
                "number": view.number,
                "seats": view.seats.iter().map(|s| &s.label).collect::<Vec<_>>(),
                "refund_percent": 100,
                "refund_minor": head.amount_minor,
                "refund_id": refund_id,
                "currency": view.currency,
                "reason": "show_cancelled",
                "cancellation_id": job.id,
                "message": job.reason,
            }),
        )
        .await?;
        out.push(CancelledBooking {
            booking_id: head.id,
            freed,
        });
    }
    Ok(out)
}

/// Adds a batch's work to the job's counters.
pub async fn count_progress(
    conn: &mut PgConnection,
    job: Uuid,
    bookings_cancelled: usize,
    holds_released: usize,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE show_cancellations
            SET bookings_cancelled = bookings_cancelled + $2,
                holds_released = holds_released + $3, updated_at = now()
          WHERE id = $1",
        job,
        bookings_cancelled as i32,
        holds_released as i32
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What is left of a cancellation, and what its refunds did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// Bookings this job cancelled.
    pub bookings_cancelled: i64,
    /// Bookings of the show still CONFIRMED.
    pub bookings_remaining: i64,
    /// Holds this job released.
    pub holds_released: i64,
    /// Holds of the show still ACTIVE.
    pub holds_remaining: i64,
    /// Payments of the show whose charge is not yet settled (in flight at
    /// the gateway, or charged and not yet booked or refunded).
    pub payments_unsettled: i64,
    /// Refunds of the show's payments created since the cancellation
    /// began (the job's, and the compensations of checkouts it refused).
    pub refunds_created: i64,
    /// Of those, not yet accepted by the gateway.
    pub refunds_pending: i64,
    /// Of those, sent (or settled by hand).
    pub refunds_sent: i64,
    /// Of those, refused by the gateway: an operator's turn (runbook).
    pub refunds_failed: i64,
    /// The sum of those refunds, minor units.
    pub refunded_minor: i64,
}

impl Progress {
    /// Nothing left to do or wait for.
    pub fn finished(&self) -> bool {
        self.bookings_remaining == 0
            && self.holds_remaining == 0
            && self.payments_unsettled == 0
            && self.refunds_pending == 0
    }
}

/// The job's progress as the tables say now.
pub async fn progress(conn: &mut PgConnection, job: &Job) -> Result<Progress, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM bookings WHERE show_id = $1 AND status = 'CONFIRMED')
                 AS "bookings_remaining!",
             (SELECT count(*) FROM holds WHERE show_id = $1 AND state = 'ACTIVE')
                 AS "holds_remaining!",
             (SELECT count(*) FROM payments
               WHERE show_id = $1
                 AND (status = 'CREATED' OR (status = 'SUCCEEDED' AND settled IS NULL)))
                 AS "payments_unsettled!",
             count(r.id) AS "refunds_created!",
             count(r.id) FILTER (WHERE r.status = 'PENDING') AS "refunds_pending!",
             count(r.id) FILTER (WHERE r.status IN ('SUCCEEDED', 'SETTLED_MANUALLY'))
                 AS "refunds_sent!",
             count(r.id) FILTER (WHERE r.status = 'FAILED') AS "refunds_failed!",
             COALESCE(sum(r.amount_minor), 0)::bigint AS "refunded_minor!"
           FROM payments p JOIN refunds r ON r.payment_id = p.id AND r.created_at >= $2
          WHERE p.show_id = $1"#,
        job.show_id,
        job.started_at
    )
    .fetch_one(conn)
    .await?;
    Ok(Progress {
        bookings_cancelled: job.bookings_cancelled.into(),
        bookings_remaining: r.bookings_remaining,
        holds_released: job.holds_released.into(),
        holds_remaining: r.holds_remaining,
        payments_unsettled: r.payments_unsettled,
        refunds_created: r.refunds_created,
        refunds_pending: r.refunds_pending,
        refunds_sent: r.refunds_sent,
        refunds_failed: r.refunds_failed,
        refunded_minor: r.refunded_minor,
    })
}

/// Marks the job DONE.
pub async fn finish(conn: &mut PgConnection, job: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE show_cancellations SET status = 'DONE', finished_at = now(), updated_at = now()
          WHERE id = $1 AND status = 'RUNNING'",
        job
    )
    .execute(conn)
    .await?;
    Ok(())
}
