//! The benchmark's result: one JSON object (printed as one line on stdout
//! with `--json`) and a short human summary for stderr.

use serde::Serialize;
use std::collections::BTreeMap;

/// One step of the rate ramp.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RampStep {
    /// Scheduled requests per second.
    pub rate: f64,
    /// Completed attempts per second.
    pub attempts_per_s: f64,
    /// Successful holds per second.
    pub holds_per_s: f64,
    /// p50 latency from the scheduled send time.
    pub p50_ms: f64,
    /// p99 latency from the scheduled send time.
    pub p99_ms: f64,
    /// Errors (including 503s) and dropped requests.
    pub errors: u64,
    /// Kept up with the schedule (≥ 95 % completed, nothing dropped,
    /// ≤ 1 % errors).
    pub kept_up: bool,
    /// Kept up and p99 within the SLO.
    pub within_slo: bool,
}

/// Whether the run met the project's goals on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct Goals {
    /// holds/s ≥ 2 × the pgbench hold-transaction rate.
    pub holds_ge_2x_pg: Option<bool>,
    /// holds/s ≥ 40 % of the Redis lock-script rate.
    pub holds_ge_40pct_redis: Option<bool>,
    /// p99 < 25 ms.
    pub p99_lt_25ms: bool,
    /// No double-booked seat.
    pub no_double_booking: bool,
}

/// Everything the `holds` benchmark reports.
#[derive(Debug, Clone, Serialize)]
pub struct HoldsReport {
    /// Load model: always `open` (requests scheduled at `rate`).
    pub model: &'static str,
    /// What latency is measured from.
    pub latency_from: &'static str,
    /// `fixed` (--rate) or `auto_ramp` (max sustainable rate found first).
    pub rate_mode: &'static str,
    /// `in-process` or the target URL.
    pub target: String,
    /// Scheduled holds per second of the measured run.
    pub rate: f64,
    /// Scheduled length of the measured run.
    pub duration_secs: f64,
    /// Shows the measured run spread its holds over.
    pub shows: usize,
    /// Seats per show.
    pub seats_per_show: usize,
    /// Seats in the measured run's shows.
    pub seats: usize,
    /// Seats per hold: uniform in this range, adjacent in one row.
    pub seats_per_hold: &'static str,
    /// Cap on requests in flight.
    pub max_in_flight: usize,
    /// Client runtime worker threads.
    pub client_threads: usize,
    /// In-process server runtime worker threads (None against a target).
    pub server_threads: Option<usize>,
    /// Hold attempts scheduled.
    pub scheduled: u64,
    /// Completed hold attempts.
    pub attempts: u64,
    /// Successful holds (201).
    pub holds: u64,
    /// 409 seats_unavailable.
    pub conflicts: u64,
    /// Every other answer, 503s and transport errors included.
    pub errors: u64,
    /// 503s among the errors (load shed).
    pub shed: u64,
    /// Scheduled requests never sent, or never answered, within the grace.
    pub dropped: u64,
    /// Completed attempts per second.
    pub attempts_per_s: f64,
    /// Successful holds per second.
    pub holds_per_s: f64,
    /// Latency percentiles over all attempts, from the scheduled send time.
    pub p50_ms: f64,
    /// p90.
    pub p90_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// p99.9.
    pub p999_ms: f64,
    /// Max.
    pub max_ms: f64,
    /// p50 of successful holds only (they include the group commit).
    pub held_p50_ms: f64,
    /// p99 of successful holds only.
    pub held_p99_ms: f64,
    /// p99 of how late the client sent requests (client-side saturation).
    pub send_lag_p99_ms: f64,
    /// The p99 SLO the ramp used, ms.
    pub slo_p99_ms: f64,
    /// The measured run kept up with its schedule.
    pub kept_up: bool,
    /// ... and its p99 was within the SLO.
    pub within_slo: bool,
    /// Highest ramp rate kept up with whatever the latency (the capacity);
    /// None with --rate.
    pub max_kept_up_rate: Option<f64>,
    /// Successful holds/s of that ramp step.
    pub max_kept_up_holds_per_s: Option<f64>,
    /// p99 of that ramp step, ms.
    pub max_kept_up_p99_ms: Option<f64>,
    /// Postgres: (show, seat) pairs with >1 live hold_seats row + HELD rows
    /// whose hold is not the live owner. None if the database is not known.
    pub double_booked: Option<i64>,
    /// Client view: seats acknowledged (201) to two different holds.
    pub double_booked_client: u64,
    /// Holds acknowledged with 201 over the whole invocation.
    pub holds_acknowledged: u64,
    /// Hold rows in Postgres for the invocation's shows.
    pub holds_in_db: Option<i64>,
    /// Seats HELD in Postgres for the invocation's shows.
    pub seats_held_in_db: Option<i64>,
    /// Holds acknowledged but missing from Postgres (must be 0).
    pub holds_lost: Option<i64>,
    /// `redis-benchmark` EVALSHA of the seat-lock script, calls/s.
    pub baseline_redis_lock_per_s: Option<f64>,
    /// Seat keys per call in the Redis baseline.
    pub baseline_redis_keys_per_call: Option<u32>,
    /// `pgbench` one-transaction-per-hold rate (tps).
    pub baseline_pg_hold_tx_per_s: Option<f64>,
    /// Holds actually written per second by pgbench.
    pub baseline_pg_holds_per_s: Option<f64>,
    /// holds_per_s / baseline_pg_hold_tx_per_s.
    pub ratio_vs_pg: Option<f64>,
    /// holds_per_s / baseline_redis_lock_per_s.
    pub ratio_vs_redis: Option<f64>,
    /// Goal checks.
    pub goals: Goals,
    /// The ramp that chose `rate` (empty with --rate).
    pub ramp: Vec<RampStep>,
    /// Error answers by kind (status and code).
    pub error_kinds: BTreeMap<String, u64>,
}

/// Rounds to two decimals (the JSON stays readable).
pub fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Microseconds to milliseconds, two decimals.
pub fn ms(us: u64) -> f64 {
    r2(us as f64 / 1000.0)
}

/// `1234/s`, or `n/a` for a baseline that did not run.
fn per_s(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.0}/s"))
}

impl HoldsReport {
    /// A few readable lines for stderr.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "holds: {:.0}/s ({} ok, {} conflicts, {} errors, {} dropped) at {:.0} scheduled/s for {:.0}s, open model\n",
            self.holds_per_s, self.holds, self.conflicts, self.errors, self.dropped, self.rate, self.duration_secs
        ));
        s.push_str(&format!(
            "latency from scheduled send: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms
        ));
        s.push_str(&format!(
            "baselines: redis lock {}, pg hold tx {}; ratio vs pg {}, vs redis {}\n",
            per_s(self.baseline_redis_lock_per_s),
            per_s(self.baseline_pg_hold_tx_per_s),
            self.ratio_vs_pg.map_or("n/a".into(), |r| format!("{r:.2}")),
            self.ratio_vs_redis
                .map_or("n/a".into(), |r| format!("{r:.2}")),
        ));
        s.push_str(&format!(
            "double-booked seats: {} (postgres), {} (client view)",
            self.double_booked
                .map_or("not checked".into(), |d| d.to_string()),
            self.double_booked_client
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_two_decimals() {
        assert_eq!(r2(1.23456), 1.23);
        assert_eq!(ms(12_345), 12.35);
    }
}
