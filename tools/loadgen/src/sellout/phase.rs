//! One sell-out of a show: the buyers admitted at the sale's rate (by the
//! edge's waiting room, or by a pacer in the load generator when the
//! region is driven without the edge), buying until every seat is sold;
//! then the drain (reconciliation, the last holds resolved) and the
//! figures.

use super::shop::Shop;
use crate::crowd::{unix_ms, Buyer, Crowd, Outcome, Record};
use crate::report::{ms, r2};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one sell-out showed.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Buyers in the sale.
    pub buyers: usize,
    /// Seats of the show.
    pub seats: i64,
    /// Buyers admitted (given a pass).
    pub admitted: usize,
    /// Bookings made.
    pub bookings: usize,
    /// Seats sold (BOOKED in Postgres after the drain).
    pub tickets_sold: i64,
    /// Tickets sold per second, from the opening to the last booking.
    pub tickets_per_s: f64,
    /// From the opening to the last booking's answer, seconds.
    pub seconds_to_sell_out: Option<f64>,
    /// Every seat was sold.
    pub sold_out: bool,
    /// Purchase latency (checkout requests answered 201), ms.
    pub purchase_p50_ms: f64,
    /// Purchase p99, ms.
    pub purchase_p99_ms: f64,
    /// Hold latency (every answered hold), p99 ms.
    pub hold_p99_ms: Option<f64>,
    /// From the opening to a buyer's admission, seconds.
    pub queue_wait_p50_s: Option<f64>,
    /// Queue wait p99, seconds.
    pub queue_wait_p99_s: Option<f64>,
    /// Seats sold beyond the show's seats: must be 0.
    pub oversold: i64,
    /// Seats not sold once every hold was paid, released or expired:
    /// must be 0.
    pub unsold_at_end: i64,
    /// Seats that are, or could be, sold twice: must be 0.
    pub double_booked: i64,
    /// Charges without a booking or refund, over the run so far: must be
    /// 0.
    pub money_lost: u64,
    /// How the buyers' sales ended.
    pub outcomes: BTreeMap<String, u64>,
    /// `kind status [code]` → requests.
    pub answers: BTreeMap<String, u64>,
    /// The drain after the last buyer, seconds.
    pub drain_s: f64,
    /// Admissions per second the sale used.
    pub admission_rate_per_s: f64,
    /// How that rate was derived.
    pub admission_rate_why: String,
    /// A calibration trial kept purchase p99 under the goal.
    pub admission_rate_goal_met: bool,
    /// The calibration's closed-loop steps (through the same path as the
    /// sale): the path's capacity.
    pub calibration: Vec<super::calibrate::Step>,
    /// The calibration's trials of open arrivals, fastest first.
    pub calibration_trials: Vec<super::calibrate::Trial>,
}

impl Figures {
    /// Records the admission rate the sale used and how it was derived.
    pub fn set_admission(&mut self, (steps, trials, choice): super::Calibration) {
        self.admission_rate_per_s = choice.admission_rate_per_s;
        self.admission_rate_why = choice.why;
        self.admission_rate_goal_met = choice.goal_met;
        self.calibration = steps;
        self.calibration_trials = trials;
    }
}

/// What the audit after the drain found.
#[derive(Debug, Clone, Copy)]
pub struct Audit {
    /// Seats of the show.
    pub seats: i64,
    /// Seats BOOKED.
    pub seats_booked: i64,
    /// Seats that are, or could be, sold twice.
    pub double_booked: i64,
    /// From the money audit.
    pub money_lost: u64,
}

/// The figures of a phase from what its buyers saw and the audit.
pub fn figures(
    records: &[Record],
    opens_at_ms: i64,
    purchases: &Histogram<u64>,
    stats: &crate::crowd::Stats,
    audit: Audit,
    drain: Duration,
) -> Figures {
    let mut waits: Vec<f64> = records
        .iter()
        .filter_map(|r| r.admitted_at)
        .map(|t| (t - opens_at_ms).max(0) as f64 / 1000.0)
        .collect();
    waits.sort_by(f64::total_cmp);
    let last_booking = records.iter().filter_map(|r| r.booked_at_ms).max();
    let seconds = last_booking.map(|t| r2((t - opens_at_ms).max(1) as f64 / 1000.0));
    let mut outcomes = BTreeMap::new();
    for r in records {
        *outcomes.entry(r.outcome.name().to_owned()).or_default() += 1;
    }
    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    Figures {
        buyers: records.len(),
        seats: audit.seats,
        admitted: waits.len(),
        bookings: records
            .iter()
            .filter(|r| r.outcome == Outcome::Bought)
            .count(),
        tickets_sold: audit.seats_booked,
        tickets_per_s: seconds.map_or(0.0, |s| r2(audit.seats_booked as f64 / s)),
        seconds_to_sell_out: seconds,
        sold_out: audit.seats_booked >= audit.seats,
        purchase_p50_ms: q(purchases, 0.5),
        purchase_p99_ms: q(purchases, 0.99),
        hold_p99_ms: stats.quantile(crate::crowd::Kind::Hold, 0.99),
        queue_wait_p50_s: quantile(&waits, 0.5),
        queue_wait_p99_s: quantile(&waits, 0.99),
        oversold: (audit.seats_booked - audit.seats).max(0),
        unsold_at_end: (audit.seats - audit.seats_booked).max(0),
        double_booked: audit.double_booked,
        money_lost: audit.money_lost,
        outcomes,
        answers: stats.answers.clone(),
        drain_s: r2(drain.as_secs_f64()),
        admission_rate_per_s: 0.0,
        admission_rate_why: String::new(),
        admission_rate_goal_met: false,
        calibration: Vec::new(),
        calibration_trials: Vec::new(),
    }
}

/// The `q` quantile of sorted values (nearest rank), two decimals.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(r2(sorted[rank - 1]))
}

/// Buyers without the edge: a pacer admits them in a random order at
/// `rate` per second from `opens` (as the waiting room would), each with a
/// pass signed with the region's admission key, then each buys.
pub async fn paced(
    shop: Arc<Shop>,
    buyers: Vec<Buyer>,
    rate: f64,
    opens: Instant,
    opens_at_ms: i64,
    admission_key: Arc<str>,
    pass_ttl_s: i64,
) -> Vec<Record> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..buyers.len()).collect();
    order.shuffle(&mut rand::thread_rng());
    let mut place = vec![0usize; buyers.len()];
    for (k, &i) in order.iter().enumerate() {
        place[i] = k;
    }
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let (shop, key) = (shop.clone(), admission_key.clone());
            let k = place[i];
            tokio::spawn(async move {
                let mut rec = Record::new(&b.id);
                let turn = opens + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(turn.into()).await;
                if Instant::now() >= shop.crowd.deadline() {
                    rec.outcome = Outcome::StillWaiting;
                    return rec;
                }
                let now_s = unix_ms() / 1000;
                let pass = shared::admission::sign(
                    key.as_bytes(),
                    &shared::admission::PassClaims {
                        pid: format!("{}:paced-{}", shop.show, k + 1),
                        sub: b.id.clone(),
                        sale: shop.show.clone(),
                        pos: k as u64 + 1,
                        iat: now_s,
                        exp: now_s + pass_ttl_s,
                    },
                );
                rec.admitted_at = Some(unix_ms().max(opens_at_ms));
                rec.position = Some(k as u64 + 1);
                shop.buy(&b, &pass, &mut rec).await;
                rec
            })
        })
        .collect();
    collect(tasks).await
}

/// Buyers through the edge: each, already in the waiting room, polls it
/// until admitted, then buys.
pub async fn queued(shop: Arc<Shop>, crowd: Arc<Crowd>, buyers: Vec<Buyer>) -> Vec<Record> {
    let tasks: Vec<_> = buyers
        .into_iter()
        .map(|b| {
            let (shop, crowd) = (shop.clone(), crowd.clone());
            tokio::spawn(async move {
                let mut rec = Record::new(&b.id);
                if let Some(pass) = crowd.wait_for_pass(&b, &mut rec).await {
                    shop.buy(&b, &pass, &mut rec).await;
                }
                rec
            })
        })
        .collect();
    collect(tasks).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Record>>) -> Vec<Record> {
    let mut records = Vec::with_capacity(tasks.len());
    for t in tasks {
        records.push(t.await.unwrap_or_else(|e| {
            let mut r = Record::new("?");
            r.fail(format!("buyer task failed: {e}"));
            r
        }));
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crowd::Stats;

    #[test]
    fn figures_say_when_seats_are_oversold_or_left_unsold() {
        let opens = 1_000_000;
        let mut a = Record::new("a");
        a.admitted_at = Some(opens + 500);
        a.outcome = Outcome::Bought;
        a.booked_at_ms = Some(opens + 2_000);
        let mut b = Record::new("b");
        b.admitted_at = Some(opens + 1_500);
        b.outcome = Outcome::SoldOut;
        let records = [a, b];
        let mut h = crate::openloop::micros_histogram();
        h.record(20_000).unwrap();
        let audit = |booked| Audit {
            seats: 10,
            seats_booked: booked,
            double_booked: 0,
            money_lost: 0,
        };
        let stats = Stats::default();
        let exact = figures(&records, opens, &h, &stats, audit(10), Duration::ZERO);
        assert_eq!((exact.oversold, exact.unsold_at_end), (0, 0));
        assert!(exact.sold_out);
        assert_eq!(exact.seconds_to_sell_out, Some(2.0));
        assert_eq!(exact.tickets_per_s, 5.0);
        assert_eq!(exact.queue_wait_p50_s, Some(0.5));
        assert_eq!(exact.queue_wait_p99_s, Some(1.5));
        // (a histogram bucket's upper edge)
        assert!(
            (exact.purchase_p99_ms - 20.0).abs() < 0.1,
            "{}",
            exact.purchase_p99_ms
        );
        let over = figures(&records, opens, &h, &stats, audit(12), Duration::ZERO);
        assert_eq!((over.oversold, over.unsold_at_end), (2, 0));
        let under = figures(&records, opens, &h, &stats, audit(7), Duration::ZERO);
        assert_eq!((under.oversold, under.unsold_at_end), (0, 3));
        assert!(!under.sold_out);
    }
}
