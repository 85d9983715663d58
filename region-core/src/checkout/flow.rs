//! The checkout's steps, with I/O: phase 1 (key + payment row), phase 2
//! (the gateway charge), phase 3 (settlement). Which step comes next is
//! `machine`'s decision; this module performs it. Phases 1 and 3 are
//! group-committed jobs (`jobs`); phase 2 holds no connection.

use super::jobs::{Begin, Begun, Confirm, KeyPayment};
use super::machine::{self, Step};
use super::record;
use super::settle::Settlement;
use crate::auth::User;
use crate::config::CrashPoint;
use crate::error::ApiError;
use crate::idempotency::{self, RecoveryPoint, StoredResponse};
use crate::payments::{ChargeFailure, ChargeOutcome, ChargeRequest, GatewayError};
use crate::state::AppState;
use chrono::Utc;
use shared::api::Checkout;
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

/// A checkout's final answer.
pub(super) struct Answer {
    /// The key's stored response.
    pub response: StoredResponse,
    /// Whether it was stored by an earlier request.
    pub replayed: bool,
    /// The admission pass a booking made by this request spent (`Some(None)`:
    /// it was taken without one); `None` when not known here (a replay, or
    /// a booking someone else made).
    pub pass: Option<Option<String>>,
}

impl Answer {
    fn new(response: StoredResponse) -> Self {
        Self {
            response,
            replayed: false,
            pass: None,
        }
    }
}

/// How a shed checkout retries.
const RETRY: &str = "retry shortly with the same Idempotency-Key";

/// Drives the key from wherever it is to `finished`.
pub(super) async fn run(
    state: &AppState,
    user: &User,
    hold_id: Uuid,
    key: &str,
    hash: &str,
    req: &Checkout,
) -> Result<Answer, ApiError> {
    let begun = state
        .checkout
        .begin
        .submit_or_shed(
            Begin {
                user: user.id.clone(),
                key: key.to_owned(),
                hash: hash.to_owned(),
                hold_id,
                payment_method: req.payment_method.clone(),
                lock_timeout: state.settings.idempotency_lock(),
                now: Utc::now(),
            },
            RETRY,
        )
        .await?;
    let (point, payment) = match begun {
        Begun::Replay(response) => {
            return Ok(Answer {
                response,
                replayed: true,
                pass: None,
            })
        }
        Begun::Resume { point, payment } => (point, payment),
        Begun::Created(payment) => (RecoveryPoint::PaymentCreated, payment),
    };
    // From here on this request holds the key's lock. A failure (say the
    // database is away) unlocks it, so the buyer's retry with the same
    // key resumes at once instead of waiting for the lock to lapse; only
    // a (simulated) crash leaves it locked, as a dead process would.
    let result = resume(state, user, key, point, &payment).await;
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
    payment: &KeyPayment,
) -> Result<Answer, ApiError> {
    if point == RecoveryPoint::PaymentCreated {
        crash_if(state, CrashPoint::AfterPaymentCreated)?;
    }
    let gateway_id = match machine::step(point, payment.status) {
        Step::AnswerClosed => {
            return closed_response(state, user, key, payment.id)
                .await
                .map(Answer::new)
        }
        Step::Charge => match charge(state, user, key, payment).await? {
            Charged::Final(done) => return Ok(Answer::new(done)),
            Charged::Succeeded(gateway_id) => Some(gateway_id),
        },
        // Recorded by a webhook or reconciliation while this key was
        // locked elsewhere, or by an earlier request of this key.
        Step::Settle => None,
    };
    let settled = state
        .checkout
        .confirm
        .submit_or_shed(
            Confirm {
                payment_id: payment.id,
                gateway_id,
                answer_to: Some((user.id.clone(), key.to_owned())),
                delivery: None,
            },
            RETRY,
        )
        .await?;
    crash_if(state, CrashPoint::AfterSettle)?;
    let response = settled
        .response
        .ok_or_else(|| anyhow::anyhow!("settled payment {} left its key unfinished", payment.id))?;
    let booked_now = matches!(settled.settlement, Settlement::Booked(_));
    Ok(Answer {
        response,
        replayed: false,
        pass: booked_now.then_some(settled.pass),
    })
}

/// How a charge attempt ended, when it did not end the request with an
/// error.
enum Charged {
    /// Declined or rejected: the key finished with this answer.
    Final(StoredResponse),
    /// Charged: the gateway's id of the charge, not yet recorded.
    Succeeded(String),
}

/// Phase 2: the charge (the machine said `Charge`: the payment is
/// `CREATED`). No connection is held while the gateway answers.
async fn charge(
    state: &AppState,
    user: &User,
    key: &str,
    payment: &KeyPayment,
) -> Result<Charged, ApiError> {
    let outcome = state
        .gateway
        .charge(&ChargeRequest {
            payment_id: payment.id,
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
            payment_method: payment.payment_method.clone(),
        })
        .await;
    // Every attempt, so failures can be read as a share of attempts.
    metrics::counter!("payment_charges_total").increment(1);
    if let Some(failure) = ChargeFailure::of(&outcome) {
        metrics::counter!("payment_failures_total", "reason" => failure.label()).increment(1);
    }
    let (gateway_id, code) = match outcome {
        Ok(ChargeOutcome::Succeeded { gateway_id }) => {
            crash_if(state, CrashPoint::AfterGatewayCharge)?;
            return Ok(Charged::Succeeded(gateway_id));
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
        Some(resp) => Ok(Charged::Final(resp)),
        // The gateway's `payment_failed` webhook closed it first: answer
        // what it stored, so replays match this answer.
        None => closed_response(state, user, key, payment.id)
            .await
            .map(Charged::Final),
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
