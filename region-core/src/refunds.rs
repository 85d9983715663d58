//! The refund worker: sends PENDING refunds to the gateway until each
//! lands. Refund rows are written by cancellation and by the checkout's
//! compensation, in the same transaction as the state change, so a
//! refund survives any restart; the refund id is the gateway idempotency
//! key, so retrying after a crash or a timeout never refunds twice.
//! Failures back off exponentially (with jitter) per refund. The worker
//! exports the backlog (`refunds_pending`, `refunds_oldest_pending_seconds`).
//! Operators retry a FAILED refund or settle it by hand, or hurry a
//! PENDING one ([`retry_failed`], [`settle_by_hand`], [`send_now`]; the
//! HTTP side is `reports`).

use crate::audit::store::{self as audit, Entry};
use crate::auth::Operator;
use crate::ownership::{self, Owned};
use crate::payments::{GatewayError, PaymentGateway, RefundRequest};
use rand::Rng;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// Most refunds claimed per pass.
const BATCH: i64 = 16;

/// How long a claimed refund is kept from other workers while its
/// gateway call runs (a crash mid-call frees it after this).
const LEASE_SECS: i64 = 60;

pub use crate::backoff::Backoff;

/// Processes due refunds until `shutdown` flips: after every `kick` and at
/// least every `poll`.
pub async fn run(
    db: PgPool,
    gateway: Arc<dyn PaymentGateway>,
    backoff: Backoff,
    kick: Arc<Notify>,
    outbox_kick: Arc<Notify>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Measured at most every second: a pass may run after every kick.
    let mut backlog_reported: Option<std::time::Instant> = None;
    loop {
        if backlog_reported.is_none_or(|at| at.elapsed() >= BACKLOG_REPORT_EVERY) {
            report_backlog(&db).await;
            backlog_reported = Some(std::time::Instant::now());
        }
        match process_due(&db, gateway.as_ref(), backoff).await {
            Ok(n) if n > 0 => {
                outbox_kick.notify_one();
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "refund pass failed; will retry"),
        }
        tokio::select! {
            _ = kick.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How often the worker measures its backlog (at most).
const BACKLOG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Exports the backlog: refunds the gateway has not accepted yet (due or
/// backing off), and how long the oldest has waited.
async fn report_backlog(db: &PgPool) {
    let backlog = sqlx::query!(
        r#"SELECT count(*) AS "pending!",
                  COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS "oldest_s!"
             FROM refunds WHERE status = 'PENDING'"#
    )
    .fetch_one(db)
    .await;
    match backlog {
        Ok(b) => {
            metrics::gauge!("refunds_pending").set(b.pending as f64);
            metrics::gauge!("refunds_oldest_pending_seconds").set(b.oldest_s);
        }
        Err(e) => tracing::debug!(error = %e, "refund backlog not measured"),
    }
}

/// A refund claimed by [`process_due`], with what sending it needs.
struct Claimed {
    refund_id: Uuid,
    payment_id: Uuid,
    amount_minor: i64,
    attempts: i32,
    gateway_payment_id: Option<String>,
    booking_id: Option<Uuid>,
    show_id: Uuid,
    user_id: String,
}

/// One pass: claims due refunds (a lease, `SKIP LOCKED` so replicas share
/// the work) and sends each. Returns how many finished (either way).
pub async fn process_due(
    db: &PgPool,
    gateway: &dyn PaymentGateway,
    backoff: Backoff,
) -> anyhow::Result<usize> {
    let claimed = sqlx::query_as!(
        Claimed,
        r#"WITH due AS (
             SELECT id FROM refunds
              WHERE status = 'PENDING' AND next_attempt_at <= now()
              ORDER BY next_attempt_at LIMIT $1
              FOR UPDATE SKIP LOCKED)
         UPDATE refunds r SET next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
           FROM due, payments p
          WHERE r.id = due.id AND p.id = r.payment_id
         RETURNING r.id AS refund_id, r.payment_id, r.amount_minor, r.attempts,
                   p.gateway_payment_id, r.booking_id, p.show_id, p.user_id"#,
        BATCH,
        LEASE_SECS as f64
    )
    .fetch_all(db)
    .await?;
    let mut finished = 0;
    for c in claimed {
        if send_one(db, gateway, backoff, c).await? {
            finished += 1;
        }
    }
    Ok(finished)
}

/// Sends one claimed refund; true when it finished (sent, or failed for
/// an operator), false when it will be retried after a backoff.
async fn send_one(
    db: &PgPool,
    gateway: &dyn PaymentGateway,
    backoff: Backoff,
    c: Claimed,
) -> anyhow::Result<bool> {
    let Claimed {
        refund_id,
        payment_id,
        amount_minor: amount,
        attempts,
        gateway_payment_id,
        booking_id,
        show_id,
        user_id,
    } = c;
    let Some(gateway_payment_id) = gateway_payment_id else {
        fail(
            db,
            refund_id,
            show_id,
            &user_id,
            "the payment has no gateway id",
        )
        .await?;
        return Ok(true);
    };
    let res = gateway
        .refund(&RefundRequest {
            refund_id,
            gateway_payment_id,
            amount_minor: amount,
        })
        .await;
    match res {
        Ok(gateway_refund_id) => {
            if succeed(db, refund_id, &gateway_refund_id).await? {
                metrics::counter!("refunds_succeeded_total").increment(1);
                tracing::info!(%refund_id, %payment_id, amount, "refund sent");
            }
            Ok(true)
        }
        Err(GatewayError::Unavailable(why)) => {
            let attempts = attempts as u32 + 1;
            let delay = backoff.delay(attempts, rand::thread_rng().gen_range(0.5..=1.0));
            metrics::counter!("refund_retries_total").increment(1);
            tracing::warn!(%refund_id, attempts, ?delay, %why, "refund failed; backing off");
            sqlx::query!(
                "UPDATE refunds SET attempts = $2, last_error = $3,
                        next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
                  WHERE id = $1 AND status = 'PENDING'",
                refund_id,
                attempts as i32,
                &why,
                delay.as_secs_f64()
            )
            .execute(db)
            .await?;
            Ok(false)
        }
        Err(GatewayError::Rejected { status, code }) => {
            let why = format!("gateway refused the refund (HTTP {status}): {code}");
            fail(db, refund_id, show_id, &user_id, &why).await?;
            tracing::error!(%refund_id, %payment_id, ?booking_id, %why, "refund needs an operator");
            Ok(true)
        }
    }
}

/// A refund just marked refunded (SUCCEEDED, or SETTLED_MANUALLY by an
/// operator), with what its event says.
struct Refunded {
    payment_id: Uuid,
    booking_id: Option<Uuid>,
    amount_minor: i64,
    show_id: Uuid,
    user_id: String,
    currency: String,
}

/// Marks a refund SUCCEEDED (once) with its event. Also used by the
/// gateway's `refund.succeeded` webhook. Returns false if already done.
pub async fn succeed(
    db: &PgPool,
    refund_id: Uuid,
    gateway_refund_id: &str,
) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as!(
        Refunded,
        "UPDATE refunds r SET status = 'SUCCEEDED', gateway_refund_id = $2, last_error = NULL,
                updated_at = now()
           FROM payments p
          WHERE r.id = $1 AND r.status = 'PENDING' AND p.id = r.payment_id
         RETURNING r.payment_id, r.booking_id, r.amount_minor, p.show_id, p.user_id, p.currency",
        refund_id,
        gateway_refund_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    record_refunded(&mut tx, refund_id, &row, Some(gateway_refund_id), false).await?;
    tx.commit().await?;
    Ok(true)
}

/// The `refund.succeeded` event (what the buyer is told), whether the
/// gateway sent the money or an operator settled it by hand.
async fn record_refunded(
    tx: &mut sqlx::PgConnection,
    refund_id: Uuid,
    r: &Refunded,
    gateway_refund_id: Option<&str>,
    settled_manually: bool,
) -> anyhow::Result<()> {
    crate::outbox::record(
        tx,
        r.show_id,
        r.booking_id.unwrap_or(r.payment_id),
        "refund.succeeded",
        serde_json::json!({
            "user_id": r.user_id,
            "refund_id": refund_id,
            "payment_id": r.payment_id,
            "booking_id": r.booking_id,
            "amount_minor": r.amount_minor,
            "currency": r.currency,
            "gateway_refund_id": gateway_refund_id,
            "settled_manually": settled_manually,
        }),
    )
    .await?;
    Ok(())
}

/// What an operator's action on a refund found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAction {
    /// Done.
    Done,
    /// No such refund.
    Unknown,
    /// The refund is not in the status the action needs; its status.
    WrongStatus(String),
}

/// The status of a refund an action did not apply to.
async fn refused(conn: &mut sqlx::PgConnection, refund_id: Uuid) -> anyhow::Result<OperatorAction> {
    let status = sqlx::query_scalar!("SELECT status FROM refunds WHERE id = $1", refund_id)
        .fetch_optional(conn)
        .await?;
    Ok(status.map_or(OperatorAction::Unknown, OperatorAction::WrongStatus))
}

/// An operator sends a FAILED refund again: PENDING, due now (the caller
/// wakes the worker). Attempts and the last error are kept as history;
/// who retried, and when, is recorded.
pub async fn retry_failed(
    db: &PgPool,
    refund_id: Uuid,
    operator: &Operator,
) -> anyhow::Result<OperatorAction> {
    let mut tx = db.begin().await?;
    let before = sqlx::query!(
        "SELECT r.last_error, r.attempts FROM refunds r WHERE r.id = $1 AND r.status = 'FAILED'
            FOR UPDATE",
        refund_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else {
        return refused(&mut tx, refund_id).await;
    };
    sqlx::query!(
        "UPDATE refunds SET status = 'PENDING', next_attempt_at = now(), retried_by = $2,
                retried_at = now(), updated_at = now()
          WHERE id = $1",
        refund_id,
        operator.id
    )
    .execute(&mut *tx)
    .await?;
    let city = ownership::city_of(&mut tx, Owned::Refund(refund_id)).await?;
    let entry = Entry {
        action: "refund.retry",
        target_kind: "refund",
        target_id: refund_id.to_string(),
        city: city.as_deref(),
        before: Some(serde_json::json!({
            "status": "FAILED", "last_error": before.last_error, "attempts": before.attempts,
        })),
        after: Some(serde_json::json!({ "status": "PENDING" })),
    };
    audit::record(&mut tx, operator, entry).await?;
    tx.commit().await?;
    tracing::info!(%refund_id, operator = %operator.id, "failed refund retried by an operator");
    Ok(OperatorAction::Done)
}

/// An operator hurries a PENDING refund that is backing off: due now
/// (the caller wakes the worker), with who and when in the audit log.
/// Only PENDING: a FAILED refund is retried ([`retry_failed`]), a
/// finished one is done. A refund whose gateway call is in flight at
/// this moment may be sent a second time; the refund id is the gateway's
/// idempotency key, so it is paid once.
pub async fn send_now(
    db: &PgPool,
    refund_id: Uuid,
    operator: &Operator,
) -> anyhow::Result<OperatorAction> {
    let mut tx = db.begin().await?;
    let before = sqlx::query!(
        "SELECT next_attempt_at, attempts, last_error FROM refunds
          WHERE id = $1 AND status = 'PENDING' FOR UPDATE",
        refund_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else {
        return refused(&mut tx, refund_id).await;
    };
    let due = sqlx::query_scalar!(
        "UPDATE refunds SET next_attempt_at = now(), updated_at = now() WHERE id = $1
         RETURNING next_attempt_at",
        refund_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let city = ownership::city_of(&mut tx, Owned::Refund(refund_id)).await?;
    let entry = Entry {
        action: "refund.send_now",
        target_kind: "refund",
        target_id: refund_id.to_string(),
        city: city.as_deref(),
        before: Some(serde_json::json!({
            "status": "PENDING", "next_attempt_at": before.next_attempt_at,
            "attempts": before.attempts, "last_error": before.last_error,
        })),
        after: Some(serde_json::json!({ "status": "PENDING", "next_attempt_at": due })),
    };
    audit::record(&mut tx, operator, entry).await?;
    tx.commit().await?;
    tracing::info!(%refund_id, operator = %operator.id, "pending refund made due now by an operator");
    Ok(OperatorAction::Done)
}

/// How an operator settled a refund outside the gateway.
#[derive(Debug, Clone)]
pub struct HandSettlement<'a> {
    /// The operator.
    pub operator: &'a Operator,
    /// Why and how (a bank transfer, cash at the box office ...).
    pub note: &'a str,
    /// The payment's reference outside our gateway calls, if any.
    pub gateway_reference: Option<&'a str>,
}

/// An operator settles a FAILED refund by hand: SETTLED_MANUALLY (counted
/// as refunded; the worker sends only PENDING rows, so never again), with
/// who, when and the note, and the buyer told through the same
/// `refund.succeeded` event as a gateway refund.
///
/// Only FAILED: a PENDING refund may be in flight at the gateway right
/// now (the worker holds no lock during the call), and settling it by
/// hand could pay the buyer twice.
pub async fn settle_by_hand(
    db: &PgPool,
    refund_id: Uuid,
    how: &HandSettlement<'_>,
) -> anyhow::Result<OperatorAction> {
    let mut tx = db.begin().await?;
    let row = sqlx::query_as!(
        Refunded,
        "UPDATE refunds r SET status = 'SETTLED_MANUALLY', settled_by = $2, settled_at = now(),
                settle_note = $3, gateway_refund_id = COALESCE($4, r.gateway_refund_id),
                updated_at = now()
           FROM payments p
          WHERE r.id = $1 AND r.status = 'FAILED' AND p.id = r.payment_id
         RETURNING r.payment_id, r.booking_id, r.amount_minor, p.show_id, p.user_id, p.currency",
        refund_id,
        how.operator.id,
        how.note,
        how.gateway_reference
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return refused(&mut tx, refund_id).await;
    };
    record_refunded(&mut tx, refund_id, &row, how.gateway_reference, true).await?;
    let city = ownership::city_of(&mut tx, Owned::Refund(refund_id)).await?;
    let entry = Entry {
        action: "refund.settle",
        target_kind: "refund",
        target_id: refund_id.to_string(),
        city: city.as_deref(),
        before: Some(serde_json::json!({ "status": "FAILED" })),
        after: Some(serde_json::json!({
            "status": "SETTLED_MANUALLY", "note": how.note,
            "gateway_reference": how.gateway_reference, "amount_minor": row.amount_minor,
        })),
    };
    audit::record(&mut tx, how.operator, entry).await?;
    tx.commit().await?;
    metrics::counter!("refunds_settled_manually_total").increment(1);
    tracing::info!(%refund_id, operator = %how.operator.id, "refund settled by hand");
    Ok(OperatorAction::Done)
}

async fn fail(
    db: &PgPool,
    refund_id: Uuid,
    show_id: Uuid,
    user_id: &str,
    why: &str,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let done = sqlx::query!(
        "UPDATE refunds SET status = 'FAILED', last_error = $2, attempts = attempts + 1,
                updated_at = now()
          WHERE id = $1 AND status = 'PENDING'",
        refund_id,
        why
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done == 1 {
        crate::outbox::record(
            &mut tx,
            show_id,
            refund_id,
            "refund.failed",
            serde_json::json!({ "user_id": user_id, "refund_id": refund_id, "reason": why }),
        )
        .await?;
        metrics::counter!("refunds_failed_total").increment(1);
    }
    tx.commit().await?;
    Ok(())
}
