//! Settling a charged payment: the one place that turns a succeeded
//! payment into a confirmed booking, or, when the hold can no longer be
//! honoured, into a refund (the saga's compensation). The checkout, the
//! gateway webhook and reconciliation all come here; the payment row's
//! lock and its `settled` column make it happen once.

use super::machine::PaymentStatus;
use crate::bookings::store as bookings;
use crate::holds::store as holds;
use crate::idempotency::{self, StoredResponse};
use crate::outbox;
use crate::state::AppState;
use chrono::Utc;
use shared::booking_number::BookingNumber;
use shared::{SeatState, ShowId};
use uuid::Uuid;

/// What settling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// A booking was confirmed now.
    Booked(Uuid),
    /// The hold could not be honoured; a refund was scheduled now.
    Refunded(Uuid),
    /// Nothing to do: not charged, or already settled.
    Nothing,
}

/// A payment row as settling reads it.
struct PaymentRow {
    id: Uuid,
    status: PaymentStatus,
    settled: Option<String>,
    hold_id: Uuid,
    show_id: Uuid,
    user_id: String,
    idem_key: Option<String>,
    amount_minor: i64,
    currency: String,
}

/// The hold a payment pays for, as settling reads it.
struct HoldRow {
    state: String,
    expires_at: chrono::DateTime<Utc>,
    seat_count: i32,
}

/// Confirms or refunds a succeeded payment, exactly once.
pub async fn settle(state: &AppState, payment_id: Uuid) -> anyhow::Result<Settlement> {
    let mut tx = state.db.begin().await?;
    let payment = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, status AS "status: PaymentStatus", settled, hold_id, show_id, user_id,
                  idem_key, amount_minor, currency
             FROM payments WHERE id = $1 FOR UPDATE"#,
        payment_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(payment) = payment else {
        return Ok(Settlement::Nothing); // not ours (a stray webhook reference)
    };
    if payment.status != PaymentStatus::Succeeded || payment.settled.is_some() {
        return Ok(Settlement::Nothing);
    }
    // Lock order everywhere: seat rows, then the hold (as holds do).
    let owned = holds::lock_owned_seats(&mut tx, payment.show_id, payment.hold_id).await?;
    let hold = sqlx::query_as!(
        HoldRow,
        "SELECT state, expires_at, seat_count FROM holds WHERE id = $1 FOR UPDATE",
        payment.hold_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let now = Utc::now();
    let protect = !state.settings.unsafe_disable_seat_protection;
    let why_not = refusal(
        &hold.state,
        hold.expires_at,
        owned.len(),
        hold.seat_count as usize,
        now,
        protect,
    );
    match why_not {
        None => book(state, tx, &payment, &owned, now, protect).await,
        Some(why_not) => compensate(state, tx, &payment, &why_not).await,
    }
}

/// The hold is good: books it, in `tx` (which holds the payment's, the
/// hold's and the `owned` seats' locks), and commits.
async fn book(
    state: &AppState,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    payment: &PaymentRow,
    owned: &[i32],
    now: chrono::DateTime<Utc>,
    protect: bool,
) -> anyhow::Result<Settlement> {
    let (payment_id, show_id, user_id) = (payment.id, payment.show_id, &payment.user_id);
    let booking_id = Uuid::now_v7();
    let seq = sqlx::query_scalar!(r#"SELECT nextval('booking_number_seq') AS "seq!""#)
        .fetch_one(&mut *tx)
        .await?;
    let number = BookingNumber::new(now.date_naive(), &state.settings.shard_code, seq as u64)?;
    bookings::insert_confirmed(
        &mut tx,
        &bookings::NewBooking {
            id: booking_id,
            number: number.clone(),
            show_id,
            hold_id: payment.hold_id,
            payment_id,
            user_id: user_id.clone(),
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
        },
        protect,
    )
    .await?;
    crate::holds::flash_sale::spend(&mut tx, payment.hold_id, booking_id).await?;
    sqlx::query!(
        "UPDATE payments SET settled = 'BOOKED', updated_at = now() WHERE id = $1",
        payment_id
    )
    .execute(&mut *tx)
    .await?;
    let view = bookings::load_view(&mut tx, booking_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("booking {booking_id} vanished"))?;
    outbox::record(
        &mut tx,
        show_id,
        booking_id,
        "booking.confirmed",
        serde_json::json!({
            "user_id": user_id,
            "booking_id": booking_id,
            "number": number,
            "payment_id": payment_id,
            "show_id": show_id,
            "seats": view.seats.iter().map(|s| &s.label).collect::<Vec<_>>(),
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
        }),
    )
    .await?;
    if let Some(key) = &payment.idem_key {
        let body = serde_json::to_vec(&view)?;
        idempotency::store::finish(&mut tx, user_id, key, &StoredResponse { status: 201, body })
            .await?;
    }
    tx.commit().await?;
    state.outbox_kick.notify_one();
    metrics::counter!("bookings_confirmed_total").increment(1);
    let labels: Vec<String> = view.seats.iter().map(|s| s.label.clone()).collect();
    mark_booked_in_redis(state, ShowId(show_id), &labels, booking_id, owned).await;
    Ok(Settlement::Booked(booking_id))
}

/// Compensation: the hold cannot be honoured (`why_not`), so the money
/// goes back in full. Schedules the refund in `tx` and commits.
async fn compensate(
    state: &AppState,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    payment: &PaymentRow,
    why_not: &str,
) -> anyhow::Result<Settlement> {
    let (payment_id, amount) = (payment.id, payment.amount_minor);
    let refund_id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO refunds (id, payment_id, reason, amount_minor) VALUES ($1, $2, 'confirmation_failed', $3)",
        refund_id,
        payment_id,
        amount
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE payments SET settled = 'REFUNDED', updated_at = now() WHERE id = $1",
        payment_id
    )
    .execute(&mut *tx)
    .await?;
    let details = serde_json::json!({
        "payment_id": payment_id,
        "refund_id": refund_id,
        "amount_minor": amount,
        "currency": payment.currency,
    });
    let mut payload = details.clone();
    payload["user_id"] = serde_json::json!(payment.user_id);
    payload["hold_id"] = serde_json::json!(payment.hold_id);
    payload["reason"] = serde_json::json!(why_not);
    outbox::record(
        &mut tx,
        payment.show_id,
        payment_id,
        "booking.failed",
        payload,
    )
    .await?;
    if let Some(key) = &payment.idem_key {
        let resp = idempotency::error_response(
            409,
            "confirmation_failed",
            &format!("payment received but {why_not}; the full amount is being refunded"),
            Some(details),
        );
        idempotency::store::finish(&mut tx, &payment.user_id, key, &resp).await?;
    }
    tx.commit().await?;
    state.outbox_kick.notify_one();
    state.refund_kick.notify_one();
    metrics::counter!("checkout_compensated_total").increment(1);
    tracing::warn!(%payment_id, %refund_id, reason = %why_not, "charged payment could not be booked; refunding");
    Ok(Settlement::Refunded(refund_id))
}

/// Booked seats stay taken in the fast path (value `booked:<id>`) until
/// well after the show, so new holds on them fail in Redis, not later.
async fn mark_booked_in_redis(
    state: &AppState,
    show: ShowId,
    labels: &[String],
    booking: Uuid,
    ordinals: &[i32],
) {
    let ttl = match state.shows.get(&state.db, show).await {
        Ok(Some(layout)) => (layout.starts_at - Utc::now() + chrono::Duration::hours(6))
            .to_std()
            .unwrap_or_default(),
        _ => std::time::Duration::from_secs(24 * 3600),
    };
    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    if let Err(e) = state
        .redis
        .assert_value(show, &refs, &crate::redis_path::booked_value(booking), ttl)
        .await
    {
        tracing::debug!(error = %e, "booked seats not marked in redis; recovery will");
    }
    state
        .redis
        .seatmap_update(&[(
            show,
            ordinals.iter().map(|o| (*o, SeatState::Booked)).collect(),
        )])
        .await;
}

/// Why a charged hold cannot be booked, if it cannot (pure; the caller
/// has locked the hold and the seats it still owns). `protect = false`
/// is the tests' negative control: book whatever the hold named.
pub fn refusal(
    hold_state: &str,
    expires_at: chrono::DateTime<Utc>,
    owned_seats: usize,
    seat_count: usize,
    now: chrono::DateTime<Utc>,
    protect: bool,
) -> Option<String> {
    if !protect {
        None
    } else if hold_state != shared::api::HoldState::Active.as_db_str() {
        Some(format!("the hold is {}", hold_state.to_lowercase()))
    } else if expires_at <= now {
        Some("the hold expired before the payment completed".to_owned())
    } else if owned_seats != seat_count {
        Some("the hold no longer owns all its seats".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;
    use chrono::{Duration, Utc};

    #[test]
    fn only_a_live_hold_owning_every_seat_is_booked() {
        let now = Utc::now();
        let later = now + Duration::seconds(30);
        assert_eq!(refusal("ACTIVE", later, 2, 2, now, true), None);
        assert!(refusal("ACTIVE", now, 2, 2, now, true)
            .unwrap()
            .contains("expired"));
        assert!(refusal("ACTIVE", later, 1, 2, now, true)
            .unwrap()
            .contains("seats"));
        assert!(refusal("RELEASED", later, 2, 2, now, true)
            .unwrap()
            .contains("released"));
        assert!(refusal("EXPIRED", later, 0, 2, now, true).is_some());
        // The negative control books regardless.
        assert_eq!(refusal("EXPIRED", now, 0, 2, now, false), None);
    }
}
