//! Recording what the gateway said about a payment, from wherever the news
//! comes: the checkout itself, the gateway's webhook, or reconciliation.
//! Each function works in the caller's transaction and is idempotent (a
//! second report of the same outcome changes nothing), so the three
//! sources may race.

use super::machine::PaymentStatus;
use crate::idempotency::{self, StoredResponse};
use sqlx::PgConnection;
use uuid::Uuid;

/// A payment that was closed (FAILED or ABANDONED) when the gateway's
/// news of its charge arrived, as the caller read and locked it.
pub struct LateCharge<'a> {
    /// The payment.
    pub payment_id: Uuid,
    /// Its show (the events' city).
    pub show_id: Uuid,
    /// The buyer.
    pub user_id: &'a str,
    /// The key whose "not charged" answer is replaced.
    pub idem_key: Option<&'a str>,
    /// Amount charged, minor units.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: &'a str,
}

/// Records a charge that landed after its payment was closed (the buyer
/// was told nothing was charged) and refunds it at once, in the caller's
/// transaction (`settle::confirm_in` decides when this is the case).
pub async fn record_late_charge(
    tx: &mut PgConnection,
    late: &LateCharge<'_>,
    gateway_id: &str,
) -> Result<(), sqlx::Error> {
    let payment_id = late.payment_id;
    sqlx::query!(
        "UPDATE payments SET status = 'SUCCEEDED', gateway_payment_id = $2, updated_at = now(),
                settled = 'REFUNDED'
          WHERE id = $1",
        payment_id,
        gateway_id
    )
    .execute(&mut *tx)
    .await?;
    crate::outbox::record(
        tx,
        late.show_id,
        payment_id,
        "payment.succeeded",
        serde_json::json!({ "user_id": late.user_id, "payment_id": payment_id, "gateway_payment_id": gateway_id }),
    )
    .await?;
    let refund_id = refund_late_charge(tx, late).await?;
    tracing::warn!(%payment_id, %refund_id, "late charge on a closed payment; refunding");
    metrics::counter!("payments_late_charge_total").increment(1);
    Ok(())
}

/// A charge on a closed payment is refunded in full at once: the refund
/// row, the buyer told (`booking.failed`), and the key's stored "not
/// charged" answer replaced (a retry learns the charge and its refund).
async fn refund_late_charge(
    tx: &mut PgConnection,
    late: &LateCharge<'_>,
) -> Result<Uuid, sqlx::Error> {
    let (payment_id, show_id, user_id, amount, currency) = (
        late.payment_id,
        late.show_id,
        late.user_id,
        late.amount_minor,
        late.currency,
    );
    let refund_id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO refunds (id, payment_id, reason, amount_minor) VALUES ($1, $2, 'late_charge', $3)",
        refund_id,
        payment_id,
        amount
    )
    .execute(&mut *tx)
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
    if let Some(key) = late.idem_key {
        let resp = idempotency::error_response(
            409,
            "payment_refunded",
            "your card was charged after this payment had been closed; the full amount is being refunded",
            Some(serde_json::json!({
                "payment_id": payment_id, "refund_id": refund_id,
                "amount_minor": amount, "currency": currency,
            })),
        );
        idempotency::store::replace_answer(tx, user_id, key, &resp).await?;
    }
    Ok(refund_id)
}

/// Records a charge the gateway refused and finishes its key with 402.
/// Returns that response (None if the payment was no longer in flight).
pub async fn record_failure(
    tx: &mut PgConnection,
    payment_id: Uuid,
    gateway_id: Option<&str>,
    code: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    finish_unpaid(tx, payment_id, Unpaid::Failed, gateway_id, code).await
}

/// How an in-flight payment ended without a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpaid {
    /// The gateway declined or refused it.
    Failed,
    /// It never reached the gateway (reconciliation voided it).
    Abandoned,
}

impl Unpaid {
    fn status(self) -> PaymentStatus {
        match self {
            Self::Failed => PaymentStatus::Failed,
            Self::Abandoned => PaymentStatus::Abandoned,
        }
    }
}

/// Whom a payment closed unpaid concerns.
struct ClosedPayment {
    show_id: Uuid,
    user_id: String,
    idem_key: Option<String>,
}

/// Marks an in-flight payment FAILED or ABANDONED (never charged) and
/// finishes its key. Returns the stored response, None if the payment
/// was not in flight any more.
pub async fn finish_unpaid(
    tx: &mut PgConnection,
    payment_id: Uuid,
    how: Unpaid,
    gateway_id: Option<&str>,
    code: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    let row = sqlx::query_as!(
        ClosedPayment,
        "UPDATE payments SET status = $2, gateway_payment_id = COALESCE($3, gateway_payment_id),
                failure_code = $4, updated_at = now()
          WHERE id = $1 AND status = 'CREATED'
        RETURNING show_id, user_id, idem_key",
        payment_id,
        how.status() as PaymentStatus,
        gateway_id,
        code
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(ClosedPayment {
        show_id,
        user_id,
        idem_key,
    }) = row
    else {
        return Ok(None);
    };
    let details = serde_json::json!({ "payment_id": payment_id, "reason": code });
    let resp = if how == Unpaid::Failed {
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
        idempotency::store::finish(tx, &user_id, key, &resp).await?;
    }
    let mut payload = details;
    payload["user_id"] = serde_json::json!(user_id);
    crate::outbox::record(tx, show_id, payment_id, "payment.failed", payload).await?;
    Ok(Some(resp))
}
