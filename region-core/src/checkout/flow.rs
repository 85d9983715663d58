//! The checkout's steps, with I/O: phase 1 (key + payment row), phase 2
//! (the gateway charge), phase 3 (settlement). Which step comes next is
//! `machine`'s decision; this module performs it and commits.

use super::machine::{self, PaymentStatus, Step};
use super::{record, settle};
use crate::auth::User;
use crate::config::CrashPoint;
use crate::error::ApiError;
use crate::holds::rules::{not_active_error, show_started};
use crate::idempotency::{self, KeyState, RecoveryPoint, StoredResponse};
use crate::payments::{ChargeOutcome, ChargeRequest, GatewayError};
use crate::state::AppState;
use chrono::Utc;
use shared::api::{Checkout, HoldState};
use uuid::Uuid;

/// The error of an injected crash: the request stops as a dead process
/// would, leaving the key locked.
#[derive(Debug, thiserror::Error)]
#[error("injected crash at {0:?}")]
struct InjectedCrash(CrashPoint);

fn crash_if(state: &AppState, point: CrashPoint) -> Result<(), ApiError> {
    if cfg!(feature = "fault-injection") && state.settings.test_crash_at == Some(point) {
        tracing::error!(?point, "injected crash");
        return Err(ApiError::Internal(InjectedCrash(point).into()));
    }
    Ok(())
}

fn is_injected_crash(e: &ApiError) -> bool {
    matches!(e, ApiError::Internal(cause) if cause.downcast_ref::<InjectedCrash>().is_some())
}

/// Drives the key from wherever it is to `finished`. Returns the stored
/// response and whether it was a replay.
pub(super) async fn run(
    state: &AppState,
    user: &User,
    hold_id: Uuid,
    key: &str,
    hash: &str,
    req: &Checkout,
) -> Result<(StoredResponse, bool), ApiError> {
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    let key_state = idempotency::store::begin(
        &mut tx,
        &user.id,
        key,
        hash,
        state.settings.idempotency_lock(),
        now,
    )
    .await?;
    let point = match key_state {
        KeyState::Replay(r) => return Ok((r, true)),
        KeyState::Resume(p) => {
            tx.commit().await?;
            p
        }
        KeyState::New => {
            create_payment(tx, user, hold_id, key, hash, req).await?;
            RecoveryPoint::PaymentCreated
        }
    };
    // From here on this request holds the key's lock. A failure (say the
    // pool is exhausted) unlocks it, so the buyer's retry with the same
    // key resumes at once instead of waiting for the lock to lapse; only
    // a (simulated) crash leaves it locked, as a dead process would.
    let result = resume(state, user, key, point).await;
    if let Err(e) = &result {
        if !is_injected_crash(e) {
            if let Ok(mut conn) = state.db.acquire().await {
                let _ = idempotency::store::unlock(&mut conn, &user.id, key).await;
            }
        }
    }
    result
}

/// Phases 2 and 3 from `point`, with the key locked by this request; the
/// machine decides each step.
async fn resume(
    state: &AppState,
    user: &User,
    key: &str,
    point: RecoveryPoint,
) -> Result<(StoredResponse, bool), ApiError> {
    if point == RecoveryPoint::PaymentCreated {
        crash_if(state, CrashPoint::AfterPaymentCreated)?;
    }
    let payment = payment_of_key(state, &user.id, key).await?;
    match machine::step(point, payment.status) {
        Step::AnswerClosed => {
            return closed_response(state, user, key, payment.id)
                .await
                .map(|r| (r, false))
        }
        Step::Charge => {
            if let Some(done) = charge(state, user, key, &payment).await? {
                return Ok((done, false));
            }
            crash_if(state, CrashPoint::AfterPaymentRecorded)?;
        }
        // Recorded by a webhook or reconciliation while this key was
        // locked elsewhere: the same crash point as a charge recorded here.
        Step::Settle if point != RecoveryPoint::PaymentSucceeded => {
            crash_if(state, CrashPoint::AfterPaymentRecorded)?;
        }
        Step::Settle => {}
    }
    settle::settle(state, payment.id).await?;
    crash_if(state, CrashPoint::AfterSettle)?;
    let mut conn = state.db.acquire().await?;
    let resp = idempotency::store::response_of(&mut conn, &user.id, key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("settled payment {} left its key unfinished", payment.id))?;
    Ok((resp, false))
}

/// What a hold costs, once it is checked payable.
struct Payable {
    show_id: Uuid,
    amount: i64,
    currency: String,
}

/// Checks the hold can be paid for (the caller's, live, its show not
/// started, its pass not spent on another hold, seats still its own and
/// not free) and prices it.
async fn payable(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: &User,
    hold_id: Uuid,
    now: chrono::DateTime<Utc>,
) -> Result<Payable, ApiError> {
    let hold = match crate::holds::store::fetch(tx, hold_id).await? {
        Some(h) if h.user_id == user.id => h,
        _ => {
            return Err(ApiError::not_found(
                "unknown_hold",
                format!("no hold {hold_id}"),
            ))
        }
    };
    if hold.state != HoldState::Active.as_db_str() || hold.expires_at <= now {
        return Err(not_active_error(&hold, now));
    }
    let show = sqlx::query!(
        r#"SELECT sh.starts_at,
                  EXISTS (SELECT 1 FROM spent_passes sp
                           JOIN holds h ON h.admission_pass_id = sp.pass_id
                          WHERE h.id = $2) AS "pass_spent!"
             FROM shows sh WHERE sh.id = $1"#,
        hold.show_id,
        hold.id
    )
    .fetch_one(&mut **tx)
    .await?;
    if now >= show.starts_at {
        return Err(show_started());
    }
    // A pass buys once: another hold taken with it cannot be paid for.
    if show.pass_spent {
        return Err(crate::holds::flash_sale::pass_used());
    }
    let price = sqlx::query!(
        r#"SELECT sum((sh.prices ->> s.category)::bigint)::bigint AS amount, sh.currency
             FROM hold_seats hs
             JOIN seats s ON s.id = hs.seat_id
             JOIN shows sh ON sh.id = hs.show_id
            WHERE hs.hold_id = $1 AND hs.live
            GROUP BY sh.currency"#,
        hold_id
    )
    .fetch_optional(&mut **tx)
    .await?;
    let Some((Some(amount), currency)) = price.map(|p| (p.amount, p.currency)) else {
        // Active and unexpired, yet no live seats: taken over (fencing).
        return Err(ApiError::Gone {
            code: "hold_lost",
            message: "the hold no longer owns its seats".into(),
        });
    };
    if amount <= 0 {
        return Err(ApiError::unprocessable(
            "nothing_to_pay",
            "these seats are free; free tickets are not sold through checkout",
        ));
    }
    Ok(Payable {
        show_id: hold.show_id,
        amount,
        currency,
    })
}

/// Phase 1: checks the hold and records key + payment in one transaction.
/// Nothing is stored when the hold is not the caller's or not live.
async fn create_payment(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    user: &User,
    hold_id: Uuid,
    key: &str,
    hash: &str,
    req: &Checkout,
) -> Result<(), ApiError> {
    let now = Utc::now();
    // On the open transaction: a second pooled connection per checkout
    // would let concurrent checkouts exhaust the pool waiting on each other.
    let Payable {
        show_id,
        amount,
        currency,
    } = payable(&mut tx, user, hold_id, now).await?;
    idempotency::store::insert(
        &mut tx,
        &user.id,
        key,
        hash,
        RecoveryPoint::PaymentCreated,
        now,
    )
    .await
    .map_err(idempotency::store::insert_error)?;
    let inserted = sqlx::query!(
        "INSERT INTO payments (id, hold_id, show_id, user_id, idem_key, amount_minor, currency, payment_method)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        Uuid::now_v7(),
        hold_id,
        show_id,
        &user.id,
        key,
        amount,
        &currency,
        &req.payment_method
    )
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        if crate::db::is_unique_violation(&e) {
            return Err(ApiError::conflict(
                "checkout_in_progress",
                "this hold is already being paid for (or was paid) under another Idempotency-Key",
            ));
        }
        return Err(e.into());
    }
    tx.commit().await?;
    Ok(())
}

/// The payment row a key created.
#[derive(Debug, Clone)]
struct KeyPayment {
    id: Uuid,
    status: PaymentStatus,
    amount_minor: i64,
    currency: String,
    payment_method: String,
}

async fn payment_of_key(state: &AppState, user: &str, key: &str) -> Result<KeyPayment, ApiError> {
    let row = sqlx::query_as!(
        KeyPayment,
        r#"SELECT id, status AS "status: PaymentStatus", amount_minor, currency, payment_method
             FROM payments WHERE user_id = $1 AND idem_key = $2"#,
        user,
        key
    )
    .fetch_optional(&state.db)
    .await?;
    Ok(row.ok_or_else(|| anyhow::anyhow!("key {key} has no payment"))?)
}

/// Phase 2: the charge (the machine said `Charge`: the payment is
/// `CREATED`). Returns a final response if the key finished here
/// (declined), or `None` when the payment is charged and recorded.
async fn charge(
    state: &AppState,
    user: &User,
    key: &str,
    payment: &KeyPayment,
) -> Result<Option<StoredResponse>, ApiError> {
    let outcome = state
        .gateway
        .charge(&ChargeRequest {
            payment_id: payment.id,
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
            payment_method: payment.payment_method.clone(),
        })
        .await;
    let (gateway_id, code) = match outcome {
        Ok(ChargeOutcome::Succeeded { gateway_id }) => {
            crash_if(state, CrashPoint::AfterGatewayCharge)?;
            let mut tx = state.db.begin().await?;
            record::record_success(&mut tx, payment.id, &gateway_id).await?;
            idempotency::store::advance(&mut tx, &user.id, key, RecoveryPoint::PaymentSucceeded)
                .await?;
            tx.commit().await?;
            state.outbox_kick.notify_one();
            return Ok(None);
        }
        Err(GatewayError::Unavailable(why)) => {
            // Nothing is recorded: a retry with the same key resumes here,
            // and the webhook or reconciliation learns the outcome meanwhile.
            tracing::warn!(payment = %payment.id, %why, "gateway outcome unknown; the key stays resumable");
            metrics::counter!("payments_outcome_unknown_total").increment(1);
            let mut conn = state.db.acquire().await?;
            idempotency::store::unlock(&mut conn, &user.id, key).await?;
            return Err(ApiError::Unavailable {
                code: "payment_pending",
                message: "the payment provider did not answer in time; retry with the same Idempotency-Key (you will not be charged twice)".into(),
                retry_after_s: 2,
            });
        }
        Ok(ChargeOutcome::Declined { gateway_id, code }) => (gateway_id, code),
        Err(GatewayError::Rejected { status, code }) => {
            tracing::warn!(payment = %payment.id, status, %code, "gateway rejected the charge");
            (None, code)
        }
    };
    // Declined or rejected: nothing was charged; the key finishes with 402.
    let mut tx = state.db.begin().await?;
    let resp = record::record_failure(&mut tx, payment.id, gateway_id.as_deref(), &code).await?;
    tx.commit().await?;
    state.outbox_kick.notify_one();
    match resp {
        Some(resp) => Ok(Some(resp)),
        // The gateway's `payment_failed` webhook closed it first: answer
        // what it stored, so replays match this answer.
        None => closed_response(state, user, key, payment.id)
            .await
            .map(Some),
    }
}

/// The stored answer of a key whose payment someone else (a webhook,
/// reconciliation, an earlier request) already closed.
async fn closed_response(
    state: &AppState,
    user: &User,
    key: &str,
    payment_id: Uuid,
) -> Result<StoredResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    idempotency::store::response_of(&mut conn, &user.id, key)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("payment {payment_id} is closed but its key is unfinished").into()
        })
}
