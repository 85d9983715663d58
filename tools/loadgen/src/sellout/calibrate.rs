//! The admission rate, from the region's measured capacity: before the
//! sale, buyers hold and pay straight at the region core in a closed loop
//! at rising concurrency (a fresh show per step), and the sale admits
//! buyers at a share of the best booking rate whose purchase p99 stayed
//! under the goal. Admitting faster than that only lengthens the
//! purchase's tail (buyers pile up in the region instead of the queue);
//! admitting slower leaves capacity unused.
//!
//! Pure choice in [`choose`]; the measuring in [`measure`].

use crate::openloop::micros_histogram;
use crate::purchase::{self, Paid, Patience};
use crate::report::{ms, r2};
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use shared::api::{CreateHold, Hold};
use shared::token::Role;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::api::{Api, Minter};

/// Share of the measured capacity the sale admits at: headroom for the
/// waiting room's own traffic and for buyers who hold but pay late.
pub const HEADROOM: f64 = 0.8;

/// One step of the calibration.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Buyers holding and paying at once.
    pub concurrency: usize,
    /// Bookings per second.
    pub bookings_per_s: f64,
    /// Purchase (checkout answered 201) latency, ms.
    pub purchase_p50_ms: f64,
    /// Purchase p99, ms.
    pub purchase_p99_ms: f64,
    /// Bookings made.
    pub bookings: u64,
}

/// The admission rate and why.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// Admissions per second the sale uses.
    pub admission_rate_per_s: f64,
    /// How it was derived.
    pub why: String,
    /// Whether a step met the purchase p99 goal.
    pub goal_met: bool,
}

/// The best step under `goal_ms` (the most bookings per second), else the
/// step with the shortest tail; the rate is [`HEADROOM`] of its bookings
/// per second (each admitted buyer makes at most one purchase).
pub fn choose(steps: &[Step], goal_ms: f64) -> Option<Choice> {
    let under = steps
        .iter()
        .filter(|s| s.purchase_p99_ms <= goal_ms && s.bookings > 0)
        .max_by(|a, b| a.bookings_per_s.total_cmp(&b.bookings_per_s));
    let (step, goal_met) = match under {
        Some(s) => (s, true),
        None => (
            steps
                .iter()
                .filter(|s| s.bookings > 0)
                .min_by(|a, b| a.purchase_p99_ms.total_cmp(&b.purchase_p99_ms))?,
            false,
        ),
    };
    let rate = r2((step.bookings_per_s * HEADROOM).max(1.0));
    let why = if goal_met {
        format!(
            "{HEADROOM} x {} bookings/s, the most the region did with purchase p99 under \
             {goal_ms} ms ({} ms at {} buyers at once)",
            step.bookings_per_s, step.purchase_p99_ms, step.concurrency
        )
    } else {
        format!(
            "no step kept purchase p99 under {goal_ms} ms: {HEADROOM} x {} bookings/s of the \
             step with the shortest tail ({} ms at {} buyers at once)",
            step.bookings_per_s, step.purchase_p99_ms, step.concurrency
        )
    };
    Some(Choice {
        admission_rate_per_s: rate,
        why,
        goal_met,
    })
}

/// Where and how a step buys.
pub struct Target<'a> {
    /// The region core, or the edge in front of it.
    pub api: &'a Api,
    /// Signs each purchase's buyer (a new one per purchase, from an
    /// address of its own: the edge's per-user and per-address limits are
    /// for real buyers, not for the calibration's few loops).
    pub minter: &'a Minter,
    /// Names the buyers apart from other runs and steps.
    pub tag: String,
    /// Row labels and seats per row of the step's show.
    pub rows: &'a [String],
    /// Seats per row.
    pub per_row: u16,
    /// 1..=max_group seats per purchase.
    pub max_group: u16,
}

/// One step on `show`: `concurrency` buyers hold and pay for `secs`.
pub async fn measure(
    t: &Target<'_>,
    show: &str,
    concurrency: usize,
    secs: f64,
    key_prefix: &str,
) -> Step {
    let lat = Arc::new(Mutex::new(micros_histogram()));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks = (0..concurrency).map(|_| {
        let (lat, next) = (lat.clone(), next.clone());
        let (api, minter) = (t.api.clone(), t.minter.clone());
        let path = format!("/v1/shows/{show}/holds");
        let (rows, per_row, max_group) = (t.rows.to_vec(), t.per_row, t.max_group);
        let (key_prefix, tag) = (key_prefix.to_owned(), t.tag.clone());
        tokio::spawn(async move {
            let mut booked = 0u64;
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Ok(bearer) = minter.bearer(&format!("{tag}-{n}"), Role::User) else {
                    break;
                };
                let api = api.at_ip(&crate::edge::client_ip(n));
                let seats = pick(&rows, per_row, max_group);
                let Ok(hold) = api
                    .post::<_, Hold>(&path, &bearer, &CreateHold { seats })
                    .await
                else {
                    continue;
                };
                let run = purchase::pay(
                    &api,
                    &bearer,
                    hold.hold_id,
                    &key_prefix,
                    Patience::default(),
                )
                .await;
                if let Paid::Booked { .. } = run.outcome {
                    booked += 1;
                    if let Some(a) = run.attempts.last() {
                        record(&lat, a.latency);
                    }
                }
            }
            booked
        })
    });
    let mut bookings = 0;
    for t in futures::future::join_all(tasks).await {
        bookings += t.unwrap_or(0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let h = crate::crowd::locked(&lat);
    Step {
        concurrency,
        bookings_per_s: r2(bookings as f64 / elapsed),
        purchase_p50_ms: quantile(&h, 0.5),
        purchase_p99_ms: quantile(&h, 0.99),
        bookings,
    }
}

fn record(h: &Mutex<Histogram<u64>>, latency: Duration) {
    crate::crowd::locked(h).saturating_record(latency.as_micros() as u64);
}

fn quantile(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms(h.value_at_quantile(q))
    }
}

/// A random group of adjacent seats (a fresh show has few conflicts).
fn pick(rows: &[String], per_row: u16, max_group: u16) -> Vec<String> {
    let mut rng = rand::thread_rng();
    let row = &rows[rng.gen_range(0..rows.len())];
    let n = rng.gen_range(1..=max_group.min(per_row));
    let first = rng.gen_range(1..=per_row - n + 1);
    (first..first + n).map(|k| format!("{row}{k}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(concurrency: usize, bookings_per_s: f64, p99: f64) -> Step {
        Step {
            concurrency,
            bookings_per_s,
            purchase_p50_ms: p99 / 2.0,
            purchase_p99_ms: p99,
            bookings: 10,
        }
    }

    #[test]
    fn the_rate_is_the_best_rate_under_the_goal_less_headroom() {
        let steps = [
            step(1, 50.0, 12.0),
            step(4, 150.0, 40.0),
            step(16, 250.0, 180.0),
        ];
        let c = choose(&steps, 50.0).unwrap();
        assert!(c.goal_met);
        assert_eq!(c.admission_rate_per_s, 120.0);
        assert!(c.why.contains("4 buyers"), "{}", c.why);
        // A stricter goal picks a slower step.
        assert_eq!(choose(&steps, 20.0).unwrap().admission_rate_per_s, 40.0);
        // None under the goal: the shortest tail, and it says so.
        let c = choose(&steps, 5.0).unwrap();
        assert!(!c.goal_met);
        assert_eq!(c.admission_rate_per_s, 40.0);
        // No booking at all: no rate.
        let mut empty = step(1, 0.0, 0.0);
        empty.bookings = 0;
        assert!(choose(&[empty], 50.0).is_none());
    }
}
