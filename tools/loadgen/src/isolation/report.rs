//! `loadgen isolation`'s report: the figures per city and per window,
//! computed from the samples and the run's marks.

use super::targets::TargetsAudit;
use super::{Audit, Kind, Marks, Outcome, SaleEvent};
use crate::openloop::{self, micros_histogram};
use crate::report::{ms, r2};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything the report is computed from.
pub(super) struct Measured {
    pub(super) marks: Marks,
    pub(super) events: Vec<SaleEvent>,
    pub(super) nyc_run: openloop::Run<Outcome>,
    pub(super) sentinel_redis_s: Option<f64>,
    pub(super) audit: Audit,
    pub(super) killed: usize,
    pub(super) load_avg: Option<f64>,
}

/// Requests and latency of one city (or one window of it).
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Requests completed.
    pub requests: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Holds granted (201).
    pub holds: u64,
    /// 409s (a seat taken: the buyer's next pick).
    pub conflicts: u64,
    /// Connection errors and 5xx.
    pub failed: u64,
    /// Completed requests per second.
    pub requests_per_s: f64,
    /// Holds granted per second.
    pub holds_per_s: f64,
    /// p50 latency, ms (nyc: from the scheduled send time).
    pub p50_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Max latency, ms.
    pub max_ms: f64,
}

impl Figures {
    /// Over `(latency µs, outcome)` pairs of a window `secs` long.
    fn of<'a>(items: impl Iterator<Item = (u64, &'a Outcome)>, secs: f64) -> Self {
        let mut h = micros_histogram();
        let mut f = Figures {
            requests: 0,
            ok: 0,
            holds: 0,
            conflicts: 0,
            failed: 0,
            requests_per_s: 0.0,
            holds_per_s: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
        };
        for (us, o) in items {
            h.saturating_record(us);
            f.requests += 1;
            f.ok += u64::from(o.ok());
            f.holds += u64::from(o.kind == Kind::Hold && o.status == Some(201));
            f.conflicts += u64::from(o.conflict());
            f.failed += u64::from(o.failed());
        }
        let secs = secs.max(1e-3);
        f.requests_per_s = r2(f.requests as f64 / secs);
        f.holds_per_s = r2(f.holds as f64 / secs);
        f.p50_ms = ms(h.value_at_quantile(0.5));
        f.p99_ms = ms(h.value_at_quantile(0.99));
        f.max_ms = ms(h.max());
        f
    }
}

/// A city's figures over the run.
#[derive(Debug, Clone, Serialize)]
pub struct CityReport {
    /// Its replicas' URLs (the client's list, as the edge's directory).
    pub replicas: Vec<String>,
    /// Its Redis: a fixed server, Sentinel, or the deployment's own.
    pub redis: &'static str,
    /// What it did.
    pub load: &'static str,
    /// Over its whole load.
    #[serde(flatten)]
    pub figures: Figures,
    /// Answers other than 2xx, by status and code.
    pub answers: BTreeMap<String, u64>,
}

/// `nyc`'s figures window by window.
#[derive(Debug, Clone, Serialize)]
pub struct NycWindows {
    /// Before mum's sale.
    pub alone: Figures,
    /// mum's sale, before any fault.
    pub mum_sale: Figures,
    /// From mum's replica kill to its Redis master's kill.
    pub mum_replica_failover: Figures,
    /// From mum's Redis master's kill to the end of nyc's schedule.
    pub mum_sentinel_failover: Figures,
}

/// `mum`'s figures window by window.
#[derive(Debug, Clone, Serialize)]
pub struct MumWindows {
    /// The sale, before any fault.
    pub sale: Figures,
    /// From the replica kill to the Redis master's kill.
    pub replica_failover: Figures,
    /// From the Redis master's kill to the end of the sale.
    pub sentinel_failover: Figures,
}

/// The goals of the issue, as this run met them.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationGoals {
    /// isolation_ratio ≤ 1.2.
    pub isolation_ratio_le_1_2: bool,
    /// replica_failover_s ≤ 10.
    pub replica_failover_le_10s: bool,
    /// sentinel_failover_s ≤ 10.
    pub sentinel_failover_le_10s: bool,
    /// double_booked = 0.
    pub no_double_booking: bool,
}

/// `loadgen isolation`'s report (one JSON line with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct IsolationReport {
    /// Always "isolation".
    pub bench: &'static str,
    /// nyc's p99 before mum's sale, ms (from the scheduled send time).
    pub nyc_p99_ms_alone: f64,
    /// nyc's p99 from the start of mum's sale to the end of nyc's
    /// schedule, both failovers included, ms.
    pub nyc_p99_ms_during_mum_sale: f64,
    /// nyc_p99_ms_during_mum_sale / nyc_p99_ms_alone.
    pub isolation_ratio: f64,
    /// The same ratio over mum's sale before its first fault only.
    pub isolation_ratio_sale_only: f64,
    /// p99 of how late the load generator sent nyc's requests, ms (large:
    /// the client, not nyc, was slow).
    pub nyc_send_lag_p99_ms: f64,
    /// From the replica's SIGKILL to the first hold granted to a buyer
    /// whose client tried the dead replica first, s.
    pub replica_failover_s: Option<f64>,
    /// From the Redis master's SIGKILL to the first hold mum committed
    /// through Redis on the promoted master (from its database), s: the
    /// time until the shard takes holds through Redis again.
    pub sentinel_failover_s: Option<f64>,
    /// From the Redis master's SIGKILL to the first hold granted for a
    /// request sent after it (whatever the path: Postgres alone while
    /// Redis is away), s: the time until the shard takes holds at all.
    pub sentinel_holds_resumed_s: Option<f64>,
    /// From the master's SIGKILL until the sentinels named the new one, s.
    pub sentinel_promoted_s: f64,
    /// Seats in two live holds (or held by a hold not their owner) over
    /// both databases (must be 0).
    pub double_booked: i64,
    /// Holds owning some but not all of their seats (must be 0).
    pub partial_holds: i64,
    /// mum's Redis (the promoted master) against its Postgres after the
    /// run: seats missing or extra (informational: the switch back
    /// re-asserts them).
    pub mum_redis_disagreements: usize,
    /// mum requests that ended within either failover window with no
    /// answer or a 5xx (after the client's own failover).
    pub failed_requests_during_failover: u64,
    /// Of which in the replica window.
    pub failed_requests_replica_window: u64,
    /// Of which in the Sentinel window.
    pub failed_requests_sentinel_window: u64,
    /// mum requests answered by another replica after a try that got no
    /// answer (the client's failover at work).
    pub requests_failed_over: u64,
    /// Per city: replicas, load, requests, ok, p50/p99.
    pub cities: BTreeMap<&'static str, CityReport>,
    /// nyc window by window.
    pub nyc_windows: NycWindows,
    /// mum's sale window by window (hold and release latency, closed loop).
    pub mum_windows: MumWindows,
    /// The timeline, s from the start of nyc's schedule.
    pub timeline_s: BTreeMap<&'static str, f64>,
    /// Region-core worker threads each.
    pub server_threads: usize,
    /// Load generator threads.
    pub client_threads: usize,
    /// The machine's 1-minute load average at the end.
    pub load_avg_1m: Option<f64>,
    /// Goals.
    pub goals: IsolationGoals,
}

impl IsolationReport {
    pub(super) fn summary(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |x| format!("{x}"));
        format!(
            "isolation: nyc p99 {} ms alone, {} ms during mum's sale (ratio {}; sale before faults only {})\n\
             mum: {} holds/s in the sale; replica failover {} s, sentinel: promoted after {} s, holds again after {} s, through Redis after {} s\n\
             failed requests during the failovers {} ({} answered by another replica); double-booked {}, partial holds {}",
            self.nyc_p99_ms_alone,
            self.nyc_p99_ms_during_mum_sale,
            self.isolation_ratio,
            self.isolation_ratio_sale_only,
            self.mum_windows.sale.holds_per_s,
            opt(self.replica_failover_s),
            self.sentinel_promoted_s,
            opt(self.sentinel_holds_resumed_s),
            opt(self.sentinel_failover_s),
            self.failed_requests_during_failover,
            self.requests_failed_over,
            self.double_booked,
            self.partial_holds,
        )
    }
}

fn answers<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        if let Some(e) = &o.error {
            *m.entry(e.clone()).or_default() += 1;
        }
    }
    m
}

/// nyc's samples scheduled in `[from, to)`, as (latency µs, outcome).
fn sent_between(
    run: &openloop::Run<Outcome>,
    from: Duration,
    to: Duration,
) -> impl Iterator<Item = (u64, &Outcome)> {
    run.samples
        .iter()
        .filter(move |s| {
            let at = s.done_at.saturating_sub(s.latency);
            at >= from && at < to
        })
        .map(|s| (s.latency.as_micros() as u64, &s.outcome))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        r2(a / b)
    } else {
        0.0
    }
}

// About 120 lines: every figure of the report from the samples and marks.
pub(super) fn build_report(
    args: &super::IsolationArgs,
    mum: &super::Shard,
    nyc: &super::Shard,
    m: Measured,
) -> IsolationReport {
    let k = m.marks;
    let secs = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64();
    let nyc_items = |from, to| sent_between(&m.nyc_run, from, to);
    let nyc_windows = NycWindows {
        alone: Figures::of(
            nyc_items(Duration::ZERO, k.sale_start),
            secs(Duration::ZERO, k.sale_start),
        ),
        mum_sale: Figures::of(
            nyc_items(k.sale_start, k.replica_kill),
            secs(k.sale_start, k.replica_kill),
        ),
        mum_replica_failover: Figures::of(
            nyc_items(k.replica_kill, k.master_kill),
            secs(k.replica_kill, k.master_kill),
        ),
        mum_sentinel_failover: Figures::of(
            nyc_items(k.master_kill, k.nyc_end),
            secs(k.master_kill, k.nyc_end),
        ),
    };
    let during = Figures::of(
        nyc_items(k.sale_start, k.nyc_end),
        secs(k.sale_start, k.nyc_end),
    );
    let mum_items = |from: Duration, to: Duration| {
        m.events
            .iter()
            .filter(move |e| e.sent >= from && e.sent < to)
            .map(|e| ((e.done - e.sent).as_micros() as u64, &e.outcome))
    };
    let mum_windows = MumWindows {
        sale: Figures::of(
            mum_items(k.sale_start, k.replica_kill),
            secs(k.sale_start, k.replica_kill),
        ),
        replica_failover: Figures::of(
            mum_items(k.replica_kill, k.master_kill),
            secs(k.replica_kill, k.master_kill),
        ),
        sentinel_failover: Figures::of(
            mum_items(k.master_kill, k.sale_end),
            secs(k.master_kill, k.sale_end),
        ),
    };
    let granted_after = |at: Duration, home: Option<usize>| {
        m.events
            .iter()
            .filter(|e| e.sent >= at && home.is_none_or(|h| e.home == h))
            .filter(|e| e.outcome.kind == Kind::Hold && e.outcome.status == Some(201))
            .map(|e| e.done)
            .min()
            .map(|d| r2(secs(at, d)))
    };
    let replica_failover_s = granted_after(k.replica_kill, Some(m.killed));
    let sentinel_holds_resumed_s = granted_after(k.master_kill, None);
    // By completion: a request in flight on the replica when it died
    // fails after the kill, and counts in its window.
    let failed_in = |from: Duration, to: Duration| {
        m.events
            .iter()
            .filter(|e| e.done >= from && e.done < to && e.outcome.failed())
            .count() as u64
    };
    let failed_replica = failed_in(k.replica_kill, k.master_kill);
    let failed_sentinel = failed_in(k.master_kill, k.sale_end);
    let nyc_all = m.nyc_run.samples.iter().map(|s| &s.outcome);
    let mut cities = BTreeMap::new();
    cities.insert(
        "nyc",
        CityReport {
            replicas: nyc.urls.clone(),
            redis: "redis-server",
            load: "open model at --nyc-rate: seat-map reads and holds of 1-2 seats",
            figures: Figures::of(
                nyc_items(Duration::ZERO, k.nyc_end),
                secs(Duration::ZERO, k.nyc_end),
            ),
            answers: answers(nyc_all),
        },
    );
    cities.insert(
        "mum",
        CityReport {
            replicas: mum.urls.clone(),
            redis: "sentinel (master, replica, 3 sentinels)",
            load: "closed-loop buyers at capacity: holds of 1-4 seats of one show, releases",
            figures: Figures::of(
                mum_items(k.sale_start, k.sale_end),
                secs(k.sale_start, k.sale_end),
            ),
            answers: answers(m.events.iter().map(|e| &e.outcome)),
        },
    );
    let timeline_s = [
        ("mum_sale_start", k.sale_start),
        ("mum_replica_killed", k.replica_kill),
        ("mum_master_killed", k.master_kill),
        ("mum_master_promoted", k.promoted),
        ("nyc_end", k.nyc_end),
        ("mum_sale_end", k.sale_end),
    ]
    .into_iter()
    .map(|(n, d)| (n, r2(d.as_secs_f64())))
    .collect();
    let isolation_ratio = ratio(during.p99_ms, nyc_windows.alone.p99_ms);
    IsolationReport {
        bench: "isolation",
        nyc_p99_ms_alone: nyc_windows.alone.p99_ms,
        nyc_p99_ms_during_mum_sale: during.p99_ms,
        isolation_ratio,
        isolation_ratio_sale_only: ratio(nyc_windows.mum_sale.p99_ms, nyc_windows.alone.p99_ms),
        nyc_send_lag_p99_ms: ms(m.nyc_run.send_lag_us.value_at_quantile(0.99)),
        replica_failover_s,
        sentinel_failover_s: m.sentinel_redis_s,
        sentinel_holds_resumed_s,
        sentinel_promoted_s: r2(secs(k.master_kill, k.promoted)),
        double_booked: m.audit.double_booked,
        partial_holds: m.audit.partial_holds,
        mum_redis_disagreements: m.audit.mum_redis_disagreements,
        failed_requests_during_failover: failed_replica + failed_sentinel,
        failed_requests_replica_window: failed_replica,
        failed_requests_sentinel_window: failed_sentinel,
        requests_failed_over: m
            .events
            .iter()
            .filter(|e| e.outcome.failed_tries > 0 && e.outcome.status.is_some())
            .count() as u64,
        cities,
        nyc_windows,
        mum_windows,
        timeline_s,
        server_threads: args.server_threads,
        client_threads: args.client_threads,
        load_avg_1m: m.load_avg,
        goals: IsolationGoals {
            isolation_ratio_le_1_2: isolation_ratio <= 1.2,
            replica_failover_le_10s: replica_failover_s.is_some_and(|s| s <= 10.0),
            sentinel_failover_le_10s: m.sentinel_redis_s.is_some_and(|s| s <= 10.0),
            no_double_booking: m.audit.double_booked == 0,
        },
    }
}

/// What the targets mode measured.
pub(super) struct TargetsMeasured {
    pub(super) sale_start: Duration,
    pub(super) sale_end: Duration,
    pub(super) events: Vec<SaleEvent>,
    pub(super) nyc_run: openloop::Run<Outcome>,
    pub(super) audit: TargetsAudit,
    pub(super) load_avg: Option<f64>,
}

/// `loadgen isolation --target …`'s report: per-city figures against a
/// running deployment (no fault injected).
#[derive(Debug, Clone, Serialize)]
pub struct TargetsReport {
    /// Always "isolation".
    pub bench: &'static str,
    /// Always "targets".
    pub mode: &'static str,
    /// nyc's p99 before mum's sale, ms (from the scheduled send time).
    pub nyc_p99_ms_alone: f64,
    /// nyc's p99 during mum's sale, ms.
    pub nyc_p99_ms_during_mum_sale: f64,
    /// nyc_p99_ms_during_mum_sale / nyc_p99_ms_alone.
    pub isolation_ratio: f64,
    /// p99 of how late the load generator sent nyc's requests, ms.
    pub nyc_send_lag_p99_ms: f64,
    /// Requests of either city with no answer or a 5xx.
    pub failed_requests: u64,
    /// Seats in two live holds over the audited databases (None: no
    /// `--audit-database` given).
    pub double_booked: Option<i64>,
    /// Holds owning some but not all of their seats (audited cities).
    pub partial_holds: Option<i64>,
    /// The cities whose databases were audited.
    pub audited: Vec<String>,
    /// Per city: replicas, load, requests, ok, p50/p99.
    pub cities: BTreeMap<&'static str, CityReport>,
    /// nyc alone, and during mum's sale.
    pub nyc_windows: BTreeMap<&'static str, Figures>,
    /// The timeline, s from the start of nyc's schedule.
    pub timeline_s: BTreeMap<&'static str, f64>,
    /// The machine's 1-minute load average at the end (the load
    /// generator's machine).
    pub load_avg_1m: Option<f64>,
}

impl TargetsReport {
    pub(super) fn summary(&self) -> String {
        let audit = match self.double_booked {
            Some(d) => format!("double-booked {d} (audited: {})", self.audited.join(", ")),
            None => "not audited (no --audit-database)".to_owned(),
        };
        let mum_holds = self
            .cities
            .get("mum")
            .map_or(0.0, |c| c.figures.holds_per_s);
        format!(
            "isolation against the targets: nyc p99 {} ms alone, {} ms during mum's sale (ratio {}); \
             mum {} holds/s; failed requests {}; {audit}",
            self.nyc_p99_ms_alone,
            self.nyc_p99_ms_during_mum_sale,
            self.isolation_ratio,
            mum_holds,
            self.failed_requests,
        )
    }
}

/// The targets mode's figures from its samples.
pub(super) fn build_targets_report(
    args: &super::IsolationArgs,
    mum: &[String],
    nyc: &[String],
    m: TargetsMeasured,
) -> TargetsReport {
    let secs = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64();
    let nyc_end = Duration::from_secs(args.alone_secs + args.sale_secs);
    let nyc_items = |from, to| sent_between(&m.nyc_run, from, to);
    let alone = Figures::of(
        nyc_items(Duration::ZERO, m.sale_start),
        secs(Duration::ZERO, m.sale_start),
    );
    let during = Figures::of(
        nyc_items(m.sale_start, nyc_end),
        secs(m.sale_start, nyc_end),
    );
    let mum_figures = Figures::of(
        m.events
            .iter()
            .map(|e| ((e.done - e.sent).as_micros() as u64, &e.outcome)),
        secs(m.sale_start, m.sale_end),
    );
    let nyc_figures = Figures::of(nyc_items(Duration::ZERO, nyc_end), nyc_end.as_secs_f64());
    let failed_requests = mum_figures.failed + nyc_figures.failed;
    let mut cities = BTreeMap::new();
    cities.insert(
        "nyc",
        CityReport {
            replicas: nyc.to_vec(),
            redis: "the deployment's",
            load: "open model at --nyc-rate: seat-map reads and holds of 1-2 seats",
            figures: nyc_figures,
            answers: answers(m.nyc_run.samples.iter().map(|s| &s.outcome)),
        },
    );
    cities.insert(
        "mum",
        CityReport {
            replicas: mum.to_vec(),
            redis: "the deployment's",
            load: "closed-loop buyers at capacity: holds of 1-4 seats of one show, releases",
            figures: mum_figures,
            answers: answers(m.events.iter().map(|e| &e.outcome)),
        },
    );
    let audited = !m.audit.cities.is_empty();
    TargetsReport {
        bench: "isolation",
        mode: "targets",
        nyc_p99_ms_alone: alone.p99_ms,
        nyc_p99_ms_during_mum_sale: during.p99_ms,
        isolation_ratio: ratio(during.p99_ms, alone.p99_ms),
        nyc_send_lag_p99_ms: ms(m.nyc_run.send_lag_us.value_at_quantile(0.99)),
        failed_requests,
        double_booked: audited.then_some(m.audit.double_booked),
        partial_holds: audited.then_some(m.audit.partial_holds),
        audited: m.audit.cities,
        cities,
        nyc_windows: [("alone", alone), ("mum_sale", during)]
            .into_iter()
            .collect(),
        timeline_s: [
            ("mum_sale_start", m.sale_start),
            ("nyc_end", nyc_end),
            ("mum_sale_end", m.sale_end),
        ]
        .into_iter()
        .map(|(n, d)| (n, r2(d.as_secs_f64())))
        .collect(),
        load_avg_1m: m.load_avg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(kind: Kind, status: Option<u16>) -> Outcome {
        Outcome {
            kind,
            status,
            error: None,
            failed_tries: 0,
        }
    }

    #[test]
    fn figures_count_holds_conflicts_and_failures() {
        let o = [
            outcome(Kind::Hold, Some(201)),
            outcome(Kind::Hold, Some(409)),
            outcome(Kind::Release, Some(200)),
            outcome(Kind::Hold, Some(503)),
            outcome(Kind::Read, None),
        ];
        let f = Figures::of(o.iter().map(|o| (1000, o)), 2.0);
        assert_eq!(f.requests, 5);
        assert_eq!(f.ok, 2);
        assert_eq!(f.holds, 1);
        assert_eq!(f.conflicts, 1);
        assert_eq!(f.failed, 2, "a 5xx and no answer");
        assert_eq!(f.requests_per_s, 2.5);
        assert_eq!(f.p99_ms, 1.0);
    }
}
