//! Everything measured, into the report.

use super::analysis::Analysis;
use super::{FlashSaleArgs, SaleRun};
use crate::crowd::{Kind, Outcome, Stats};
use crate::report::{ms, r2, FlashSaleBaseline, FlashSaleReport};
use crate::server::UpstashCounters;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What the report is built from.
pub(super) struct Findings<'a> {
    pub(super) args: &'a FlashSaleArgs,
    pub(super) run: &'a SaleRun,
    pub(super) analysis: Analysis,
    pub(super) stats: &'a Stats,
    pub(super) upstash: UpstashCounters,
    pub(super) bookings: testkit::invariants::BookingAudit,
    pub(super) baseline: Option<FlashSaleBaseline>,
    pub(super) joined: usize,
    pub(super) seats: u32,
    pub(super) elapsed: Duration,
}

// Long on purpose: the report's struct literal, one line per field of
// the JSON line, in the order docs/BENCHMARKS.md explains them.
pub(super) fn build_report(f: Findings<'_>) -> FlashSaleReport {
    let Findings {
        args,
        run,
        analysis: a,
        stats,
        upstash,
        bookings,
        baseline,
        joined,
        seats,
        elapsed,
    } = f;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut seat_owners: HashMap<&str, u64> = HashMap::new();
    for r in &run.records {
        *outcomes.entry(r.outcome.name().to_owned()).or_default() += 1;
        if let Some(why) = &r.failure {
            *failures.entry(why.chars().take(120).collect()).or_default() += 1;
        }
        for s in &r.booked {
            *seat_owners.entry(s.as_str()).or_default() += 1;
        }
    }
    let double_booked_client = seat_owners.values().filter(|n| **n > 1).count() as u64;
    let double_booked = bookings.double_booked() + double_booked_client as i64;
    let holds = stats.count(|k| k == "hold 201");
    let rate_limited = stats.count(|k| k.split(' ').nth(1) == Some("429"));
    let edge_errors = stats.count(|k| {
        k.ends_with(" transport") || k.split(' ').nth(1).is_some_and(|s| s.starts_with('5'))
    });
    let decisions = stats.decisions.max(1) as f64;
    let error_pct = a.base_rate.map(|r| r2((r - args.rate) / args.rate * 100.0));
    let still_waiting = run
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::StillWaiting)
        .count() as u64;
    // The intruders ran, and their control attempts (genuinely signed
    // passes) got through: the bypass detector can see an acceptance.
    let intruders_ran = args.intruders == 0
        || (run.bypass.error.is_none()
            && run.bypass.controls > 0
            && run.bypass.controls_accepted == run.bypass.controls);
    // The configured rate is a cap over any 10 seconds, within 2 %.
    let within_cap = a.worst_10s_per_s <= args.rate * 1.02;
    let invariants_ok = within_cap
        && a.order_violations == 0
        && run.bypass.accepted == 0
        && double_booked == 0
        && a.draw_mismatches == 0
        && intruders_ran;
    let all = &stats.all;
    FlashSaleReport {
        mode: "through_edge",
        runtime: "workerd (Miniflare 4, local) + upstash-gateway + region core, one machine",
        users: args.users,
        joined,
        admitted: a.admitted,
        admitted_client: a.admitted_client,
        still_waiting,
        dropped: a.gone,
        rate_per_sec: args.rate,
        admission_rate_per_s: a.base_rate.map(r2),
        admission_rate_samples: a.samples,
        admission_rate_error_pct: error_pct,
        admissions_per_s_total: a.total_rate.map(r2),
        admissions_peak_per_s: a.peak_per_s,
        admissions_worst_10s_per_s: r2(a.worst_10s_per_s),
        admissions_within_cap: within_cap,
        places_given_back: a.bonus,
        admission_window_s: a.window_s.map(r2),
        order_violations: a.order_violations,
        draw_mismatches: a.draw_mismatches,
        joined_after_opening: a.joined_after_opening,
        seed_commitment_verified: a.seed_commitment_verified,
        bypass_attempts: run.bypass.attempts,
        bypass_accepted: run.bypass.accepted,
        bypass_answers: run.bypass.answers.clone(),
        bypass_controls: run.bypass.controls,
        bypass_controls_accepted: run.bypass.controls_accepted,
        bypass_error: run.bypass.error.clone(),
        seats,
        holds,
        bookings: bookings.bookings,
        sold: bookings.seats_booked,
        double_booked,
        double_booked_client,
        outcomes,
        failures,
        edge_requests: stats.decisions,
        edge_p50_ms: ms(all.value_at_quantile(0.5)),
        edge_p90_ms: ms(all.value_at_quantile(0.9)),
        edge_p99_ms: ms(all.value_at_quantile(0.99)),
        edge_max_ms: ms(all.max()),
        join_p50_ms: stats.quantile(Kind::Join, 0.5),
        join_p99_ms: stats.quantile(Kind::Join, 0.99),
        status_p50_ms: stats.quantile(Kind::Status, 0.5),
        status_p99_ms: stats.quantile(Kind::Status, 0.99),
        hold_p50_ms: stats.quantile(Kind::Hold, 0.5),
        hold_p99_ms: stats.quantile(Kind::Hold, 0.99),
        checkout_p50_ms: stats.quantile(Kind::Checkout, 0.5),
        checkout_p99_ms: stats.quantile(Kind::Checkout, 0.99),
        rate_limited,
        edge_errors,
        edge_answers: stats.answers.clone(),
        upstash_requests: upstash.requests,
        upstash_commands: upstash.commands,
        redis_calls_per_decision: r2(upstash.requests as f64 / decisions),
        redis_commands_per_decision: r2(upstash.commands as f64 / decisions),
        wasm_gzip_bytes: 0,
        concurrency: args.concurrency,
        sale_s: r2(run.elapsed.as_secs_f64()),
        elapsed_s: r2(elapsed.as_secs_f64()),
        opens_at_ms: run.opens_at_ms,
        baseline,
        invariants_ok,
    }
}
