//! Checkout: `POST /v1/holds/{id}/checkout` turns a live hold into a paid,
//! confirmed booking.
//!
//! The work is split into atomic phases, each ending in a commit that
//! moves the request's idempotency key to its next recovery point:
//!
//! 1. `payment_created`: key + payment row (amount from the show's prices),
//!    one transaction, after checking the hold is the caller's and live;
//! 2. the gateway charge (idempotency key = payment id), outside any
//!    transaction; success commits `payment_succeeded`, a decline
//!    finishes the key with 402, an unknown outcome unlocks it (503, retry);
//! 3. settlement ([`settle`]): booking confirmed, or the charge refunded.
//!
//! A retry with the same key resumes at the last committed point, so a
//! crash anywhere never charges twice; what a crash leaves behind, the
//! webhook or reconciliation finishes. The response a client sees is
//! always the stored one, so a replay is byte-for-byte the first answer.

pub mod idempotency;
pub mod settle;

use crate::auth::User;
use crate::error::ApiError;
use crate::holds::{not_active_error, parse_hold_id};
use crate::payments::{ChargeOutcome, ChargeRequest, GatewayError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use idempotency::{KeyState, RecoveryPoint, StoredResponse};
use shared::api::{Checkout, HoldState};
use uuid::Uuid;

/// Checkout routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/holds/{id}/checkout", post(checkout))
}

/// Where a test may make a checkout stop dead, as if the process crashed
/// (only honoured in builds with the `fault-injection` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPoint {
    /// Key and payment row committed; the gateway not yet called.
    AfterPaymentCreated,
    /// The gateway charged; nothing recorded yet.
    AfterGatewayCharge,
    /// The charge recorded; booking not yet settled.
    AfterPaymentRecorded,
    /// Settled and committed; the response never sent.
    AfterSettle,
}

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

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Checkout, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let req: Checkout = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            )
        } else {
            ApiError::unprocessable("invalid_body", e.to_string())
        }
    })?;
    let pm = &req.payment_method;
    if pm.is_empty()
        || pm.len() > 64
        || !pm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::unprocessable(
            "invalid_payment_method",
            "payment_method must be a gateway token like pm_card_ok (1-64 letters, digits, _ or -)",
        ));
    }
    Ok(req)
}

#[tracing::instrument(skip_all, fields(hold = %raw_id))]
async fn checkout(
    State(state): State<AppState>,
    user: User,
    axum::extract::Path(raw_id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from_headers(&headers, true)?
        .ok_or_else(|| anyhow::anyhow!("required key missing"))?;
    let hold_id = parse_hold_id(&raw_id)?;
    let req = parse_body(&headers, &body)?;
    let canonical = serde_json::to_vec(&req).map_err(anyhow::Error::from)?;
    let hash =
        idempotency::request_hash("POST", &format!("/v1/holds/{hold_id}/checkout"), &canonical);
    let started = std::time::Instant::now();
    let result = run(&state, &user, hold_id.0, &key, &hash, &req).await;
    let outcome = match &result {
        Ok((r, _)) => status_label(r.status),
        Err(e) => e.code(),
    };
    metrics::histogram!("checkout_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    let (resp, replayed) = result?;
    let booked = resp.status == 201;
    let mut http = idempotency::into_response(resp, replayed);
    if booked {
        // A flash-sale purchase is done: tell the edge, which gives the
        // pass's waiting-room slot to the next user.
        let pass: Option<(Option<String>,)> =
            sqlx::query_as("SELECT admission_pass_id FROM holds WHERE id = $1")
                .bind(hold_id.0)
                .fetch_optional(&state.db)
                .await?;
        if let Some(pid) = pass.and_then(|p| p.0) {
            if let Ok(v) = HeaderValue::from_str(&pid) {
                http.headers_mut().insert(ADMISSION_COMPLETED_HEADER, v);
            }
        }
    }
    Ok(http)
}

/// Response header naming the admission pass a booking completed.
pub const ADMISSION_COMPLETED_HEADER: &str = "admission-completed";

fn status_label(status: u16) -> &'static str {
    match status {
        201 => "booked",
        402 => "declined",
        409 => "refunded",
        _ => "other",
    }
}

/// Drives the key from wherever it is to `finished`. Returns the stored
/// response and whether it was a replay.
async fn run(
    state: &AppState,
    user: &User,
    hold_id: Uuid,
    key: &str,
    hash: &str,
    req: &Checkout,
) -> Result<(StoredResponse, bool), ApiError> {
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    let point = match idempotency::begin(
        &mut tx,
        &user.id,
        key,
        hash,
        state.settings.idempotency_lock(),
        now,
    )
    .await?
    {
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
                let _ = idempotency::unlock(&mut conn, &user.id, key).await;
            }
        }
    }
    result
}

/// Phases 2 and 3 from `point`, with the key locked by this request.
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
    if point == RecoveryPoint::PaymentCreated || point == RecoveryPoint::Started {
        if let Some(done) = charge(state, user, key, &payment).await? {
            return Ok((done, false));
        }
        crash_if(state, CrashPoint::AfterPaymentRecorded)?;
    }
    settle::settle(state, payment.id).await?;
    crash_if(state, CrashPoint::AfterSettle)?;
    let mut conn = state.db.acquire().await?;
    let resp = idempotency::response_of(&mut conn, &user.id, key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("settled payment {} left its key unfinished", payment.id))?;
    Ok((resp, false))
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
    let hold = match crate::holds::store::fetch(&mut tx, hold_id).await? {
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
    let (starts_at, pass_spent): (chrono::DateTime<Utc>, bool) = sqlx::query_as(
        "SELECT sh.starts_at,
                EXISTS (SELECT 1 FROM spent_passes sp
                         JOIN holds h ON h.admission_pass_id = sp.pass_id
                        WHERE h.id = $2)
           FROM shows sh WHERE sh.id = $1",
    )
    .bind(hold.show_id)
    .bind(hold.id)
    .fetch_one(&mut *tx)
    .await?;
    if now >= starts_at {
        return Err(crate::holds::show_started());
    }
    // A pass buys once: another hold taken with it cannot be paid for.
    if pass_spent {
        return Err(crate::holds::flash_sale::pass_used());
    }
    let price: Option<(Option<i64>, String)> = sqlx::query_as(
        "SELECT sum((sh.prices ->> s.category)::bigint)::bigint, sh.currency
           FROM hold_seats hs
           JOIN seats s ON s.id = hs.seat_id
           JOIN shows sh ON sh.id = hs.show_id
          WHERE hs.hold_id = $1 AND hs.live
          GROUP BY sh.currency",
    )
    .bind(hold_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((Some(amount), currency)) = price else {
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
    idempotency::insert(
        &mut tx,
        &user.id,
        key,
        hash,
        RecoveryPoint::PaymentCreated,
        now,
    )
    .await
    .map_err(idempotency::insert_error)?;
    let inserted = sqlx::query(
        "INSERT INTO payments (id, hold_id, show_id, user_id, idem_key, amount_minor, currency, payment_method)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(hold_id)
    .bind(hold.show_id)
    .bind(&user.id)
    .bind(key)
    .bind(amount)
    .bind(&currency)
    .bind(&req.payment_method)
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        if crate::holds::store::sqlstate(&e).as_deref() == Some("23505") {
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
    status: String,
    amount_minor: i64,
    currency: String,
    payment_method: String,
}

async fn payment_of_key(state: &AppState, user: &str, key: &str) -> Result<KeyPayment, ApiError> {
    let row: Option<(Uuid, String, i64, String, String)> = sqlx::query_as(
        "SELECT id, status, amount_minor, currency, payment_method FROM payments
          WHERE user_id = $1 AND idem_key = $2",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(&state.db)
    .await?;
    let (id, status, amount_minor, currency, payment_method) =
        row.ok_or_else(|| anyhow::anyhow!("key {key} has no payment"))?;
    Ok(KeyPayment {
        id,
        status,
        amount_minor,
        currency,
        payment_method,
    })
}

/// Phase 2: the charge. Returns a final response if the key finished here
/// (declined), or `None` when the payment is charged and recorded.
async fn charge(
    state: &AppState,
    user: &User,
    key: &str,
    payment: &KeyPayment,
) -> Result<Option<StoredResponse>, ApiError> {
    if payment.status == "SUCCEEDED" {
        return Ok(None); // a webhook or reconciliation recorded it already
    }
    if payment.status != "CREATED" {
        // FAILED or ABANDONED: whoever decided that finished the key.
        return closed_response(state, user, key, payment.id)
            .await
            .map(Some);
    }
    let outcome = state
        .gateway
        .charge(&ChargeRequest {
            payment_id: payment.id,
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
            payment_method: payment.payment_method.clone(),
        })
        .await;
    match outcome {
        Ok(ChargeOutcome::Succeeded { gateway_id }) => {
            crash_if(state, CrashPoint::AfterGatewayCharge)?;
            let mut tx = state.db.begin().await?;
            record_success(&mut tx, payment.id, &gateway_id).await?;
            idempotency::advance(&mut tx, &user.id, key, RecoveryPoint::PaymentSucceeded).await?;
            tx.commit().await?;
            state.outbox_kick.notify_one();
            Ok(None)
        }
        Ok(ChargeOutcome::Declined { gateway_id, code }) => {
            let mut tx = state.db.begin().await?;
            let resp = record_failure(&mut tx, payment.id, gateway_id.as_deref(), &code).await?;
            tx.commit().await?;
            state.outbox_kick.notify_one();
            match resp {
                Some(resp) => Ok(Some(resp)),
                // The gateway's `payment_failed` webhook closed it first:
                // answer what it stored, so replays match this answer.
                None => closed_response(state, user, key, payment.id)
                    .await
                    .map(Some),
            }
        }
        Err(GatewayError::Unavailable(why)) => {
            tracing::warn!(payment = %payment.id, %why, "gateway outcome unknown; the key stays resumable");
            metrics::counter!("payments_outcome_unknown_total").increment(1);
            let mut conn = state.db.acquire().await?;
            idempotency::unlock(&mut conn, &user.id, key).await?;
            Err(ApiError::Unavailable {
                code: "payment_pending",
                message: "the payment provider did not answer in time; retry with the same Idempotency-Key (you will not be charged twice)".into(),
                retry_after_s: 2,
            })
        }
        Err(GatewayError::Rejected { status, code }) => {
            tracing::warn!(payment = %payment.id, status, %code, "gateway rejected the charge");
            let mut tx = state.db.begin().await?;
            let resp = record_failure(&mut tx, payment.id, None, &code).await?;
            tx.commit().await?;
            match resp {
                Some(resp) => Ok(Some(resp)),
                None => closed_response(state, user, key, payment.id)
                    .await
                    .map(Some),
            }
        }
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
    idempotency::response_of(&mut conn, &user.id, key)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!("payment {payment_id} is closed but its key is unfinished").into()
        })
}

/// Records a charge the gateway confirmed (from the checkout, a webhook or
/// reconciliation). Returns false if it was recorded already.
///
/// A charge that lands after the payment was closed as FAILED or ABANDONED
/// (the buyer was told nothing was charged) is refunded at once.
pub async fn record_success(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    payment_id: Uuid,
    gateway_id: &str,
) -> Result<bool, sqlx::Error> {
    let row: Option<(String, Uuid, String, Option<String>, i64, String)> = sqlx::query_as(
        "SELECT status, show_id, user_id, idem_key, amount_minor, currency
           FROM payments WHERE id = $1 FOR UPDATE",
    )
    .bind(payment_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((status, show_id, user_id, idem_key, amount, currency)) = row else {
        return Ok(false);
    };
    if status == "SUCCEEDED" {
        return Ok(false);
    }
    let late = status != "CREATED";
    sqlx::query(
        "UPDATE payments SET status = 'SUCCEEDED', gateway_payment_id = $2, updated_at = now(),
                settled = CASE WHEN $3 THEN 'REFUNDED' END
          WHERE id = $1",
    )
    .bind(payment_id)
    .bind(gateway_id)
    .bind(late)
    .execute(&mut **tx)
    .await?;
    crate::outbox::record(
        tx,
        show_id,
        payment_id,
        "payment.succeeded",
        serde_json::json!({ "user_id": user_id, "payment_id": payment_id, "gateway_payment_id": gateway_id }),
    )
    .await?;
    if !late {
        if let Some(key) = &idem_key {
            idempotency::advance(tx, &user_id, key, RecoveryPoint::PaymentSucceeded).await?;
        }
        return Ok(true);
    }
    let refund_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO refunds (id, payment_id, reason, amount_minor) VALUES ($1, $2, 'late_charge', $3)",
    )
    .bind(refund_id)
    .bind(payment_id)
    .bind(amount)
    .execute(&mut **tx)
    .await?;
    crate::outbox::record(
        tx,
        show_id,
        payment_id,
        "booking.failed",
        serde_json::json!({
            "user_id": user_id, "payment_id": payment_id, "refund_id": refund_id,
            "amount_minor": amount, "currency": currency,
            "reason": "the charge arrived after the payment was closed",
        }),
    )
    .await?;
    // The key's stored answer said "not charged" (402): that is no longer
    // true. A retry now learns the charge and its refund.
    if let Some(key) = &idem_key {
        let resp = idempotency::error_response(
            409,
            "payment_refunded",
            "your card was charged after this payment had been closed; the full amount is being refunded",
            Some(serde_json::json!({
                "payment_id": payment_id, "refund_id": refund_id,
                "amount_minor": amount, "currency": currency,
            })),
        );
        idempotency::replace_answer(tx, &user_id, key, &resp).await?;
    }
    tracing::warn!(%payment_id, %refund_id, "late charge on a closed payment; refunding");
    metrics::counter!("payments_late_charge_total").increment(1);
    Ok(true)
}

/// Records a charge the gateway refused and finishes its key with 402.
/// Returns that response (None if the payment was no longer in flight).
pub async fn record_failure(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    payment_id: Uuid,
    gateway_id: Option<&str>,
    code: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    finish_unpaid(tx, payment_id, "FAILED", gateway_id, code).await
}

/// Marks an in-flight payment FAILED or ABANDONED (never charged) and
/// finishes its key. Returns the stored response, None if the payment
/// was not in flight any more.
pub async fn finish_unpaid(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    payment_id: Uuid,
    status: &str,
    gateway_id: Option<&str>,
    code: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    let row: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
        "UPDATE payments SET status = $2, gateway_payment_id = COALESCE($3, gateway_payment_id),
                failure_code = $4, updated_at = now()
          WHERE id = $1 AND status = 'CREATED'
        RETURNING show_id, user_id, idem_key",
    )
    .bind(payment_id)
    .bind(status)
    .bind(gateway_id)
    .bind(code)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((show_id, user_id, idem_key)) = row else {
        return Ok(None);
    };
    let details = serde_json::json!({ "payment_id": payment_id, "reason": code });
    let resp = if status == "FAILED" {
        let declined = code == "card_declined";
        idempotency::error_response(
            402,
            if declined {
                "payment_declined"
            } else {
                "payment_failed"
            },
            if declined {
                "the card was declined; nothing was charged. Try another payment method with a new Idempotency-Key"
            } else {
                "the payment failed; nothing was charged. Retry with a new Idempotency-Key"
            },
            Some(details.clone()),
        )
    } else {
        idempotency::error_response(
            402,
            "payment_abandoned",
            "the payment never reached the provider; nothing was charged. Retry with a new Idempotency-Key",
            Some(details.clone()),
        )
    };
    if let Some(key) = &idem_key {
        idempotency::finish(tx, &user_id, key, &resp).await?;
    }
    let mut payload = details;
    payload["user_id"] = serde_json::json!(user_id);
    crate::outbox::record(tx, show_id, payment_id, "payment.failed", payload).await?;
    Ok(Some(resp))
}
