//! The benchmarks' results: one JSON object each (printed as one line on
//! stdout with `--json`) and a short human summary for stderr.

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
    /// `spawned` (the region core binary next to loadgen's own, release
    /// for benchmarks) or the target URL.
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
    /// The spawned region core's runtime worker threads (None against a target).
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

/// Everything the `checkout` benchmark reports (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct CheckoutReport {
    /// Load model: `closed` (each simulated user waits for its answers,
    /// as a real buyer does).
    pub model: &'static str,
    /// What `p50_ms`/`p99_ms` measure.
    pub latency: &'static str,
    /// Simulated users.
    pub users: usize,
    /// How long users kept starting purchases, seconds.
    pub duration_s: f64,
    /// From the start until the last user finished its last purchase.
    pub elapsed_s: f64,
    /// The sandbox's random fault rate on `pm_card_ok`.
    pub fault_rate: f64,
    /// The sandbox's fault seed, if fixed.
    pub seed: Option<u64>,
    /// Share of bookings cancelled right after purchase.
    pub cancel_share: f64,
    /// Share of bookings whose checkout was replayed (same key).
    pub replay_share: f64,
    /// The region core's gateway timeout / the sandbox's hang, ms.
    pub gateway_timeout_ms: u64,
    /// How long a sandbox timeout fault hangs, ms.
    pub gateway_hang_ms: u64,
    /// Shows × seats the purchases went to.
    pub shows: usize,
    /// Seats per show.
    pub seats_per_show: usize,
    /// Purchases started (hold, then checkout).
    pub purchases: u64,
    /// Bookings confirmed to users (201).
    pub bookings_client: u64,
    /// Bookings confirmed per second (`bookings_client / elapsed_s`).
    pub bookings_per_s: f64,
    /// Checkout latency, end to end per purchase: first request to final
    /// answer, including retries and the Retry-After waits.
    pub p50_ms: f64,
    /// p90 of the same.
    pub p90_ms: f64,
    /// p99 of the same.
    pub p99_ms: f64,
    /// Max of the same.
    pub max_ms: f64,
    /// Same, over purchases answered on their first request.
    pub first_try_p50_ms: f64,
    /// p99 of those.
    pub first_try_p99_ms: f64,
    /// Latency of single checkout requests.
    pub request_p50_ms: f64,
    /// p99 of single checkout requests.
    pub request_p99_ms: f64,
    /// Latency of hold requests during the checkout run.
    pub hold_p50_ms: f64,
    /// p99 of hold requests.
    pub hold_p99_ms: f64,
    /// Checkout requests sent (retries included).
    pub checkout_requests: u64,
    /// Purchases that needed more than one request.
    pub retried: u64,
    /// Purchases whose every key was declined (402).
    pub declined: u64,
    /// Purchases that got 409 confirmation_failed (charged and refunded).
    pub confirmation_failed: u64,
    /// Purchases abandoned after repeated 503s (settled by reconciliation).
    pub gave_up_pending: u64,
    /// Purchases refused otherwise (by kind in `checkout_answers`).
    pub refused: u64,
    /// Hold attempts that got 409 seats_unavailable (the user picked
    /// other seats).
    pub seat_conflicts: u64,
    /// Purchases where no seats could be held.
    pub no_seats: u64,
    /// Every checkout answer by status and code.
    pub checkout_answers: BTreeMap<String, u64>,
    /// Other failed requests (holds, cancels …) by kind.
    pub errors: BTreeMap<String, u64>,
    /// 500 answers anywhere (must be 0 for a healthy core).
    pub server_errors: u64,
    /// Checkouts replayed with the same key.
    pub replays: u64,
    /// Replays that were not the same 201 bytes marked replayed.
    pub replay_mismatches: u64,
    /// Bookings cancelled.
    pub cancels: u64,
    /// Cancellations whose refund differed from the quote just before.
    pub cancel_quote_mismatches: u64,
    /// What reconciliation fixed after the load (all passes).
    pub reconcile: shared::api::ReconcileReport,
    /// Seconds from the end of the load until every refund had landed.
    pub settle_s: f64,
    /// Bookings in Postgres (confirmed + cancelled).
    pub bookings: i64,
    /// Of which cancelled.
    pub bookings_cancelled: i64,
    /// Bookings confirmed to a user but missing from Postgres (must be 0).
    pub bookings_lost: i64,
    /// Seats BOOKED in Postgres at the end.
    pub seats_booked: i64,
    /// Succeeded charges at the gateway.
    pub charges: u64,
    /// Their sum, minor units.
    pub charged_minor: i64,
    /// Refunds that landed at the gateway.
    pub refunds: u64,
    /// Their sum.
    pub refunded_minor: i64,
    /// Succeeded charges matched by neither a booking nor a refund after
    /// reconciliation (must be 0).
    pub money_lost: u64,
    /// Their sum.
    pub money_lost_minor: i64,
    /// Purchases charged more than once with the money kept (must be 0).
    pub double_charged: u64,
    /// Seats sold twice: Postgres (active booking seats vs seat rows) plus
    /// the users' view of live bookings (must be 0).
    pub double_booked: i64,
    /// The users' view alone: seats in two live bookings they were given.
    pub double_booked_client: u64,
    /// Charges refunded less than owed after settling (must be 0).
    pub refunds_short: u64,
    /// Charges refunded more than owed (must be 0).
    pub over_refunded: u64,
    /// Bookings without a succeeded charge (must be 0).
    pub bookings_unpaid: u64,
    /// Charges whose reference is no payment of the core.
    pub unknown_charges: u64,
    /// Payments unsettled after reconciliation.
    pub payments_unsettled: u64,
    /// Refund rows still PENDING when the audit ran.
    pub refunds_pending: u64,
    /// Refund rows FAILED.
    pub refunds_failed: u64,
    /// Baseline: holds/s the same users reach holding and releasing seats
    /// (no payment), same run, same core.
    pub baseline_holds_only_per_s: Option<f64>,
    /// Its hold p99, ms.
    pub baseline_holds_only_p99_ms: Option<f64>,
    /// Baseline: pgbench, one hold transaction per hold (as `holds`).
    pub baseline_pg_hold_tx_per_s: Option<f64>,
    /// bookings_per_s / baseline_holds_only_per_s.
    pub ratio_vs_holds_only: Option<f64>,
    /// bookings_per_s / baseline_pg_hold_tx_per_s.
    pub ratio_vs_pg: Option<f64>,
    /// The machine's 1-minute load average when the checkout phase
    /// started and ended (other work on a shared machine skews results).
    /// Where the load phase's time went, per booking (`profile`).
    pub per_booking: Option<crate::profile::PerBooking>,
    pub load_avg_1m: [Option<f64>; 2],
    /// Every invariant held.
    pub invariants_ok: bool,
}

impl CheckoutReport {
    /// A few readable lines for stderr.
    pub fn summary(&self) -> String {
        format!(
            "checkout: {:.1} bookings/s ({} booked, {} declined, {} refunded at confirmation, {} gave up, {} cancelled) by {} users for {:.0}s, fault rate {}\n\
             checkout latency incl. retries: p50 {:.2} ms, p99 {:.2} ms (first-try p50 {:.2} ms, p99 {:.2} ms)\n\
             baselines: holds only {}, pg hold tx {}\n\
             money: {} charges, {} refunds; lost {}, double-charged {}, refunds short {}; double-booked seats {}",
            self.bookings_per_s,
            self.bookings_client,
            self.declined,
            self.confirmation_failed,
            self.gave_up_pending,
            self.cancels,
            self.users,
            self.duration_s,
            self.fault_rate,
            self.p50_ms,
            self.p99_ms,
            self.first_try_p50_ms,
            self.first_try_p99_ms,
            per_s(self.baseline_holds_only_per_s),
            per_s(self.baseline_pg_hold_tx_per_s),
            self.charges,
            self.refunds,
            self.money_lost,
            self.double_charged,
            self.refunds_short,
            self.double_booked,
        )
    }
}

/// Everything `loadgen flash-sale --through-edge` reports (one JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct FlashSaleReport {
    /// Always `through_edge`.
    pub mode: &'static str,
    /// What ran where.
    pub runtime: &'static str,
    /// Simulated users.
    pub users: usize,
    /// Users who joined the pre-queue.
    pub joined: usize,
    /// Users the waiting room admitted (pass records in Redis).
    pub admitted: u64,
    /// Users who saw their pass.
    pub admitted_client: u64,
    /// Users still waiting when the sale's time ran out.
    pub still_waiting: u64,
    /// Users dropped for not polling (the waiting room's `gone` set).
    pub dropped: u64,
    /// Admissions per second configured.
    pub rate_per_sec: f64,
    /// Admissions per second observed from the rate alone: least-squares
    /// slope over time of the serving counter the Worker reported to
    /// waiting users (`position − 1 − ahead`), less the places given back
    /// by then.
    pub admission_rate_per_s: Option<f64>,
    /// Serving-counter samples behind it (waiting answers after opening).
    pub admission_rate_samples: usize,
    /// `(admission_rate_per_s − rate_per_sec) / rate_per_sec`, %.
    pub admission_rate_error_pct: Option<f64>,
    /// All admissions per second, first pass issued to last.
    pub admissions_per_s_total: Option<f64>,
    /// Most passes issued within any one second.
    pub admissions_peak_per_s: u64,
    /// Most passes issued within any 10 seconds, per second: the rate is a
    /// cap over any such window (within 2 %).
    pub admissions_worst_10s_per_s: f64,
    /// Whether the worst 10-second window kept to the cap (an invariant).
    pub admissions_within_cap: bool,
    /// Passes reported completed by the region (`Admission-Completed`);
    /// they no longer admit anyone extra.
    pub places_given_back: u64,
    /// First pass to last, seconds.
    pub admission_window_s: Option<f64>,
    /// Users told "waiting" after someone behind them had been told
    /// "admitted" (must be 0).
    pub order_violations: u64,
    /// Pre-queue users whose place is not the hash of the committed seed
    /// and their id (must be 0).
    pub draw_mismatches: u64,
    /// Users queued after opening (0: all joined before).
    pub joined_after_opening: u64,
    /// SHA-256 of the seed revealed after opening = the commitment shown
    /// at join time, and the same seed as in Redis.
    pub seed_commitment_verified: bool,
    /// Holds tried by intruders without a pass of their own.
    pub bypass_attempts: u64,
    /// Of which the admission-pass check let through (must be 0).
    pub bypass_accepted: u64,
    /// The intruders' answers, by route, status and code.
    pub bypass_answers: BTreeMap<String, u64>,
    /// Control attempts: the same holds with a pass genuinely signed for
    /// the intruder (only the waiting room can make one).
    pub bypass_controls: u64,
    /// Of which let through (must equal `bypass_controls`, or the zero in
    /// `bypass_accepted` would prove nothing).
    pub bypass_controls_accepted: u64,
    /// Why the intruders could not run, if they could not.
    pub bypass_error: Option<String>,
    /// Seats of the show.
    pub seats: u32,
    /// Holds created (201) through the edge.
    pub holds: u64,
    /// Bookings in Postgres.
    pub bookings: i64,
    /// Seats BOOKED in Postgres.
    pub sold: i64,
    /// Seats sold twice: Postgres plus the buyers' view (must be 0).
    pub double_booked: i64,
    /// The buyers' view alone.
    pub double_booked_client: u64,
    /// How each user's sale ended.
    pub outcomes: BTreeMap<String, u64>,
    /// What ended a user's sale in failure, grouped.
    pub failures: BTreeMap<String, u64>,
    /// Edge requests answered in the measured window (its decisions).
    pub edge_requests: u64,
    /// Client-observed latency of every edge request, p50.
    pub edge_p50_ms: f64,
    /// p90.
    pub edge_p90_ms: f64,
    /// p99.
    pub edge_p99_ms: f64,
    /// Max.
    pub edge_max_ms: f64,
    /// Joins, p50.
    pub join_p50_ms: Option<f64>,
    /// Joins, p99.
    pub join_p99_ms: Option<f64>,
    /// Status polls, p50.
    pub status_p50_ms: Option<f64>,
    /// Status polls, p99.
    pub status_p99_ms: Option<f64>,
    /// Holds, p50.
    pub hold_p50_ms: Option<f64>,
    /// Holds, p99.
    pub hold_p99_ms: Option<f64>,
    /// Checkout requests, p50.
    pub checkout_p50_ms: Option<f64>,
    /// Checkout requests, p99.
    pub checkout_p99_ms: Option<f64>,
    /// 429 answers.
    pub rate_limited: u64,
    /// 5xx answers and requests with no answer.
    pub edge_errors: u64,
    /// Every edge answer by kind, status and code.
    pub edge_answers: BTreeMap<String, u64>,
    /// HTTP requests the Upstash gateway served in the window.
    pub upstash_requests: u64,
    /// Redis commands it answered in the window.
    pub upstash_commands: u64,
    /// `upstash_requests / edge_requests`: Redis round trips per decision.
    pub redis_calls_per_decision: f64,
    /// `upstash_commands / edge_requests`.
    pub redis_commands_per_decision: f64,
    /// Gzip size of the Worker's WASM (functions/build/wasm-gzip-bytes).
    pub wasm_gzip_bytes: u64,
    /// Edge requests in flight at most.
    pub concurrency: usize,
    /// From the first status poll to the last user done, seconds.
    pub sale_s: f64,
    /// The whole run, set-up included, seconds.
    pub elapsed_s: f64,
    /// Opening instant, unix ms.
    pub opens_at_ms: i64,
    /// Same-run baseline: the same work with and without the edge.
    pub baseline: Option<FlashSaleBaseline>,
    /// No order violation, no bypass (and the controls got through), no
    /// double booking, a clean draw.
    pub invariants_ok: bool,
}

/// The flash-sale baseline: latencies of the same requests with and
/// without the edge, interleaved in one phase after the sale.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSaleBaseline {
    /// Rounds (each sends the four requests in turn).
    pub rounds: usize,
    /// Rounds in flight.
    pub concurrency: usize,
    /// A status poll through the edge (workerd + one Upstash call).
    pub status_edge_p50_ms: f64,
    /// p99.
    pub status_edge_p99_ms: f64,
    /// The same status script, keys and arguments straight to the Upstash
    /// gateway.
    pub status_direct_upstash_p50_ms: f64,
    /// p99.
    pub status_direct_upstash_p99_ms: f64,
    /// `GET /v1/bookings/{id}` through the edge (forwarded, one Upstash
    /// call for the rate limit).
    pub read_edge_p50_ms: f64,
    /// p99.
    pub read_edge_p99_ms: f64,
    /// The same read straight from the region core.
    pub read_region_p50_ms: f64,
    /// p99.
    pub read_region_p99_ms: f64,
    /// status_edge − status_direct_upstash, p50.
    pub status_edge_overhead_p50_ms: f64,
    /// read_edge − read_region, p50.
    pub read_edge_overhead_p50_ms: f64,
    /// Requests of the baseline that failed.
    pub errors: u64,
}

impl FlashSaleReport {
    /// A few readable lines for stderr.
    pub fn summary(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |x| format!("{x}"));
        let mut s = format!(
            "flash sale through the edge: {} users, {} admitted at {} /s configured (observed {} /s from the rate, error {} %; {} /s in all with {} places given back)\n\
             order violations {}, draw mismatches {}, seed commitment verified {}; bypass {} accepted of {} attempts\n\
             {} bookings, {} of {} seats sold, double-booked {}\n\
             edge: {} requests, p50 {} ms, p99 {} ms; {} Redis calls per decision; WASM {} bytes gzipped",
            self.users,
            self.admitted,
            self.rate_per_sec,
            opt(self.admission_rate_per_s),
            opt(self.admission_rate_error_pct),
            opt(self.admissions_per_s_total),
            self.places_given_back,
            self.order_violations,
            self.draw_mismatches,
            self.seed_commitment_verified,
            self.bypass_accepted,
            self.bypass_attempts,
            self.bookings,
            self.sold,
            self.seats,
            self.double_booked,
            self.edge_requests,
            self.edge_p50_ms,
            self.edge_p99_ms,
            self.redis_calls_per_decision,
            self.wasm_gzip_bytes,
        );
        if let Some(b) = &self.baseline {
            s.push_str(&format!(
                "\nbaseline: status p50 {} ms via edge vs {} ms straight to Upstash; booking read p50 {} ms via edge vs {} ms straight from the region",
                b.status_edge_p50_ms,
                b.status_direct_upstash_p50_ms,
                b.read_edge_p50_ms,
                b.read_region_p50_ms
            ));
        }
        s
    }
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

/// `loadgen seatmap`'s report (one JSON line with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct SeatmapReport {
    /// Always "seatmap".
    pub bench: &'static str,
    /// "spawned": the run spawned the region core it measured.
    pub target: &'static str,
    /// Whether viewers went through the edge's Durable Objects.
    pub through_edge: bool,
    /// Viewers asked for.
    pub viewers: usize,
    /// Viewers that connected and got their snapshot.
    pub viewers_connected: usize,
    /// Buyers holding and releasing.
    pub buyers: usize,
    /// Seats of the show.
    pub seats: usize,
    /// Length of each phase, s.
    pub duration_s: u64,
    /// Seat changes made per second during the push phase.
    pub changes_per_s: f64,
    /// From a buyer sending a change to a viewer applying it, p50 (ms).
    pub fanout_p50_ms: f64,
    /// The same, p99.
    pub fanout_p99_ms: f64,
    /// The same, max.
    pub fanout_max_ms: f64,
    /// From the region's answer to the buyer (the change committed before
    /// it) to a viewer applying it, p50 (ms; 0 when the viewer had it
    /// first). The time from the commit lies between this and the above.
    pub fanout_after_answer_p50_ms: f64,
    /// The same, p99.
    pub fanout_after_answer_p99_ms: f64,
    /// (change, viewer) pairs timed.
    pub fanout_samples: u64,
    /// Frames a viewer got per second (deltas are coalesced).
    pub frames_per_viewer_per_s: f64,
    /// Viewers whose copy never came to equal the region's final map
    /// (within 60 s of the buyers' stop).
    pub missed_updates: usize,
    /// Gaps viewers saw (each was followed by a snapshot).
    pub gaps: u64,
    /// From the buyers' stop (+0.5 s) until every copy equalled the
    /// region's map (or 60 s): how far behind the slowest viewer was.
    pub settle_ms: u64,
    /// Live sockets the region core had open (its `live_sockets` gauge).
    pub region_sockets: Option<u64>,
    /// Region core resident memory growth per connected viewer, bytes.
    pub region_rss_bytes_per_viewer: Option<u64>,
    /// The polling fallback (`?since=N`, `If-None-Match`).
    pub polling: PollingReport,
    /// The baseline: the whole map every interval.
    pub naive_polling: PollingReport,
    /// The goals on this machine.
    pub goals: SeatmapGoals,
}

/// One polling phase.
#[derive(Debug, Clone, Serialize)]
pub struct PollingReport {
    /// Seconds between a poller's polls.
    pub interval_s: u64,
    /// Polls sent per second.
    pub client_requests_per_s: f64,
    /// Polls answered per second (any status).
    pub answered_per_s: f64,
    /// Polls that failed or went unanswered for 10 s during the phase.
    pub failed: u64,
    /// Polls the region core served per second.
    pub region_requests_per_s: f64,
    /// Bytes of answers per second.
    pub bytes_per_s: u64,
    /// From a buyer sending a change to a poller seeing it, p50 (ms).
    pub staleness_p50_ms: f64,
    /// The same, p99.
    pub staleness_p99_ms: f64,
    /// Changes timed.
    pub samples: u64,
}

/// The seat-map goals.
#[derive(Debug, Clone, Serialize)]
pub struct SeatmapGoals {
    /// 5,000 concurrent viewers.
    pub viewers_5000: bool,
    /// Fan-out p99 under 250 ms.
    pub fanout_p99_under_250ms: bool,
    /// At most 16 KB of region memory per direct viewer.
    pub rss_per_viewer_under_16kb: bool,
    /// Every copy equal to the region's map at the end.
    pub no_missed_updates: bool,
}

impl SeatmapReport {
    /// One human line per phase.
    pub fn summary(&self) -> String {
        format!(
            "seatmap: {}/{} viewers, {:.1} changes/s, fan-out p50 {} ms p99 {} ms (after the buyer's answer p50 {} ms p99 {} ms), missed {}, region sockets {:?}, {:?} B/viewer\n\
             polling ?since: {} polls/s sent, {} answered, {} failed, {} served by the region, staleness p99 {} ms\n\
             naive polling:  {} polls/s, {} B/s, staleness p99 {} ms",
            self.viewers_connected,
            self.viewers,
            self.changes_per_s,
            self.fanout_p50_ms,
            self.fanout_p99_ms,
            self.fanout_after_answer_p50_ms,
            self.fanout_after_answer_p99_ms,
            self.missed_updates,
            self.region_sockets,
            self.region_rss_bytes_per_viewer,
            self.polling.client_requests_per_s,
            self.polling.answered_per_s,
            self.polling.failed,
            self.polling.region_requests_per_s,
            self.polling.staleness_p99_ms,
            self.naive_polling.client_requests_per_s,
            self.naive_polling.bytes_per_s,
            self.naive_polling.staleness_p99_ms,
        )
    }
}

/// Prints a benchmark's report on stdout (one JSON line with `--json`,
/// indented otherwise) and its summary on stderr, and returns the exit
/// code: failure when the run broke an invariant it checks.
pub fn emit(
    report: &impl Serialize,
    json: bool,
    summary: &str,
    invariants_ok: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    eprintln!("{summary}");
    if !invariants_ok {
        eprintln!("loadgen: INVARIANT VIOLATED (see the report)");
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
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
