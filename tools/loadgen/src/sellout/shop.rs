//! An admitted buyer in a sell-out: picks 1–4 adjacent seats from the map,
//! holds them with the pass (other seats when those were taken), pays as a
//! careful client does, and gives the hold back when the payment failed.
//! While every free seat is held by someone, a buyer waits for seats to
//! come back (holds released or expired) rather than leave: the show is
//! sold out only when every seat is booked.

use super::board::{Pick, SharedBoard};
use crate::crowd::{locked, unix_ms, Buyer, Crowd, HoldAnswer, Kind, Outcome, Record};
use crate::purchase::{self, Paid, Patience};
use hdrhistogram::Histogram;
use rand::Rng;
use shared::api::Hold;
use shared::SeatState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::api::Method;

/// How long a buyer who found every free seat held waits before looking
/// again.
const WAIT_FOR_RELEASE: Duration = Duration::from_secs(1);
/// How long a buyer who lost seats to someone quicker takes to pick others.
const LOOK_AGAIN: Duration = Duration::from_millis(300);

/// What every buyer of a phase shares.
pub struct Shop {
    /// The requests' slots and counts.
    pub crowd: Arc<Crowd>,
    /// The seat map.
    pub board: SharedBoard,
    /// The show.
    pub show: String,
    /// A buyer wants 1..=max_group seats.
    pub max_group: usize,
    /// The checkout idempotency keys' prefix.
    pub key_prefix: String,
    /// Latency of every checkout request answered 201.
    pub purchases: Mutex<Histogram<u64>>,
}

impl Shop {
    /// The admitted buyer `b` buys with `pass`; `rec` says how it ended.
    pub async fn buy(&self, b: &Buyer, pass: &str, rec: &mut Record) {
        let want = rand::thread_rng().gen_range(1..=self.max_group);
        let Some((hold, seats)) = self.hold(b, pass, want, rec).await else {
            return;
        };
        // Outside the crowd's slots (see `Crowd::buy`).
        let run = purchase::pay(
            &b.edge,
            &b.bearer,
            hold.hold_id,
            &self.key_prefix,
            Patience::default(),
        )
        .await;
        self.crowd.record_checkout(&run);
        if let Some(a) = run.attempts.iter().find(|a| a.status == Some(201)) {
            locked(&self.purchases).saturating_record(a.latency.as_micros() as u64);
        }
        match run.outcome {
            Paid::Booked { booking, .. } => {
                rec.outcome = Outcome::Bought;
                rec.booked = booking.seats.iter().map(|s| s.label.clone()).collect();
                rec.booking = Some(booking.id);
                rec.booked_at_ms = Some(unix_ms());
                self.board.mark(&seats, SeatState::Booked).await;
            }
            Paid::Pending => {
                // The outcome is unknown: the hold stays until
                // reconciliation settles the payment (booked, or
                // refunded and released).
                rec.outcome = Outcome::NotPaid;
                rec.failure = Some("checkout: pending".into());
            }
            other => {
                rec.outcome = Outcome::NotPaid;
                rec.failure = Some(format!("checkout: {other:?}"));
                self.release(b, &hold).await;
                self.board.mark(&seats, SeatState::Available).await;
            }
        }
    }

    /// Holds seats: `None` when the buyer is done (sold out, out of time,
    /// or failed; `rec` says which).
    async fn hold(
        &self,
        b: &Buyer,
        pass: &str,
        want: usize,
        rec: &mut Record,
    ) -> Option<(Hold, Vec<String>)> {
        loop {
            if Instant::now() >= self.crowd.deadline() {
                rec.outcome = Outcome::NoSeats;
                return None;
            }
            // The pick is marked held on the shared map as it is made.
            let seats = match self.board.choose(&self.crowd, want).await {
                Ok(Pick::Seats(seats)) => seats,
                Ok(Pick::NoneFree { held: 0 }) => {
                    rec.outcome = Outcome::SoldOut;
                    return None;
                }
                Ok(Pick::NoneFree { .. }) => {
                    tokio::time::sleep(WAIT_FOR_RELEASE).await;
                    continue;
                }
                Err(e) => {
                    rec.fail(format!("seat map: {e:#}"));
                    return None;
                }
            };
            match self.crowd.hold_once(b, pass, seats.clone()).await {
                Ok(HoldAnswer::Held(h)) => return Some((h, seats)),
                // Someone was quicker (the seats stay marked taken). The
                // buyer looks at the map again before choosing (a moment,
                // not a tight loop of holds on a stale map).
                Ok(HoldAnswer::Taken) => tokio::time::sleep(LOOK_AGAIN).await,
                // The edge's short-circuit saw no free seat a moment ago;
                // the map decides whether any may still come back.
                Ok(HoldAnswer::SoldOut) => tokio::time::sleep(WAIT_FOR_RELEASE).await,
                Ok(HoldAnswer::Busy(wait)) => tokio::time::sleep(wait).await,
                Err(why) => {
                    rec.fail(why);
                    return None;
                }
            }
        }
    }

    /// Gives a hold back (a buyer whose payment failed walks away); a
    /// failure is only counted: the hold then expires.
    async fn release(&self, b: &Buyer, hold: &Hold) {
        let path = format!("/v1/holds/{}", hold.hold_id);
        let send = b
            .edge
            .send(Method::DELETE, &path, Some(&b.bearer), None, None::<&()>);
        let _ = self.crowd.call(Kind::Release, send).await;
    }
}
