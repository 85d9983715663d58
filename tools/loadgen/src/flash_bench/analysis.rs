//! What the sale shows, read from Redis afterwards: admission order,
//! the draw, the admission rate and its worst 10-second window.

use super::SaleRun;
use crate::crowd::{self};
use anyhow::Context;
use functions::waiting_room::{self as room};
use shared::waiting_room::{prequeue_score, seed_commitment, SaleConfig};
use std::collections::HashMap;

/// The sale's waiting room as Redis holds it at the end.
pub(super) struct RoomState {
    /// Users in queue order, with their scores.
    pub(super) queue: Vec<(String, f64)>,
    /// User → (unix ms the pass was first issued, 1-based place then).
    pub(super) passes: HashMap<String, (i64, u64)>,
    /// Places given back by completed passes.
    pub(super) bonus: u64,
    /// Users dropped for not polling.
    pub(super) gone: u64,
    /// The pre-queue seed.
    pub(super) seed: Option<String>,
}

impl RoomState {
    pub(super) async fn read(redis_url: &str, prefix: &str, show: &str) -> anyhow::Result<Self> {
        let keys: Vec<String> = room::room_keys(show)
            .iter()
            .map(|k| format!("{prefix}{k}"))
            .collect();
        // room_keys: q, seen, seed, bonus, n, drawn, gone, passes, slot.
        let [q, _seen, seed, bonus, _n, _drawn, gone, passes, _slot] = keys.as_slice() else {
            anyhow::bail!("the waiting room has {} keys, expected 9", keys.len());
        };
        let client = redis::Client::open(redis_url).context("LOADGEN_REDIS_URL")?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .context("connecting to Redis to read the waiting room")?;
        let queue: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(q)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .context("reading the queue")?;
        let raw: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(passes)
            .query_async(&mut conn)
            .await
            .context("reading the pass records")?;
        let passes = raw
            .into_iter()
            .filter_map(|(user, rec)| {
                let p = room::PassRecord::parse(&rec)?;
                Some((user, (p.iat_ms, p.pos)))
            })
            .collect();
        let bonus: Option<u64> = redis::cmd("GET").arg(bonus).query_async(&mut conn).await?;
        let gone: u64 = redis::cmd("SCARD").arg(gone).query_async(&mut conn).await?;
        let seed: Option<String> = redis::cmd("GET").arg(seed).query_async(&mut conn).await?;
        Ok(Self {
            queue,
            passes,
            bonus: bonus.unwrap_or(0),
            gone,
            seed,
        })
    }
}

/// What the records and the waiting room's state say together.
pub(super) struct Analysis {
    pub(super) admitted: u64,
    pub(super) admitted_client: u64,
    pub(super) order_violations: u64,
    pub(super) draw_mismatches: u64,
    pub(super) joined_after_opening: u64,
    pub(super) seed_commitment_verified: bool,
    /// Admissions per second from the rate alone (places given back by
    /// completed passes taken out): the least-squares slope of the
    /// serving counter over time.
    pub(super) base_rate: Option<f64>,
    /// Serving-counter samples the slope was fitted to.
    pub(super) samples: usize,
    /// All admissions per second, first to last.
    pub(super) total_rate: Option<f64>,
    /// Most passes issued within one second.
    pub(super) peak_per_s: u64,
    /// Most passes issued within any 10 seconds, per second (the cap).
    pub(super) worst_10s_per_s: f64,
    pub(super) window_s: Option<f64>,
    pub(super) bonus: u64,
    pub(super) gone: u64,
}

/// Pre-queue scores are below 2^48; later joins are 2^48 + n.
pub(super) const PREQUEUE_LIMIT: f64 = 281_474_976_710_656.0;

pub(super) fn analyse(run: &SaleRun, state: &RoomState, config: &SaleConfig) -> Analysis {
    let rank: HashMap<&str, u64> = state
        .queue
        .iter()
        .enumerate()
        .map(|(i, (u, _))| (u.as_str(), i as u64))
        .collect();
    let order_violations = crowd::order_violations(&run.records, &rank);

    // The draw: every pre-queue user's score is the hash of the seed and
    // their id, so the order was fixed by the seed committed to before
    // opening.
    let mut draw_mismatches = 0;
    let mut joined_after_opening = 0;
    for (user, score) in &state.queue {
        if *score >= PREQUEUE_LIMIT {
            joined_after_opening += 1;
        } else if let Some(seed) = &state.seed {
            if prequeue_score(seed, user) as f64 != *score {
                draw_mismatches += 1;
            }
        } else {
            draw_mismatches += 1;
        }
    }
    let seed_commitment_verified = match (&state.seed, &run.commitment, &run.revealed_seed) {
        (Some(seed), Some(c), Some(revealed)) => seed_commitment(seed) == *c && revealed == seed,
        _ => false,
    };

    // The admission rate. Every waiting answer carries the serving counter
    // the Worker computed at that moment (position - 1 - ahead): places
    // admitted by the rate (completed passes add none); its slope over
    // time is the observed admission rate.
    let points: Vec<(f64, f64)> = run
        .records
        .iter()
        .flat_map(|r| r.waiting.iter())
        .map(|w| {
            let at = (w.sent_ms + w.recv_ms) / 2;
            ((at - config.opens_at_ms) as f64 / 1000.0, w.served as f64)
        })
        .collect();
    // All admissions, from the instants the Worker issued each pass.
    let mut issued: Vec<i64> = state.passes.values().map(|p| p.0).collect();
    issued.sort_unstable();
    // The busiest second: admissions whose passes were issued within 1 s.
    let mut peak = 0;
    let mut from = 0;
    for (to, t) in issued.iter().enumerate() {
        while issued[from] <= t - 1000 {
            from += 1;
        }
        peak = peak.max(to + 1 - from);
    }
    let window_s = match (issued.first(), issued.last()) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1000.0),
        _ => None,
    };
    Analysis {
        admitted: state.passes.len() as u64,
        admitted_client: run
            .records
            .iter()
            .filter(|r| r.admitted_at.is_some())
            .count() as u64,
        order_violations,
        draw_mismatches,
        joined_after_opening,
        seed_commitment_verified,
        base_rate: slope(&points),
        samples: points.len(),
        total_rate: window_s.map(|w| (issued.len() - 1) as f64 / w),
        peak_per_s: peak as u64,
        worst_10s_per_s: shared::waiting_room::worst_window(&issued, 10_000) as f64 / 10.0,
        window_s,
        bonus: state.bonus,
        gone: state.gone,
    }
}

/// Least-squares slope of y over x (None for fewer than two distinct x).
pub(super) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_is_its_rate() {
        let pts: Vec<(f64, f64)> = (0..100)
            .map(|i| (i as f64 / 10.0, i as f64 * 5.0))
            .collect();
        let s = slope(&pts).expect("a slope");
        assert!((s - 50.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
