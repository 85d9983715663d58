//! Settling a charged payment: the one place that turns a succeeded
//! payment into a confirmed booking, or, when the hold can no longer be
//! honoured, into a refund (the saga's compensation). The checkout, the
//! gateway webhook and reconciliation all come here; the payment row's
//! lock and its `settled` column make it happen once.

use super::machine::PaymentStatus;
use crate::bookings::store as bookings;
use crate::config::Settings;
use crate::holds::store as holds;
use crate::idempotency::{self, StoredResponse};
use crate::outbox;
use crate::redis_path::RedisPath;
use crate::shows::ShowCache;
use chrono::Utc;
use shared::booking_number::BookingNumber;
use shared::{SeatState, ShowId};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

mod batch;
pub use batch::{confirm_batch, Confirmation};

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
    admission_pass_id: Option<String>,
}

/// What settling needs besides its transaction (cheap to clone; built
/// once from the app's state: `AppState::settle_ctx`).
#[derive(Clone)]
pub struct Ctx {
    /// This shard's Postgres (layouts on a cache miss).
    pub db: PgPool,
    /// Shard code (booking numbers) and the negative control's switch.
    pub settings: Arc<Settings>,
    /// To mark booked seats in the fast path and the live seat map.
    pub redis: RedisPath,
    /// Show layouts (the start time bounds the booked marks' lifetime).
    pub shows: ShowCache,
    /// Wakes the outbox relay after a commit that wrote events.
    pub outbox_kick: Arc<Notify>,
    /// Wakes the refund worker after a commit that created a refund.
    pub refund_kick: Arc<Notify>,
}

/// What settling did, with what must follow its commit.
#[derive(Debug)]
pub struct Settled {
    /// The decision.
    pub settlement: Settlement,
    /// Seats booked now (to mark in Redis after the commit).
    pub booked: Option<BookedSeats>,
    /// The key's final answer, when settling finished a key.
    pub response: Option<StoredResponse>,
    /// The admission pass the hold was taken with (spent now).
    pub pass: Option<String>,
}

/// Seats a settlement booked, for the fast path and the live map.
#[derive(Debug, Clone)]
pub struct BookedSeats {
    /// Their show.
    pub show: ShowId,
    /// Seat labels.
    pub labels: Vec<String>,
    /// Seat ordinals.
    pub ordinals: Vec<i32>,
    /// The booking.
    pub booking: Uuid,
}

impl Settled {
    /// Nothing was done.
    pub fn nothing() -> Self {
        Self {
            settlement: Settlement::Nothing,
            booked: None,
            response: None,
            pass: None,
        }
    }
}

/// Confirms or refunds a succeeded payment on `conn`, inside the caller's
/// transaction; the caller commits, then calls [`after_commit`].
pub async fn settle_in(
    ctx: &Ctx,
    conn: &mut PgConnection,
    payment_id: Uuid,
) -> anyhow::Result<Settled> {
    confirm_in(ctx, conn, payment_id, None).await
}

/// Records a charge the gateway confirmed (`gateway_id`, from the
/// checkout, the webhook or reconciliation) and settles it, on `conn`,
/// in the caller's transaction: one read of the payment, one update of
/// it. Without `gateway_id`, settles a charge recorded earlier. A charge
/// that lands on a payment closed as failed or abandoned is refunded at
/// once (`record::record_late_charge`).
pub async fn confirm_in(
    ctx: &Ctx,
    conn: &mut PgConnection,
    payment_id: Uuid,
    gateway_id: Option<&str>,
) -> anyhow::Result<Settled> {
    let payment = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, status AS "status: PaymentStatus", settled, hold_id, show_id, user_id,
                  idem_key, amount_minor, currency
             FROM payments WHERE id = $1 FOR UPDATE"#,
        payment_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(payment) = payment else {
        return Ok(Settled::nothing()); // not ours (a stray webhook reference)
    };
    let charged_now = match (gateway_id, payment.status) {
        (Some(gateway_id), PaymentStatus::Created) => Some(gateway_id),
        (Some(gateway_id), PaymentStatus::Failed | PaymentStatus::Abandoned) => {
            let late = super::record::LateCharge {
                payment_id,
                show_id: payment.show_id,
                user_id: &payment.user_id,
                idem_key: payment.idem_key.as_deref(),
                amount_minor: payment.amount_minor,
                currency: &payment.currency,
            };
            super::record::record_late_charge(conn, &late, gateway_id).await?;
            return Ok(Settled::nothing());
        }
        (_, PaymentStatus::Succeeded) if payment.settled.is_none() => None,
        _ => return Ok(Settled::nothing()),
    };
    // Lock order everywhere: seat rows, then the hold (as holds do).
    let owned = holds::lock_owned_seat_ids(conn, payment.show_id, payment.hold_id).await?;
    let hold = sqlx::query_as!(
        HoldRow,
        "SELECT state, expires_at, seat_count, admission_pass_id FROM holds WHERE id = $1 FOR UPDATE",
        payment.hold_id
    )
    .fetch_one(&mut *conn)
    .await?;
    // Under the show row's lock (`show_cancel::store`): a cancellation
    // either committed before (refund), or waits for this booking (and
    // then cancels it with a full refund).
    let cancelled = crate::show_cancel::store::lock_cancelled(conn, &[payment.show_id]).await?;
    let now = Utc::now();
    let protect = !ctx.settings.unsafe_disable_seat_protection;
    let why_not = if cancelled.contains(&payment.show_id) {
        Some("the show was cancelled".to_owned())
    } else {
        refusal(
            &hold.state,
            hold.expires_at,
            owned.len(),
            hold.seat_count as usize,
            now,
            protect,
        )
    };
    let charge = Charge {
        payment: &payment,
        gateway_id: charged_now,
    };
    match why_not {
        None => book(ctx, conn, &charge, &owned, &hold, now, protect).await,
        Some(why_not) => compensate(conn, &charge, &why_not).await,
    }
}

/// The payment being settled, and the gateway's id when the charge is
/// recorded in the same step.
struct Charge<'a> {
    payment: &'a PaymentRow,
    gateway_id: Option<&'a str>,
}

impl Charge<'_> {
    /// Marks the payment settled (and succeeded, when the charge is
    /// recorded now).
    async fn close(&self, conn: &mut PgConnection, settled: &str) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE payments SET status = 'SUCCEEDED', settled = $2,
                    gateway_payment_id = COALESCE($3, gateway_payment_id), updated_at = now()
              WHERE id = $1",
            self.payment.id,
            settled,
            self.gateway_id
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The events of this settlement: `payment.succeeded` first when the
    /// charge is recorded now, then `outcome`.
    fn events<'e>(
        &self,
        outcome: (Uuid, &'e str, serde_json::Value),
    ) -> Vec<(Uuid, &'e str, serde_json::Value)> {
        let p = self.payment;
        let mut events = Vec::with_capacity(2);
        if let Some(gateway_id) = self.gateway_id {
            events.push((
                p.id,
                "payment.succeeded",
                serde_json::json!({ "user_id": p.user_id, "payment_id": p.id, "gateway_payment_id": gateway_id }),
            ));
        }
        events.push(outcome);
        events
    }
}

/// What follows the commit of settlements: booked seats marked in Redis
/// (one seat-map update for all), the outbox relay and refund worker
/// woken, counters and logs.
pub async fn after_commit(ctx: &Ctx, done: &[Settled]) {
    let mut changes: HashMap<ShowId, Vec<(i32, SeatState)>> = HashMap::new();
    let mut marks = Vec::new();
    let mut refunded = false;
    for s in done {
        match &s.settlement {
            Settlement::Booked(_) => metrics::counter!("bookings_confirmed_total").increment(1),
            Settlement::Refunded(_) => {
                refunded = true;
                metrics::counter!("checkout_compensated_total").increment(1);
            }
            Settlement::Nothing => {}
        }
        if let Some(b) = &s.booked {
            changes
                .entry(b.show)
                .or_default()
                .extend(b.ordinals.iter().map(|o| (*o, SeatState::Booked)));
            marks.push(mark_booked_in_redis(ctx, b));
        }
    }
    if done
        .iter()
        .any(|s| !matches!(s.settlement, Settlement::Nothing))
    {
        ctx.outbox_kick.notify_one();
    }
    if refunded {
        ctx.refund_kick.notify_one();
    }
    futures::future::join_all(marks).await;
    if !changes.is_empty() {
        ctx.redis
            .seatmap_update(&changes.into_iter().collect::<Vec<_>>())
            .await;
    }
}

/// The hold is good: books it on `conn` (which holds the payment's, the
/// hold's and the `owned` seats' locks).
async fn book(
    ctx: &Ctx,
    conn: &mut PgConnection,
    charge: &Charge<'_>,
    owned: &[(i32, Uuid)],
    hold: &HoldRow,
    now: chrono::DateTime<Utc>,
    protect: bool,
) -> anyhow::Result<Settled> {
    let payment = charge.payment;
    let (payment_id, show_id, user_id) = (payment.id, payment.show_id, &payment.user_id);
    let booking_id = Uuid::now_v7();
    let seq = sqlx::query_scalar!(r#"SELECT nextval('booking_number_seq') AS "seq!""#)
        .fetch_one(&mut *conn)
        .await?;
    let number = BookingNumber::new(now.date_naive(), &ctx.settings.shard_code, seq as u64)?;
    let seat_ids: Vec<Uuid> = if protect {
        owned.iter().map(|(_, id)| *id).collect()
    } else {
        // The negative control: every seat the hold named.
        bookings::hold_seat_ids(conn, show_id, payment.hold_id).await?
    };
    bookings::insert_confirmed(
        conn,
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
        &seat_ids,
    )
    .await?;
    if hold.admission_pass_id.is_some() {
        crate::holds::flash_sale::spend(conn, payment.hold_id, booking_id).await?;
    }
    charge.close(conn, "BOOKED").await?;
    let view = bookings::load_view(conn, booking_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("booking {booking_id} vanished"))?;
    let labels: Vec<&str> = view.seats.iter().map(|s| s.label.as_str()).collect();
    let events = charge.events(confirmed_event(payment, booking_id, &number, &labels));
    outbox::record_many(conn, show_id, &events).await?;
    let mut response = None;
    if let Some(key) = &payment.idem_key {
        let body = serde_json::to_vec(&view)?;
        let stored = StoredResponse { status: 201, body };
        idempotency::store::finish(conn, user_id, key, &stored).await?;
        response = Some(stored);
    }
    Ok(Settled {
        settlement: Settlement::Booked(booking_id),
        booked: Some(BookedSeats {
            show: ShowId(show_id),
            labels: view.seats.iter().map(|s| s.label.clone()).collect(),
            ordinals: owned.iter().map(|(o, _)| *o).collect(),
            booking: booking_id,
        }),
        response,
        pass: hold.admission_pass_id.clone(),
    })
}

/// The `booking.confirmed` event of a booking: (aggregate, type, payload).
fn confirmed_event(
    payment: &PaymentRow,
    booking_id: Uuid,
    number: &BookingNumber,
    labels: &[&str],
) -> (Uuid, &'static str, serde_json::Value) {
    (
        booking_id,
        "booking.confirmed",
        serde_json::json!({
            "user_id": payment.user_id,
            "booking_id": booking_id,
            "number": number,
            "payment_id": payment.id,
            "show_id": payment.show_id,
            "seats": labels,
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
        }),
    )
}

/// Compensation: the hold cannot be honoured (`why_not`), so the money
/// goes back in full. Schedules the refund on `conn`.
async fn compensate(
    conn: &mut PgConnection,
    charge: &Charge<'_>,
    why_not: &str,
) -> anyhow::Result<Settled> {
    let payment = charge.payment;
    let (payment_id, amount) = (payment.id, payment.amount_minor);
    let refund_id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO refunds (id, payment_id, reason, amount_minor) VALUES ($1, $2, 'confirmation_failed', $3)",
        refund_id,
        payment_id,
        amount
    )
    .execute(&mut *conn)
    .await?;
    charge.close(conn, "REFUNDED").await?;
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
    let events = charge.events((payment_id, "booking.failed", payload));
    outbox::record_many(conn, payment.show_id, &events).await?;
    let mut response = None;
    if let Some(key) = &payment.idem_key {
        let resp = idempotency::error_response(
            409,
            "confirmation_failed",
            &format!("payment received but {why_not}; the full amount is being refunded"),
            Some(details),
        );
        idempotency::store::finish(conn, &payment.user_id, key, &resp).await?;
        response = Some(resp);
    }
    tracing::warn!(%payment_id, %refund_id, reason = %why_not, "charged payment could not be booked; refunding");
    Ok(Settled {
        settlement: Settlement::Refunded(refund_id),
        booked: None,
        response,
        pass: None,
    })
}

/// Booked seats stay taken in the fast path (value `booked:<id>`) until
/// well after the show, so new holds on them fail in Redis, not later.
async fn mark_booked_in_redis(ctx: &Ctx, b: &BookedSeats) {
    let ttl = match ctx.shows.get(&ctx.db, b.show).await {
        Ok(Some(layout)) => (layout.starts_at - Utc::now() + chrono::Duration::hours(6))
            .to_std()
            .unwrap_or_default(),
        _ => std::time::Duration::from_secs(24 * 3600),
    };
    let refs: Vec<&str> = b.labels.iter().map(String::as_str).collect();
    if let Err(e) = ctx
        .redis
        .assert_value(
            b.show,
            &refs,
            &crate::redis_path::booked_value(b.booking),
            ttl,
        )
        .await
    {
        tracing::debug!(error = %e, "booked seats not marked in redis; recovery will");
    }
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
