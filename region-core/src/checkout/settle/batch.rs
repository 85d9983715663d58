//! Set-based confirmation: a batch of checkouts whose charges the gateway
//! has just confirmed, booked with a few statements for the whole batch
//! instead of about fifteen per booking: lock the payments, the seats,
//! the holds; decide each booking in Rust; write the bookings, their
//! seats, the holds, the passes and the payments with one statement,
//! which returns the buyers' views; then the events and the keys'
//! answers. Per-statement work (planning, executor start-up, trigger
//! set-up) was most of Postgres's time under checkout load, and each
//! round trip is time the batch holds every one of its locks
//! (docs/BENCHMARKS.md, "The profile" and "Fourth look").
//!
//! Only the common cases are taken here: a charge on a payment still in
//! flight (or recorded and not yet settled) whose hold is live and still
//! owns every seat; the webhook and the checkout announcing the same
//! charge (in one batch, or one after the other), which cost the second
//! nothing but its answer. Everything else — a late charge, a refusal to
//! compensate, the negative control — is left to the per-booking path
//! (`confirm_in`), which finds the locks already taken. The caller runs
//! this in a savepoint and, if any statement fails, rolls it back and
//! books every job the per-booking way, so one bad booking never fails
//! the others.

use super::{refusal, BookedSeats, Charge, HoldRow, PaymentRow, Settled, Settlement};
use super::{Ctx, PaymentStatus};
use crate::bookings::store::{self as bookings, BookingStatus, ViewRow};
use crate::idempotency::{self, StoredResponse};
use crate::outbox::{self, ShowEvent};
use chrono::{DateTime, Utc};
use shared::api::{BookedSeat, Booking};
use shared::booking_number::BookingNumber;
use shared::refund::RefundPolicy;
use shared::ShowId;
use sqlx::types::Json;
use sqlx::PgConnection;
use std::collections::HashMap;
use uuid::Uuid;

/// One charge to settle: the payment, and the gateway's id when the
/// charge is recorded now (`None`: recorded earlier, not yet settled).
#[derive(Debug, Clone, Copy)]
pub struct Confirmation<'a> {
    /// The payment.
    pub payment_id: Uuid,
    /// The gateway's id of the charge, when learnt now.
    pub gateway_id: Option<&'a str>,
    /// The idempotency key of the checkout waiting for the answer (the
    /// payment must carry it); `None` from the webhook.
    pub key: Option<&'a str>,
}

/// A booking this batch will write.
struct ToBook<'a> {
    /// Index into the batch.
    at: usize,
    payment: &'a PaymentRow,
    gateway_id: Option<&'a str>,
    /// Every seat the hold owns, locked, in seat-map order.
    owned: Vec<OwnedSeat>,
    pass: Option<String>,
    booking_id: Uuid,
    /// The booking number's sequence value.
    seq: i64,
}

/// A seat a hold owns, locked, with what its booking records of it.
struct OwnedSeat {
    ordinal: i32,
    seat_id: Uuid,
    label: String,
    category: String,
    price_minor: i64,
}

/// Books what it can of `batch` on `conn` (inside the caller's savepoint):
/// one entry per confirmation, `None` for those left to the per-booking
/// path. An `Err` means the savepoint must be rolled back.
pub async fn confirm_batch(
    ctx: &Ctx,
    conn: &mut PgConnection,
    batch: &[Confirmation<'_>],
) -> anyhow::Result<Vec<Option<Settled>>> {
    let mut out: Vec<Option<Settled>> = batch.iter().map(|_| None).collect();
    if ctx.settings.unsafe_disable_seat_protection || batch.is_empty() {
        return Ok(out); // the negative control books the per-booking way
    }
    let payments = lock_payments(conn, batch).await?;
    let routes = routes(batch, &payments);
    let mut candidates = Vec::new();
    let mut answered = Vec::new();
    for (at, route) in routes.iter().enumerate() {
        metrics::counter!("checkout_confirm_routes_total", "route" => route.name()).increment(1);
        match route {
            Route::Take(p, charged_now) => candidates.push((at, *p, *charged_now)),
            Route::Nothing => out[at] = Some(Settled::nothing()),
            Route::Answer(p) => answered.push((at, *p)),
            Route::Echo(_) | Route::Alone => {}
        }
    }
    answer_settled(conn, &answered, &mut out).await?;
    if !candidates.is_empty() {
        let now = Utc::now();
        let to_book = decide(conn, candidates, now).await?;
        if !to_book.is_empty() {
            for (b, settled) in book_all(ctx, conn, &to_book, now).await? {
                out[b] = Some(settled);
            }
        }
    }
    // A checkout whose charge the batch booked on the webhook's word (or
    // the other way round) gets the key's answer from that booking.
    for (at, route) in routes.iter().enumerate() {
        if let Route::Echo(first) = route {
            let response = out[*first]
                .as_ref()
                .filter(|s| matches!(s.settlement, Settlement::Booked(_)))
                .and_then(|s| s.response.clone());
            if let Some(response) = response {
                out[at] = Some(Settled {
                    response: Some(response),
                    ..Settled::nothing()
                });
            }
        }
    }
    Ok(out)
}

/// What the batch does with one confirmation.
enum Route<'p> {
    /// Book it here (its payment, and the gateway id to record with it).
    Take(&'p PaymentRow, Option<&'p str>),
    /// Nothing to do, nobody to answer: a webhook about a charge already
    /// settled, or a second one about a payment of the batch.
    Nothing,
    /// Settled before; the checkout waiting gets the key's stored answer.
    Answer(&'p PaymentRow),
    /// A checkout about the same payment as this earlier confirmation of
    /// the batch (the webhook's, usually).
    Echo(usize),
    /// Left to the per-booking path.
    Alone,
}

impl Route<'_> {
    /// Its label in `checkout_confirm_routes_total`.
    fn name(&self) -> &'static str {
        match self {
            Route::Take(..) => "take",
            Route::Nothing => "nothing",
            Route::Answer(_) => "answer",
            Route::Echo(_) => "echo",
            Route::Alone => "alone",
        }
    }
}

/// Routes each confirmation of the batch; each payment is taken once.
fn routes<'p>(
    batch: &[Confirmation<'p>],
    payments: &'p HashMap<Uuid, PaymentRow>,
) -> Vec<Route<'p>> {
    let mut first: HashMap<Uuid, usize> = HashMap::new();
    batch
        .iter()
        .enumerate()
        .map(|(at, c)| {
            let Some(p) = payments.get(&c.payment_id) else {
                return Route::Alone;
            };
            if c.key.is_some_and(|key| p.idem_key.as_deref() != Some(key)) {
                return Route::Alone;
            }
            if let Some(&earlier) = first.get(&p.id) {
                return match c.key {
                    None => Route::Nothing,
                    Some(_) => Route::Echo(earlier),
                };
            }
            first.insert(p.id, at);
            // As `confirm_in` decides: a charge on a payment in flight is
            // recorded now; a recorded, unsettled one is settled.
            match (c.gateway_id, p.status, &p.settled) {
                (Some(gateway_id), PaymentStatus::Created, _) => Route::Take(p, Some(gateway_id)),
                (_, PaymentStatus::Succeeded, None) => Route::Take(p, None),
                (_, PaymentStatus::Succeeded, Some(_)) if c.key.is_none() => Route::Nothing,
                (_, PaymentStatus::Succeeded, Some(_)) => Route::Answer(p),
                _ => Route::Alone, // a late charge, a payment never charged
            }
        })
        .collect()
}

/// Answers checkouts whose payment was settled before (by the webhook, in
/// an earlier batch) with their keys' stored answers: one read. One not
/// found is left to the per-booking path.
async fn answer_settled(
    conn: &mut PgConnection,
    answered: &[(usize, &PaymentRow)],
    out: &mut [Option<Settled>],
) -> Result<(), sqlx::Error> {
    if answered.is_empty() {
        return Ok(());
    }
    let users: Vec<&str> = answered.iter().map(|(_, p)| p.user_id.as_str()).collect();
    let keys: Vec<&str> = answered
        .iter()
        .map(|(_, p)| p.idem_key.as_deref().unwrap_or(""))
        .collect();
    let rows = sqlx::query!(
        r#"SELECT k.user_id, k.key, k.response_status AS "status!", k.response_body AS "body!"
             FROM idempotency_keys k
             JOIN unnest($1::text[], $2::text[]) AS u(user_id, key)
               ON k.user_id = u.user_id AND k.key = u.key
            WHERE k.recovery_point = 'finished'
              AND k.response_status IS NOT NULL AND k.response_body IS NOT NULL"#,
        &users as &[&str],
        &keys as &[&str]
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut found: HashMap<(String, String), StoredResponse> = rows
        .into_iter()
        .map(|r| {
            let response = StoredResponse {
                status: r.status as u16,
                body: r.body,
            };
            ((r.user_id, r.key), response)
        })
        .collect();
    for (at, p) in answered {
        let key = (p.user_id.clone(), p.idem_key.clone().unwrap_or_default());
        if let Some(response) = found.remove(&key) {
            out[*at] = Some(Settled {
                response: Some(response),
                ..Settled::nothing()
            });
        }
    }
    Ok(())
}

/// Locks the candidates' seats and holds and decides each: the bookings
/// to write here (a refused one is compensated the per-booking way).
async fn decide<'p>(
    conn: &mut PgConnection,
    candidates: Vec<(usize, &'p PaymentRow, Option<&'p str>)>,
    now: DateTime<Utc>,
) -> Result<Vec<ToBook<'p>>, sqlx::Error> {
    let payments: Vec<&PaymentRow> = candidates.iter().map(|(_, p, _)| *p).collect();
    let mut owned = lock_owned_seats(conn, &payments).await?;
    let holds = lock_holds(conn, &payments).await?;
    // Under the shows' row locks, as `confirm_in` reads them.
    let shows: Vec<Uuid> = payments.iter().map(|p| p.show_id).collect();
    let cancelled = crate::show_cancel::store::lock_cancelled(conn, &shows).await?;
    let mut to_book = Vec::with_capacity(candidates.len());
    for (at, payment, gateway_id) in candidates {
        if cancelled.contains(&payment.show_id) {
            continue; // refunded the per-booking way
        }
        let Some((hold, seq)) = holds.get(&payment.hold_id) else {
            continue;
        };
        let mut seats = owned.remove(&payment.hold_id).unwrap_or_default();
        let why_not = refusal(
            &hold.state,
            hold.expires_at,
            seats.len(),
            hold.seat_count as usize,
            now,
            true,
        );
        if why_not.is_some() {
            continue; // compensated the per-booking way (rare)
        }
        // The buyer's view lists a booking's seats in seat-map order.
        seats.sort_by_key(|s| s.ordinal);
        to_book.push(ToBook {
            at,
            payment,
            gateway_id,
            owned: seats,
            pass: hold.admission_pass_id.clone(),
            booking_id: Uuid::now_v7(),
            seq: *seq,
        });
    }
    Ok(to_book)
}

/// Locks the batch's payments (in id order), by id.
async fn lock_payments(
    conn: &mut PgConnection,
    batch: &[Confirmation<'_>],
) -> Result<HashMap<Uuid, PaymentRow>, sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().map(|c| c.payment_id).collect();
    let rows = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, status AS "status: PaymentStatus", settled, hold_id, show_id, user_id,
                  idem_key, amount_minor, currency
             FROM payments WHERE id = ANY($1) ORDER BY id FOR UPDATE"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|p| (p.id, p)).collect())
}

/// Locks the seat rows each candidate's hold still owns (fencing: rows
/// another hold has taken are not returned), in the order every writer
/// locks seats; by hold, each with what its booking will record of it
/// (label, category, the price it was held at).
async fn lock_owned_seats(
    conn: &mut PgConnection,
    payments: &[&PaymentRow],
) -> Result<HashMap<Uuid, Vec<OwnedSeat>>, sqlx::Error> {
    let shows: Vec<Uuid> = payments.iter().map(|p| p.show_id).collect();
    let holds: Vec<Uuid> = payments.iter().map(|p| p.hold_id).collect();
    let rows = sqlx::query!(
        r#"SELECT ss.hold_id AS "hold_id!", ss.ordinal, ss.seat_id, s.label, s.category,
                  COALESCE(hs.price_minor, (sh.prices ->> s.category)::bigint) AS "price_minor!"
             FROM show_seats ss
             JOIN unnest($1::uuid[], $2::uuid[]) AS h(show_id, hold_id)
               ON ss.show_id = h.show_id AND ss.hold_id = h.hold_id
             JOIN seats s ON s.id = ss.seat_id
             JOIN shows sh ON sh.id = ss.show_id
             JOIN hold_seats hs ON hs.hold_id = ss.hold_id AND hs.seat_id = ss.seat_id
            WHERE ss.status = 'HELD'
            ORDER BY ss.show_id, ss.seat_id
              FOR UPDATE OF ss"#,
        &shows,
        &holds
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_hold: HashMap<Uuid, Vec<OwnedSeat>> = HashMap::new();
    for r in rows {
        by_hold.entry(r.hold_id).or_default().push(OwnedSeat {
            ordinal: r.ordinal,
            seat_id: r.seat_id,
            label: r.label,
            category: r.category,
            price_minor: r.price_minor,
        });
    }
    Ok(by_hold)
}

/// Locks the candidates' holds (after their seats, as everywhere), each
/// with a booking number's sequence value: a hold then refused leaves a
/// gap in the numbers, as a rolled-back transaction does.
async fn lock_holds(
    conn: &mut PgConnection,
    payments: &[&PaymentRow],
) -> Result<HashMap<Uuid, (HoldRow, i64)>, sqlx::Error> {
    let ids: Vec<Uuid> = payments.iter().map(|p| p.hold_id).collect();
    let rows = sqlx::query!(
        r#"SELECT id, state, expires_at, seat_count, admission_pass_id,
                  nextval('booking_number_seq') AS "seq!"
             FROM holds WHERE id = ANY($1) ORDER BY id FOR UPDATE"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let hold = HoldRow {
                state: r.state,
                expires_at: r.expires_at,
                seat_count: r.seat_count,
                admission_pass_id: r.admission_pass_id,
            };
            (r.id, (hold, r.seq))
        })
        .collect())
}

/// Writes every booking of `to_book` (all locks held) and answers each:
/// the bookings, their seats, the holds, the passes and the payments in
/// one statement, then the events and the keys' answers. Returns (index
/// into the batch, what settling did).
async fn book_all(
    ctx: &Ctx,
    conn: &mut PgConnection,
    to_book: &[ToBook<'_>],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<(usize, Settled)>> {
    let numbers = to_book
        .iter()
        .map(|b| BookingNumber::new(now.date_naive(), &ctx.settings.shard_code, b.seq as u64))
        .collect::<Result<Vec<_>, _>>()?;
    let views = write_bookings(conn, to_book, &numbers).await?;
    let mut events = Vec::with_capacity(2 * to_book.len());
    let mut answers = Vec::with_capacity(to_book.len());
    for ((b, number), view) in to_book.iter().zip(&numbers).zip(&views) {
        let p = b.payment;
        let labels: Vec<&str> = b.owned.iter().map(|s| s.label.as_str()).collect();
        let charge = Charge {
            payment: p,
            gateway_id: b.gateway_id,
        };
        let outcome = charge.events(super::confirmed_event(p, b.booking_id, number, &labels));
        events.extend(
            outcome
                .into_iter()
                .map(|(aggregate, kind, payload)| ShowEvent {
                    show_id: p.show_id,
                    aggregate,
                    kind,
                    payload,
                }),
        );
        answers.push(StoredResponse {
            status: 201,
            body: serde_json::to_vec(view)?,
        });
    }
    outbox::record_all(conn, &events).await?;
    let keyed: Vec<(&str, &str, &StoredResponse)> = to_book
        .iter()
        .zip(&answers)
        .filter_map(|(b, a)| {
            Some((
                b.payment.user_id.as_str(),
                b.payment.idem_key.as_deref()?,
                a,
            ))
        })
        .collect();
    idempotency::store::finish_many(conn, &keyed).await?;
    Ok(to_book
        .iter()
        .zip(answers)
        .map(|(b, answer)| {
            let settled = Settled {
                settlement: Settlement::Booked(b.booking_id),
                booked: Some(BookedSeats {
                    show: ShowId(b.payment.show_id),
                    labels: b.owned.iter().map(|s| s.label.clone()).collect(),
                    ordinals: b.owned.iter().map(|s| s.ordinal).collect(),
                    booking: b.booking_id,
                }),
                response: Some(answer),
                pass: b.pass.clone(),
            };
            (b.at, settled)
        })
        .collect())
}

/// The bookings' row of the buyer's view, as [`write_bookings`] returns
/// it.
struct Written {
    id: Uuid,
    title: String,
    venue_name: String,
    time_zone: String,
    show_starts_at: DateTime<Utc>,
    refund_policy: Json<RefundPolicy>,
    created_at: DateTime<Utc>,
    seats_booked: i64,
}

/// One statement for every write of the batch's bookings (each a
/// data-modifying `WITH` part, one per table; they run once whether read
/// or not): the booking rows (with their show's refund policy as of now),
/// their seats recorded and the seat rows BOOKED, the holds CONSUMED and
/// their seats no longer live, the passes spent, the payments SUCCEEDED
/// and settled BOOKED (the gateway's id recorded where it was learnt
/// now). Each of those statements was a round trip of its own while the
/// writer held every lock of the batch; the buyers' views come back with
/// it, so none is read again. Foreign keys are checked at the end of the
/// statement, when the bookings they point to exist.
async fn write_bookings(
    conn: &mut PgConnection,
    to_book: &[ToBook<'_>],
    numbers: &[BookingNumber],
) -> anyhow::Result<Vec<Booking>> {
    let ids: Vec<Uuid> = to_book.iter().map(|b| b.booking_id).collect();
    let number_texts: Vec<&str> = numbers.iter().map(BookingNumber::as_str).collect();
    let shows: Vec<Uuid> = to_book.iter().map(|b| b.payment.show_id).collect();
    let holds: Vec<Uuid> = to_book.iter().map(|b| b.payment.hold_id).collect();
    let payments: Vec<Uuid> = to_book.iter().map(|b| b.payment.id).collect();
    let users: Vec<&str> = to_book.iter().map(|b| b.payment.user_id.as_str()).collect();
    let amounts: Vec<i64> = to_book.iter().map(|b| b.payment.amount_minor).collect();
    let currencies: Vec<&str> = to_book
        .iter()
        .map(|b| b.payment.currency.as_str())
        .collect();
    // '' stands for "recorded earlier": arrays of nullable text are
    // awkward to bind, and no gateway id is empty.
    let gateway_ids: Vec<&str> = to_book.iter().map(|b| b.gateway_id.unwrap_or("")).collect();
    let seats: Vec<(&ToBook<'_>, &OwnedSeat)> = to_book
        .iter()
        .flat_map(|b| b.owned.iter().map(move |s| (b, s)))
        .collect();
    let seat_bookings: Vec<Uuid> = seats.iter().map(|(b, _)| b.booking_id).collect();
    let seat_shows: Vec<Uuid> = seats.iter().map(|(b, _)| b.payment.show_id).collect();
    let seat_ids: Vec<Uuid> = seats.iter().map(|(_, s)| s.seat_id).collect();
    let labels: Vec<&str> = seats.iter().map(|(_, s)| s.label.as_str()).collect();
    let categories: Vec<&str> = seats.iter().map(|(_, s)| s.category.as_str()).collect();
    let prices: Vec<i64> = seats.iter().map(|(_, s)| s.price_minor).collect();
    let written = sqlx::query_as!(
        Written,
        r#"WITH new_bookings AS (
               INSERT INTO bookings (id, number, show_id, hold_id, payment_id, user_id,
                                     amount_minor, currency, refund_policy, show_starts_at)
               SELECT u.id, u.number, sh.id, u.hold_id, u.payment_id, u.user_id, u.amount,
                      u.currency, sh.refund_policy, sh.starts_at
                 FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[],
                             $6::text[], $7::int8[], $8::text[])
                        AS u(id, number, show_id, hold_id, payment_id, user_id, amount, currency)
                 JOIN shows sh ON sh.id = u.show_id
               RETURNING id, show_id, refund_policy, show_starts_at, created_at
           ), new_seats AS (
               SELECT * FROM unnest($9::uuid[], $10::uuid[], $11::uuid[], $12::text[],
                                    $13::text[], $14::int8[])
                        AS s(booking_id, show_id, seat_id, label, category, price_minor)
           ), recorded AS (
               INSERT INTO booking_seats (booking_id, show_id, seat_id, label, category,
                                          price_minor)
               SELECT booking_id, show_id, seat_id, label, category, price_minor FROM new_seats
           ), booked AS (
               UPDATE show_seats ss
                  SET status = 'BOOKED', booking_id = s.booking_id, hold_id = NULL,
                      hold_expires_at = NULL, version = ss.version + 1
                 FROM new_seats s
                WHERE ss.show_id = s.show_id AND ss.seat_id = s.seat_id
               RETURNING 1
           ), unlived AS (
               UPDATE hold_seats SET live = false WHERE hold_id = ANY($4) AND live
           ), consumed AS (
               UPDATE holds SET state = 'CONSUMED', updated_at = now() WHERE id = ANY($4)
           ), spent AS (
               INSERT INTO spent_passes (pass_id, show_id, user_id, booking_id)
               SELECT h.admission_pass_id, h.show_id, h.user_id, u.booking_id
                 FROM unnest($4::uuid[], $1::uuid[]) AS u(hold_id, booking_id)
                 JOIN holds h ON h.id = u.hold_id
                WHERE h.admission_pass_id IS NOT NULL
               ON CONFLICT (pass_id) DO NOTHING
           ), closed AS (
               UPDATE payments p
                  SET status = 'SUCCEEDED', settled = 'BOOKED',
                      gateway_payment_id = COALESCE(NULLIF(u.gateway_id, ''), p.gateway_payment_id),
                      updated_at = now()
                 FROM unnest($5::uuid[], $15::text[]) AS u(id, gateway_id)
                WHERE p.id = u.id
           )
           SELECT b.id AS "id!", m.title AS "title!", v.name AS "venue_name!",
                  v.time_zone AS "time_zone!", b.show_starts_at AS "show_starts_at!",
                  b.refund_policy AS "refund_policy!: Json<RefundPolicy>",
                  b.created_at AS "created_at!",
                  (SELECT count(*) FROM booked) AS "seats_booked!"
             FROM new_bookings b
             JOIN shows sh ON sh.id = b.show_id
             JOIN movies m ON m.id = sh.movie_id
             JOIN screens sc ON sc.id = sh.screen_id
             JOIN venues v ON v.id = sc.venue_id"#,
        &ids,
        &number_texts as &[&str],
        &shows,
        &holds,
        &payments,
        &users as &[&str],
        &amounts,
        &currencies as &[&str],
        &seat_bookings,
        &seat_shows,
        &seat_ids,
        &labels as &[&str],
        &categories as &[&str],
        &prices,
        &gateway_ids as &[&str]
    )
    .fetch_all(&mut *conn)
    .await?;
    anyhow::ensure!(
        written.len() == to_book.len(),
        "{} bookings written for {}: bookings of unknown shows",
        written.len(),
        to_book.len()
    );
    anyhow::ensure!(
        written
            .iter()
            .all(|w| w.seats_booked as usize == seats.len()),
        "seat rows vanished"
    );
    let mut by_id: HashMap<Uuid, Written> = written.into_iter().map(|w| (w.id, w)).collect();
    to_book
        .iter()
        .zip(number_texts)
        .map(|(b, number)| {
            let w = by_id
                .remove(&b.booking_id)
                .ok_or_else(|| anyhow::anyhow!("booking {} not written", b.booking_id))?;
            let p = b.payment;
            let row = ViewRow {
                id: w.id,
                number: number.to_owned(),
                status: BookingStatus::Confirmed,
                show_id: p.show_id,
                title: w.title,
                venue_name: w.venue_name,
                show_starts_at: w.show_starts_at,
                time_zone: w.time_zone,
                amount_minor: p.amount_minor,
                currency: p.currency.clone(),
                payment_id: p.id,
                refund_policy: w.refund_policy,
                created_at: w.created_at,
                cancelled_at: None,
            };
            let seats = b
                .owned
                .iter()
                .map(|s| BookedSeat {
                    label: s.label.clone(),
                    category: s.category.clone(),
                    price_minor: s.price_minor,
                })
                .collect();
            bookings::view_of(row, seats, None)
        })
        .collect()
}
