//! The checkout's two writes as group-commit jobs (`group_commit`): the
//! first ([`Begin`]: the key taken and the payment recorded before the
//! charge) and the last ([`Confirm`]: the charge recorded and the booking
//! confirmed, or refunded, after it). Concurrent checkouts share both
//! transactions, each booking still all-or-nothing in its savepoint, so a
//! purchase costs two shared commits and no request handler ever holds a
//! pooled connection, least of all while the gateway thinks.

use super::machine::PaymentStatus;
use super::settle::{self, Confirmation, Ctx, Settled};
use crate::error::ApiError;
use crate::group_commit::{GroupCommit, Job, Sizing};
use crate::holds::rules::{not_active_error, show_cancelled, show_started};
use crate::idempotency::{self, KeyState, RecoveryPoint, StoredResponse};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::{PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
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

    fn run_together<'a>(
        _ctx: &'a Ctx,
        conn: &'a mut PgConnection,
        jobs: &'a [&'a Self],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Option<Begun>>>> {
        begin_together(conn, jobs).boxed()
    }
}

/// Phase 3: record the gateway's success and settle: the booking
/// confirmed, or the charge refunded. The checkout that made the charge
/// submits one; so does the gateway's webhook announcing it, and both go
/// through the same writer (whichever comes first books, the other finds
/// it settled), so neither costs a transaction of its own.
pub struct Confirm {
    pub payment_id: Uuid,
    /// The gateway's id of the charge, when the submitter learnt it; `None`
    /// when someone else (webhook, reconciliation) recorded it.
    pub gateway_id: Option<String>,
    /// The checkout waiting for the key's answer: (user, key).
    pub answer_to: Option<(String, String)>,
    /// The webhook delivery this comes from: (event id, event type). It
    /// is recorded with the confirmation, so a redelivery finds it done.
    pub delivery: Option<(String, String)>,
}

impl Job for Confirm {
    type Ctx = Ctx;
    type Out = Settled;

    // One payment's confirmations (the checkout's and the webhook's) meet
    // in one writer, often in one batch. Seat rows of different payments
    // never overlap, so writers do not wait on each other for them.
    fn shard(&self) -> u64 {
        shard_of(&self.payment_id)
    }

    fn run<'a>(
        &'a self,
        ctx: &'a Ctx,
        conn: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<Settled, ApiError>> {
        async move {
            if let Some((id, kind)) = &self.delivery {
                if !record_deliveries(conn, &[(id, kind)]).await?.contains(id) {
                    return Ok(Settled::nothing()); // delivered before
                }
            }
            let mut settled =
                settle::confirm_in(ctx, conn, self.payment_id, self.gateway_id.as_deref()).await?;
            if let (None, Some((user, key))) = (&settled.response, &self.answer_to) {
                // Settled earlier (a webhook got there first): the key was
                // finished with it.
                settled.response = idempotency::store::response_of(conn, user, key).await?;
            }
            Ok(settled)
        }
        .boxed()
    }

    fn after_commit<'a>(ctx: &'a Ctx, done: &'a [Settled]) -> BoxFuture<'a, ()> {
        settle::after_commit(ctx, done).boxed()
    }

    // Redeliveries answered at once, then the common case (a fresh charge
    // on a live hold) booked for the whole batch; the deliveries it took
    // recorded with one statement. A delivery left to `run` is recorded
    // there, with the rest of its work, so it must not be recorded here.
    fn run_together<'a>(
        ctx: &'a Ctx,
        conn: &'a mut PgConnection,
        jobs: &'a [&'a Self],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Option<Settled>>>> {
        async move {
            let ids: Vec<&str> = jobs
                .iter()
                .filter_map(|j| j.delivery.as_ref().map(|(id, _)| id.as_str()))
                .collect();
            let before: HashSet<String> = if ids.is_empty() {
                HashSet::new()
            } else {
                sqlx::query_scalar!(
                    "SELECT event_id FROM webhook_events WHERE event_id = ANY($1)",
                    &ids as &[&str]
                )
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect()
            };
            let mut first = HashSet::new();
            let repeated: Vec<bool> = jobs
                .iter()
                .map(|j| {
                    j.delivery
                        .as_ref()
                        .is_some_and(|(id, _)| before.contains(id) || !first.insert(id))
                })
                .collect();
            let batch: Vec<Confirmation<'_>> = jobs
                .iter()
                .zip(&repeated)
                .filter(|(_, repeated)| !**repeated)
                .map(|(j, _)| Confirmation {
                    payment_id: j.payment_id,
                    gateway_id: j.gateway_id.as_deref(),
                    key: j.answer_to.as_ref().map(|(_, key)| key.as_str()),
                })
                .collect();
            let mut done = settle::confirm_batch(ctx, conn, &batch).await?.into_iter();
            let out: Vec<Option<Settled>> = repeated
                .iter()
                .map(|repeated| match repeated {
                    // A redelivery is answered here: what it announced is done.
                    true => Some(Settled::nothing()),
                    false => done.next().flatten(),
                })
                .collect();
            let taken: Vec<(&String, &String)> = jobs
                .iter()
                .zip(&repeated)
                .zip(&out)
                .filter(|((_, repeated), done)| !**repeated && done.is_some())
                .filter_map(|((j, _), _)| j.delivery.as_ref().map(|(id, kind)| (id, kind)))
                .collect();
            if !taken.is_empty() {
                record_deliveries(conn, &taken).await?;
            }
            Ok(out)
        }
        .boxed()
    }
}

/// Records webhook deliveries (event id, type); returns the ids that were
/// new (the others were delivered before).
async fn record_deliveries(
    conn: &mut PgConnection,
    deliveries: &[(&String, &String)],
) -> Result<HashSet<String>, sqlx::Error> {
    let ids: Vec<&str> = deliveries.iter().map(|d| d.0.as_str()).collect();
    let kinds: Vec<&str> = deliveries.iter().map(|d| d.1.as_str()).collect();
    let fresh = sqlx::query_scalar!(
        "INSERT INTO webhook_events (event_id, event_type)
         SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT DO NOTHING
         RETURNING event_id",
        &ids as &[&str],
        &kinds as &[&str]
    )
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
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

/// A hold as checkout checks and prices it.
struct PayableRow {
    id: Uuid,
    show_id: Uuid,
    user_id: String,
    state: String,
    expires_at: DateTime<Utc>,
    starts_at: DateTime<Utc>,
    currency: String,
    pass_spent: bool,
    show_cancelled: bool,
    amount: Option<i64>,
}

/// Reads `holds` as checkout checks them (one statement for any number).
async fn payable_rows(
    conn: &mut PgConnection,
    holds: &[Uuid],
) -> Result<Vec<PayableRow>, sqlx::Error> {
    sqlx::query_as!(
        PayableRow,
        r#"SELECT h.id, h.show_id, h.user_id, h.state, h.expires_at, sh.starts_at, sh.currency,
                  EXISTS (SELECT 1 FROM spent_passes sp
                           WHERE sp.pass_id = h.admission_pass_id) AS "pass_spent!",
                  sh.status = 'CANCELLED' AS "show_cancelled!",
                  (SELECT sum(COALESCE(hs.price_minor, (sh.prices ->> s.category)::bigint))
                     FROM hold_seats hs JOIN seats s ON s.id = hs.seat_id
                    WHERE hs.hold_id = h.id AND hs.live)::bigint AS amount
             FROM holds h JOIN shows sh ON sh.id = h.show_id
            WHERE h.id = ANY($1)"#,
        holds
    )
    .fetch_all(&mut *conn)
    .await
}

/// Whether a hold can be paid for, as its row shows it.
enum Judged {
    /// Yes, at this price.
    Payable(Payable),
    /// No longer active: the answer needs the whole hold.
    NotActive,
    /// No, for this reason.
    Refused(ApiError),
}

/// Checks a hold can be paid for (pure): the caller's, live, its show not
/// started, its pass not spent on another hold, seats still its own and
/// not free.
fn judge(row: Option<&PayableRow>, user: &str, hold_id: Uuid, now: DateTime<Utc>) -> Judged {
    let hold = match row {
        Some(h) if h.user_id == user => h,
        _ => {
            return Judged::Refused(ApiError::not_found(
                "unknown_hold",
                format!("no hold {hold_id}"),
            ))
        }
    };
    if hold.state != shared::api::HoldState::Active.as_db_str() || hold.expires_at <= now {
        return Judged::NotActive;
    }
    // A plain read: settlement checks again under the show's lock, and
    // refunds a charge that lands after a cancellation.
    if hold.show_cancelled {
        return Judged::Refused(show_cancelled());
    }
    if now >= hold.starts_at {
        return Judged::Refused(show_started());
    }
    // A pass buys once: another hold taken with it cannot be paid for.
    if hold.pass_spent {
        return Judged::Refused(crate::holds::flash_sale::pass_used());
    }
    let Some(amount) = hold.amount else {
        // Active and unexpired, yet no live seats: taken over (fencing).
        return Judged::Refused(ApiError::Gone {
            code: "hold_lost",
            message: "the hold no longer owns its seats".into(),
        });
    };
    if amount <= 0 {
        return Judged::Refused(ApiError::unprocessable(
            "nothing_to_pay",
            "these seats are free; free tickets are not sold through checkout",
        ));
    }
    Judged::Payable(Payable {
        show_id: hold.show_id,
        amount,
        currency: hold.currency.clone(),
    })
}

/// Checks one hold can be paid for, and prices it.
async fn payable(
    conn: &mut PgConnection,
    user: &str,
    hold_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Payable, ApiError> {
    let rows = payable_rows(conn, &[hold_id]).await?;
    match judge(rows.first(), user, hold_id, now) {
        Judged::Payable(p) => Ok(p),
        Judged::Refused(e) => Err(e),
        Judged::NotActive => {
            // Rare: the whole hold, for the same answer its own endpoints give.
            let whole = crate::holds::store::fetch(conn, hold_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("hold {hold_id} vanished"))?;
            Err(not_active_error(&whole, now))
        }
    }
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

/// Phase 1 for a whole batch, in three statements: the holds checked,
/// the new keys taken, their payments recorded. Jobs whose key exists
/// (a retry: replay or resume), whose hold is refused (for the precise
/// answer), or that name a key or hold twice are left to [`Begin::run`].
async fn begin_together(
    conn: &mut PgConnection,
    jobs: &[&Begin],
) -> anyhow::Result<Vec<Option<Begun>>> {
    let mut out: Vec<Option<Begun>> = jobs.iter().map(|_| None).collect();
    let holds: Vec<Uuid> = jobs.iter().map(|j| j.hold_id).collect();
    let rows: HashMap<Uuid, PayableRow> = payable_rows(conn, &holds)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let (mut keys_seen, mut holds_seen) = (HashSet::new(), HashSet::new());
    let mut fresh = Vec::new();
    for (at, j) in jobs.iter().enumerate() {
        if !keys_seen.insert((&j.user, &j.key)) || !holds_seen.insert(j.hold_id) {
            continue;
        }
        if let Judged::Payable(p) = judge(rows.get(&j.hold_id), &j.user, j.hold_id, j.now) {
            fresh.push((at, p));
        }
    }
    if fresh.is_empty() {
        return Ok(out);
    }
    let users: Vec<&str> = fresh
        .iter()
        .map(|(at, _)| jobs[*at].user.as_str())
        .collect();
    let keys: Vec<&str> = fresh.iter().map(|(at, _)| jobs[*at].key.as_str()).collect();
    let hashes: Vec<&str> = fresh
        .iter()
        .map(|(at, _)| jobs[*at].hash.as_str())
        .collect();
    let nows: Vec<DateTime<Utc>> = fresh.iter().map(|(at, _)| jobs[*at].now).collect();
    // Keys that exist already are not taken here (the retry's own path).
    let taken: HashSet<(String, String)> = sqlx::query!(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, recovery_point, locked_at)
         SELECT u.user_id, u.key, u.hash, 'payment_created', u.now
           FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                  AS u(user_id, key, hash, now)
         ON CONFLICT (user_id, key) DO NOTHING
         RETURNING user_id, key",
        &users as &[&str],
        &keys as &[&str],
        &hashes as &[&str],
        &nows
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.user_id, r.key))
    .collect();
    fresh.retain(|(at, _)| taken.contains(&(jobs[*at].user.clone(), jobs[*at].key.clone())));
    if fresh.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Uuid> = fresh.iter().map(|_| Uuid::now_v7()).collect();
    let holds: Vec<Uuid> = fresh.iter().map(|(at, _)| jobs[*at].hold_id).collect();
    let shows: Vec<Uuid> = fresh.iter().map(|(_, p)| p.show_id).collect();
    let users: Vec<&str> = fresh
        .iter()
        .map(|(at, _)| jobs[*at].user.as_str())
        .collect();
    let keys: Vec<&str> = fresh.iter().map(|(at, _)| jobs[*at].key.as_str()).collect();
    let amounts: Vec<i64> = fresh.iter().map(|(_, p)| p.amount).collect();
    let currencies: Vec<&str> = fresh.iter().map(|(_, p)| p.currency.as_str()).collect();
    let methods: Vec<&str> = fresh
        .iter()
        .map(|(at, _)| jobs[*at].payment_method.as_str())
        .collect();
    // A hold already being paid under another key fails this statement
    // (unique), and the batch is then begun job by job for that answer.
    sqlx::query!(
        "INSERT INTO payments (id, hold_id, show_id, user_id, idem_key, amount_minor, currency,
                               payment_method)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                              $6::int8[], $7::text[], $8::text[])",
        &ids,
        &holds,
        &shows,
        &users as &[&str],
        &keys as &[&str],
        &amounts,
        &currencies as &[&str],
        &methods as &[&str]
    )
    .execute(&mut *conn)
    .await?;
    for ((at, p), id) in fresh.into_iter().zip(ids) {
        out[at] = Some(Begun::Created(KeyPayment {
            id,
            show_id: p.show_id,
            status: PaymentStatus::Created,
            amount_minor: p.amount,
            currency: p.currency,
            payment_method: jobs[at].payment_method.clone(),
        }));
    }
    Ok(out)
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
