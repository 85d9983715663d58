//! The checkout's two writes as group-commit jobs (`group_commit`): the
//! first ([`Begin`]: the key taken and the payment recorded before the
//! charge) and the last ([`Confirm`]: the charge recorded and the booking
//! confirmed, or refunded, after it). Concurrent checkouts share both
//! transactions, each booking still all-or-nothing in its savepoint, so a
//! purchase costs two shared commits and no request handler ever holds a
//! pooled connection, least of all while the gateway thinks.

use super::machine::PaymentStatus;
use super::settle::{self, Ctx, Settled};
use crate::error::ApiError;
use crate::group_commit::{GroupCommit, Job, Sizing};
use crate::holds::rules::{not_active_error, show_started};
use crate::idempotency::{self, KeyState, RecoveryPoint, StoredResponse};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::{PgConnection, PgPool};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The payment row a key created.
#[derive(Debug, Clone)]
pub struct KeyPayment {
    /// Payment id (the gateway's idempotency key).
    pub id: Uuid,
    /// The show paid for.
    pub show_id: Uuid,
    /// Its status now.
    pub status: PaymentStatus,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// The gateway token to charge.
    pub payment_method: String,
}

/// Phase 1: take the key (or find it), and for a new key check the hold
/// and record the payment.
pub struct Begin {
    pub user: String,
    pub key: String,
    pub hash: String,
    pub hold_id: Uuid,
    pub payment_method: String,
    pub lock_timeout: Duration,
    pub now: DateTime<Utc>,
}

/// Where phase 1 left the request.
#[derive(Debug)]
pub enum Begun {
    /// The key is finished: its stored answer.
    Replay(StoredResponse),
    /// The key was unfinished and is now locked by this request.
    Resume {
        point: RecoveryPoint,
        payment: KeyPayment,
    },
    /// New key: it and the payment are recorded (`payment_created`).
    Created(KeyPayment),
}

fn shard_of(id: &Uuid) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Job for Begin {
    type Ctx = Ctx;
    type Out = Begun;

    // One hold's checkouts (and so one key's retries) meet in one writer.
    fn shard(&self) -> u64 {
        shard_of(&self.hold_id)
    }

    fn run<'a>(
        &'a self,
        _ctx: &'a Ctx,
        conn: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<Begun, ApiError>> {
        async move {
            let state = idempotency::store::begin(
                conn,
                &self.user,
                &self.key,
                &self.hash,
                self.lock_timeout,
                self.now,
            )
            .await?;
            match state {
                KeyState::Replay(r) => Ok(Begun::Replay(r)),
                KeyState::Resume(point) => {
                    let payment = payment_of_key(conn, &self.user, &self.key).await?;
                    Ok(Begun::Resume { point, payment })
                }
                KeyState::New => create_payment(conn, self).await.map(Begun::Created),
            }
        }
        .boxed()
    }

    fn after_commit<'a>(_ctx: &'a Ctx, _done: &'a [Begun]) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }
}

/// Phase 3: record the gateway's success (when this request learned it)
/// and settle: the booking confirmed, or the charge refunded.
pub struct Confirm {
    pub user: String,
    pub key: String,
    pub show_id: Uuid,
    pub payment_id: Uuid,
    /// The gateway's id of the charge, when this request made it; `None`
    /// when someone else (webhook, reconciliation) recorded it.
    pub gateway_id: Option<String>,
}

impl Job for Confirm {
    type Ctx = Ctx;
    type Out = Settled;

    // One show's seat rows are locked by one writer only.
    fn shard(&self) -> u64 {
        shard_of(&self.show_id)
    }

    fn run<'a>(
        &'a self,
        ctx: &'a Ctx,
        conn: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<Settled, ApiError>> {
        async move {
            let mut settled =
                settle::confirm_in(ctx, conn, self.payment_id, self.gateway_id.as_deref()).await?;
            if settled.response.is_none() {
                // Settled earlier (a webhook got there first): the key was
                // finished with it.
                settled.response =
                    idempotency::store::response_of(conn, &self.user, &self.key).await?;
            }
            Ok(settled)
        }
        .boxed()
    }

    fn after_commit<'a>(ctx: &'a Ctx, done: &'a [Settled]) -> BoxFuture<'a, ()> {
        settle::after_commit(ctx, done).boxed()
    }
}

/// The checkout's writers.
#[derive(Clone)]
pub struct CheckoutWriters {
    /// Phase 1.
    pub begin: GroupCommit<Begin>,
    /// Phase 3.
    pub confirm: GroupCommit<Confirm>,
}

impl CheckoutWriters {
    /// Spawns both kinds of writer, `sizing` each.
    pub fn spawn(db: PgPool, ctx: Ctx, sizing: Sizing) -> Self {
        let ctx = Arc::new(ctx);
        Self {
            begin: GroupCommit::spawn("checkout_begin", db.clone(), ctx.clone(), sizing),
            confirm: GroupCommit::spawn("checkout_confirm", db, ctx, sizing),
        }
    }
}

/// What a hold costs, once it is checked payable.
struct Payable {
    show_id: Uuid,
    amount: i64,
    currency: String,
}

/// Checks the hold can be paid for (the caller's, live, its show not
/// started, its pass not spent on another hold, seats still its own and
/// not free) and prices it: one read.
async fn payable(
    conn: &mut PgConnection,
    user: &str,
    hold_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Payable, ApiError> {
    let row = sqlx::query!(
        r#"SELECT h.show_id, h.user_id, h.state, h.expires_at, sh.starts_at, sh.currency,
                  EXISTS (SELECT 1 FROM spent_passes sp
                           WHERE sp.pass_id = h.admission_pass_id) AS "pass_spent!",
                  (SELECT sum((sh.prices ->> s.category)::bigint)
                     FROM hold_seats hs JOIN seats s ON s.id = hs.seat_id
                    WHERE hs.hold_id = h.id AND hs.live)::bigint AS amount
             FROM holds h JOIN shows sh ON sh.id = h.show_id
            WHERE h.id = $1"#,
        hold_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let hold = match row {
        Some(h) if h.user_id == user => h,
        _ => {
            return Err(ApiError::not_found(
                "unknown_hold",
                format!("no hold {hold_id}"),
            ))
        }
    };
    if hold.state != shared::api::HoldState::Active.as_db_str() || hold.expires_at <= now {
        // Rare: the whole hold, for the same answer its own endpoints give.
        let whole = crate::holds::store::fetch(conn, hold_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("hold {hold_id} vanished"))?;
        return Err(not_active_error(&whole, now));
    }
    if now >= hold.starts_at {
        return Err(show_started());
    }
    // A pass buys once: another hold taken with it cannot be paid for.
    if hold.pass_spent {
        return Err(crate::holds::flash_sale::pass_used());
    }
    let Some(amount) = hold.amount else {
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
        currency: hold.currency,
    })
}

/// Checks the hold and records key + payment (nothing is stored when the
/// hold is not the caller's or not live: the savepoint rolls back).
async fn create_payment(conn: &mut PgConnection, b: &Begin) -> Result<KeyPayment, ApiError> {
    let Payable {
        show_id,
        amount,
        currency,
    } = payable(conn, &b.user, b.hold_id, b.now).await?;
    idempotency::store::insert(
        conn,
        &b.user,
        &b.key,
        &b.hash,
        RecoveryPoint::PaymentCreated,
        b.now,
    )
    .await
    .map_err(idempotency::store::insert_error)?;
    let id = Uuid::now_v7();
    let inserted = sqlx::query!(
        "INSERT INTO payments (id, hold_id, show_id, user_id, idem_key, amount_minor, currency, payment_method)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        id,
        b.hold_id,
        show_id,
        &b.user,
        &b.key,
        amount,
        &currency,
        &b.payment_method
    )
    .execute(&mut *conn)
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
    Ok(KeyPayment {
        id,
        show_id,
        status: PaymentStatus::Created,
        amount_minor: amount,
        currency,
        payment_method: b.payment_method.clone(),
    })
}

async fn payment_of_key(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
) -> Result<KeyPayment, ApiError> {
    let row = sqlx::query_as!(
        KeyPayment,
        r#"SELECT id, show_id, status AS "status: PaymentStatus", amount_minor, currency,
                  payment_method
             FROM payments WHERE user_id = $1 AND idem_key = $2"#,
        user,
        key
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.ok_or_else(|| anyhow::anyhow!("key {key} has no payment"))?)
}
