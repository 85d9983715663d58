//! `loadgen checkout`: the purchase benchmark. Simulated users buy
//! tickets end to end while the payment gateway misbehaves, and the run
//! then proves that no money was lost and nothing was sold or charged
//! twice.
//!
//! One invocation, one thing at a time:
//! 1. a fresh database, the sandbox payment gateway binary spawned (its
//!    random faults at `--fault-rate`: declines, 5xx, hangs and charges
//!    whose answer is lost) and the region core binary charging through
//!    it (webhooks pointed back at the core);
//! 2. the baselines: pgbench's hold transaction (as `holds` runs it), then
//!    the same users holding and releasing seats with no payment;
//! 3. the load: every user loops hold → checkout (the client behaviour of
//!    `purchase`: same key after 503, new key once after 402) → for a
//!    share, replay of the paid request and cancellation; closed loop, for
//!    `--duration-secs`;
//! 4. settling: `POST /v1/operator/reconcile` until it finds nothing, then
//!    wait until every refund has landed;
//! 5. the audit: the gateway's ledger against Postgres (`money`), booked
//!    seats in Postgres (`checks`) and as the users saw them; cleanup.
//!
//! Exits non-zero if money was lost, anything was charged or sold twice,
//! or another invariant of the report failed.

use crate::baselines::{PgBaseline, PgbenchArgs};
use crate::checks;
use crate::openloop::micros_histogram;
use crate::profile;
use crate::purchase::{self, error_kind, Paid, Patience};
use crate::report::{ms, r2, CheckoutReport};
use crate::seed::BenchCatalog;
use crate::server::{RegionCoreConfig, Service, WorldArgs};
use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use reqwest::StatusCode;
use shared::api::{Availability, Booking, CancellationQuote, CreateHold, Hold, ReconcileReport};
use shared::token::Role;
use shared::ShowId;
use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::api::{failure, Api, Minter};
use testkit::db::FreshDatabase;
use testkit::gateway::Gateway;
use testkit::invariants::{self, BookingAudit, Shows};
use testkit::money::{CoreRecords, MoneyAudit};
use testkit::seed::row_label;
use uuid::Uuid;

/// Options of `loadgen checkout`.
#[derive(Debug, Clone, Args)]
pub struct CheckoutArgs {
    /// Print exactly one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Key that operator and user tokens are signed with.
    #[command(flatten)]
    pub signing: service_kit::SigningKey,

    /// Postgres and Redis of the run.
    #[command(flatten)]
    pub world: WorldArgs,

    /// Simulated users, each buying in a loop (closed model). Checkouts
    /// no longer hold pooled connections (their writes are group-committed,
    /// ADR 0013), so any number works; 16 keeps runs comparable with the
    /// earlier figures in docs/BENCHMARKS.md.
    #[arg(long, default_value_t = 16)]
    pub users: usize,

    /// How long users keep starting purchases, seconds.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,

    /// Probability that the sandbox turns a `pm_card_ok` payment into a
    /// fault (decline, 5xx, timeout or lost success, equally likely).
    #[arg(long, default_value_t = 0.1)]
    pub fault_rate: f64,

    /// Seed of the sandbox's faults, for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Share of bookings cancelled right after purchase.
    #[arg(long, default_value_t = 0.2)]
    pub cancel_share: f64,

    /// Share of bookings whose paid request is sent again with the same
    /// key (must replay the same booking, not charge again).
    #[arg(long, default_value_t = 0.05)]
    pub replay_share: f64,

    /// How long a sandbox timeout fault hangs, ms.
    #[arg(long, default_value_t = 1500)]
    pub gateway_hang_ms: u64,

    /// The region core's gateway timeout (REGION_GATEWAY_TIMEOUT_MS), ms;
    /// below the hang, so a hung charge is an unknown outcome (503).
    #[arg(long, default_value_t = 1000)]
    pub gateway_timeout_ms: u64,

    /// Make the gateway refuse the first N refund requests (503), so the
    /// refund worker's retries are exercised too.
    #[arg(long, default_value_t = 0)]
    pub refund_faults: u32,

    /// Checkout requests per Idempotency-Key while the outcome is unknown.
    #[arg(long, default_value_t = 6)]
    pub requests_per_key: u32,

    /// Shows the purchases are spread over (fresh for the run).
    #[arg(long, default_value_t = 8)]
    pub shows: usize,

    /// Seats per show (rows of 100).
    #[arg(long, default_value_t = 5000)]
    pub seats_per_show: usize,

    /// Length of the holds-only baseline, seconds.
    #[arg(long, default_value_t = 5)]
    pub baseline_secs: u64,

    /// Skip both baselines.
    #[arg(long)]
    pub skip_baselines: bool,

    /// Unmeasured purchases before the measured load, seconds. A fresh
    /// database's tables are empty, and Postgres plans (and caches, per
    /// prepared statement) sequential scans for them that stay after the
    /// tables grow; a shard in service has history. The warm-up gives it
    /// some, and the tables are analysed before measuring. 0: none.
    #[arg(long, default_value_t = 5)]
    pub warmup_secs: u64,

    /// The pgbench baseline.
    #[command(flatten)]
    pub pgbench: PgbenchArgs,

    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    /// Worker threads of the spawned region core's runtime (TOKIO_WORKER_THREADS).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,

    /// Longest wait after the load for refunds to land, seconds.
    #[arg(long, default_value_t = 60)]
    pub settle_timeout_secs: u64,

    /// Keep the fresh database after the run (for inspection).
    #[arg(long)]
    pub keep_database: bool,
}

/// Seats a hold asks for: uniform in 1..=MAX_GROUP, adjacent in a row.
const MAX_GROUP: u16 = 4;
/// Seat groups a user tries before giving up on a purchase.
const HOLD_TRIES: usize = 5;
/// Reconciliation leaves younger payments alone (REGION_RECONCILE_GRACE_SECS).
const RECONCILE_GRACE_SECS: u64 = 1;
const RECONCILE_GRACE: Duration = Duration::from_secs(RECONCILE_GRACE_SECS);

/// Entry point of `loadgen checkout`.
pub async fn run(args: CheckoutArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.users >= 1, "--users must be at least 1");
    anyhow::ensure!(
        args.duration_secs >= 1,
        "--duration-secs must be at least 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fault_rate),
        "--fault-rate must be within 0..=1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.cancel_share) && (0.0..=1.0).contains(&args.replay_share),
        "--cancel-share and --replay-share must be within 0..=1"
    );
    anyhow::ensure!(
        args.seats_per_show >= usize::from(MAX_GROUP) && args.shows >= 1,
        "--shows must be at least 1 and --seats-per-show at least {MAX_GROUP}"
    );
    anyhow::ensure!(
        args.requests_per_key >= 1,
        "--requests-per-key must be at least 1"
    );
    // Declared first, dropped last: the run's database goes before its server.
    let (admin_url, _own_postgres) = args.world.postgres()?;
    let db = FreshDatabase::create(&admin_url, "loadgen")
        .await
        .context("creating the run's database (LOADGEN_ADMIN_DATABASE_URL)")?;
    eprintln!("loadgen: fresh database {}", db.name());
    let tag = crate::seed::short_tag();
    // The core's outbox streams go under a prefix of the run's own, so a
    // shared Redis keeps no trace of the run afterwards.
    let streams = format!("loadgen_{tag}:events");
    let mut created = Vec::new();
    let result = with_world(&args, &db, &tag, &streams, &mut created).await;
    match checks::delete_show_keys(&args.world.redis_url, &created).await {
        Ok(n) => eprintln!(
            "loadgen: deleted {n} redis keys of {} bench shows",
            created.len()
        ),
        Err(e) => eprintln!("loadgen: warning: redis cleanup failed: {e:#}"),
    }
    if let Err(e) =
        checks::delete_keys(&args.world.redis_url, &format!("{streams}:*"), |_| true).await
    {
        eprintln!("loadgen: warning: could not delete the run's event streams: {e:#}");
    }
    if args.keep_database {
        eprintln!("loadgen: kept database {}", db.name());
    } else if let Err(e) = db.drop_now().await {
        eprintln!("loadgen: warning: could not drop the fresh database: {e:#}");
    }
    let report = result?;
    crate::report::emit(&report, args.json, &report.summary(), report.invariants_ok)
}

/// Starts the gateway and the core, runs the bench, stops them.
async fn with_world(
    args: &CheckoutArgs,
    db: &FreshDatabase,
    tag: &str,
    streams: &str,
    created: &mut Vec<Uuid>,
) -> anyhow::Result<CheckoutReport> {
    let gw =
        Service::sandbox_gateway(args.fault_rate, Some(args.gateway_hang_ms), args.seed).await?;
    eprintln!(
        "loadgen: sandbox gateway (release binary) at {} (fault rate {})",
        gw.url(),
        args.fault_rate
    );
    let config = RegionCoreConfig::new(&db.url, &args.world.redis_url, &args.signing)
        .set("REGION_GATEWAY_TIMEOUT_MS", args.gateway_timeout_ms)
        // A lock must outlive the gateway's timeout (the core refuses to
        // start otherwise); 30 s is the core's default.
        .set(
            "REGION_IDEMPOTENCY_LOCK_SECS",
            (args.gateway_timeout_ms / 1000 + 1).max(30),
        )
        .set("REGION_RECONCILE_GRACE_SECS", RECONCILE_GRACE_SECS)
        .set("REGION_REFUND_POLL_MS", 100)
        .set("REGION_REFUND_BACKOFF_BASE_MS", 100)
        .set("REGION_REFUND_BACKOFF_MAX_SECS", 1)
        .set("REGION_EVENTS_STREAM_PREFIX", streams);
    let (core, gw) = Service::region_core_over(config, args.server_threads, gw).await?;
    let gateway = Gateway::new(gw.url(), sandbox_gateway::DEFAULT_API_KEY)?;
    let result = async {
        gateway
            .set_webhook(&format!("{}/v1/webhooks/payments", core.url()))
            .await?;
        bench(args, core.url(), &gateway, &db.url, tag, created).await
    }
    .await;
    // The core first: its refund worker may be talking to the gateway.
    core.stop().await;
    gw.stop().await;
    result
}

// About 100 lines: the run's steps in order (seed, baselines, load,
// reconcile, settle, audit), each a call; splitting it would only
// thread the same dozen values through more signatures.
/// The part of the run that talks to the services.
async fn bench(
    args: &CheckoutArgs,
    base: &str,
    gateway: &Gateway,
    db_url: &str,
    tag: &str,
    created: &mut Vec<Uuid>,
) -> anyhow::Result<CheckoutReport> {
    let api = Api::new(base)?;
    api.get::<serde_json::Value>("/readyz", None)
        .await
        .with_context(|| format!("{base} is not ready"))?;
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;
    let per_row = args.seats_per_show.min(100) as u16;
    let rows = args.seats_per_show.div_ceil(usize::from(per_row));
    eprintln!("loadgen: seeding a {rows}x{per_row} screen");
    let mut catalog = BenchCatalog::create(&api, &op, rows, per_row, tag).await?;
    let buyers: Arc<Vec<String>> = Arc::new(
        (0..args.users)
            .map(|i| minter.bearer(&format!("loadgen-buyer-{i}"), Role::User))
            .collect::<anyhow::Result<_>>()?,
    );

    let (pg, holds_only) = if args.skip_baselines {
        (None, None)
    } else {
        let pg = args.pgbench.run(db_url).await?;
        let shows = fresh_shows(&api, &op, &mut catalog, args.shows, created, db_url).await?;
        eprintln!(
            "loadgen: baseline: {} users hold and release seats for {}s (no payment)",
            args.users, args.baseline_secs
        );
        let plan = Plan::new(&catalog, shows, args);
        let b = run_users(
            &api,
            &buyers,
            &plan,
            Duration::from_secs(args.baseline_secs),
            Mode::HoldsOnly,
        )
        .await;
        eprintln!(
            "loadgen:   {:.0} holds/s, hold p99 {:.2} ms",
            b.holds as f64 / b.elapsed.as_secs_f64(),
            b.hold_lat.value_at_quantile(0.99) as f64 / 1000.0
        );
        (Some(pg), Some(b))
    };

    if args.warmup_secs > 0 {
        let shows = fresh_shows(&api, &op, &mut catalog, args.shows, created, db_url).await?;
        eprintln!(
            "loadgen: warm-up: {} users buy for {}s (not measured)",
            args.users, args.warmup_secs
        );
        let plan = Plan::new(&catalog, shows, args);
        let mut warm = run_users(
            &api,
            &buyers,
            &plan,
            Duration::from_secs(args.warmup_secs),
            Mode::Checkout,
        )
        .await;
        // What the warm-up left open is settled with the run's own.
        let _ = reconcile(&api, &op, RECONCILE_GRACE, |e| warm.error(e)).await;
    }
    if args.refund_faults > 0 {
        gateway.fail_next_refunds(args.refund_faults).await?;
    }
    // (fresh_shows also vacuums and analyses the tables the load writes.)
    let shows = fresh_shows(&api, &op, &mut catalog, args.shows, created, db_url).await?;
    let checkout_shows: Vec<Uuid> = shows.iter().map(|s| s.0).collect();
    eprintln!(
        "loadgen: checkout: {} users buy for {}s (fault rate {}, {:.0}% cancel, {:.0}% replay)",
        args.users,
        args.duration_secs,
        args.fault_rate,
        args.cancel_share * 100.0,
        args.replay_share * 100.0
    );
    let plan = Plan::new(&catalog, shows, args);
    let stats_db = invariants::connect(db_url).await?;
    // Statement counts, where the server loads pg_stat_statements.
    let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&stats_db)
        .await;
    let metrics_url = format!("{base}/metrics");
    let counters_before =
        profile::Counters::read(&stats_db, &args.world.redis_url, &metrics_url).await?;
    let load_before = load_avg_1m().await;
    let mut load = run_users(
        &api,
        &buyers,
        &plan,
        Duration::from_secs(args.duration_secs),
        Mode::Checkout,
    )
    .await;
    let load_avg = [load_before, load_avg_1m().await];
    // Idle backends report their last second of statistics.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let counters_after =
        profile::Counters::read(&stats_db, &args.world.redis_url, &metrics_url).await?;
    stats_db.close().await;
    let per_booking = Some(counters_before.per_booking(&counters_after, load.booked));
    eprintln!(
        "loadgen:   {} purchases, {} booked in {:.1}s",
        load.purchases,
        load.booked,
        load.elapsed.as_secs_f64()
    );

    let settled_at = Instant::now();
    let reconcile = reconcile(&api, &op, RECONCILE_GRACE, |e| load.error(e)).await;
    wait_for_refunds(db_url, Duration::from_secs(args.settle_timeout_secs)).await?;
    let settle = settled_at.elapsed();
    eprintln!(
        "loadgen: settled in {:.1}s (reconcile: {reconcile:?})",
        settle.as_secs_f64()
    );

    let ledger = gateway.ledger().await?;
    let core = CoreRecords::load_url(db_url).await?;
    let money = MoneyAudit::of(&ledger, &core);
    let seats = {
        let pool = invariants::connect(db_url).await?;
        let audit = invariants::audit_bookings(&pool, Shows::Only(&checkout_shows)).await;
        pool.close().await;
        audit?
    };
    Ok(build_report(
        args,
        Findings {
            load,
            holds_only,
            pg,
            reconcile,
            settle,
            money,
            seats,
            load_avg,
            per_booking,
        },
    ))
}

/// `n` new shows, recorded for cleanup, their tables vacuumed (see
/// [`checks::vacuum`]), their layouts and seat maps loaded in the core
/// before timing starts (as browsing buyers would).
async fn fresh_shows(
    api: &Api,
    op: &str,
    catalog: &mut BenchCatalog,
    n: usize,
    created: &mut Vec<Uuid>,
    db_url: &str,
) -> anyhow::Result<Vec<ShowId>> {
    let shows = catalog.new_shows(api, op, n).await?;
    created.extend(shows.iter().map(|s| s.0));
    checks::vacuum(db_url).await?;
    for s in &shows {
        api.get::<Availability>(&format!("/v1/shows/{s}/availability"), None)
            .await?;
    }
    Ok(shows)
}

/// Runs reconciliation passes until one finds nothing left to fix (at
/// most five), after the grace period has passed for the last payment.
/// A failed pass is reported and retried: whatever stays unsettled shows
/// up in the audit, which must run regardless.
pub(crate) async fn reconcile(
    api: &Api,
    op: &str,
    grace: Duration,
    mut on_error: impl FnMut(String),
) -> ReconcileReport {
    tokio::time::sleep(grace + Duration::from_millis(250)).await;
    let mut total = ReconcileReport::default();
    for _ in 0..5 {
        let r: ReconcileReport = match api.post_empty("/v1/operator/reconcile", op).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("loadgen: warning: POST /v1/operator/reconcile failed: {e:#}");
                on_error(format!("reconcile: {}", error_kind(&e)));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let quiet = r == ReconcileReport::default();
        total.completed_bookings += r.completed_bookings;
        total.refunded += r.refunded;
        total.marked_failed += r.marked_failed;
        total.abandoned += r.abandoned;
        total.unresolved += r.unresolved;
        if quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    total
}

/// Waits until no refund is PENDING in Postgres (or `timeout` passes:
/// the audit then reports what is still outstanding).
pub(crate) async fn wait_for_refunds(db_url: &str, timeout: Duration) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db_url).await?;
    let until = Instant::now() + timeout;
    loop {
        let (pending,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM refunds WHERE status = 'PENDING'")
                .fetch_one(&mut conn)
                .await?;
        if pending == 0 {
            break;
        }
        if Instant::now() >= until {
            eprintln!("loadgen: warning: {pending} refunds still pending after {timeout:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = conn.close().await;
    Ok(())
}

/// The 1-minute load average (Linux), if readable.
/// The machine's 1-minute load average (`/proc/loadavg`).
pub(crate) async fn load_avg_1m() -> Option<f64> {
    let text = tokio::fs::read_to_string("/proc/loadavg").await.ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// What the users do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Hold, then release: the baseline.
    HoldsOnly,
    /// Hold, pay, and for a share replay and cancel.
    Checkout,
}

/// Where and how users buy.
struct Plan {
    shows: Vec<ShowId>,
    rows: Vec<String>,
    per_row: u16,
    cancel_share: f64,
    replay_share: f64,
    patience: Patience,
}

impl Plan {
    fn new(catalog: &BenchCatalog, shows: Vec<ShowId>, args: &CheckoutArgs) -> Arc<Self> {
        Arc::new(Self {
            shows,
            rows: (0..catalog.rows).map(row_label).collect(),
            per_row: catalog.per_row,
            cancel_share: args.cancel_share,
            replay_share: args.replay_share,
            patience: Patience {
                requests_per_key: args.requests_per_key,
                ..Patience::default()
            },
        })
    }

    /// A random show and 1-4 adjacent seats in a random row of it.
    fn pick(&self) -> (ShowId, Vec<String>) {
        let mut rng = rand::thread_rng();
        let show = self.shows[rng.gen_range(0..self.shows.len())];
        let row = &self.rows[rng.gen_range(0..self.rows.len())];
        let n = rng.gen_range(1..=MAX_GROUP).min(self.per_row);
        let first = rng.gen_range(1..=self.per_row - n + 1);
        (
            show,
            (first..first + n).map(|k| format!("{row}{k}")).collect(),
        )
    }
}

/// What users saw, merged over all of them.
struct Tally {
    elapsed: Duration,
    purchases: u64,
    holds: u64,
    booked: u64,
    declined: u64,
    confirmation_failed: u64,
    gave_up: u64,
    refused: u64,
    retried: u64,
    seat_conflicts: u64,
    no_seats: u64,
    replays: u64,
    replay_mismatches: u64,
    cancels: u64,
    cancel_quote_mismatches: u64,
    checkout_requests: u64,
    answers: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    server_errors: u64,
    /// Per purchase, first request to final answer.
    checkout_lat: Histogram<u64>,
    /// Purchases answered on their first request.
    first_try_lat: Histogram<u64>,
    /// Single checkout requests.
    request_lat: Histogram<u64>,
    hold_lat: Histogram<u64>,
    /// (show, seat) → bookings holding it that were not cancelled.
    live_seats: HashMap<(Uuid, String), u32>,
}

impl Tally {
    fn new() -> Self {
        Self {
            elapsed: Duration::ZERO,
            purchases: 0,
            holds: 0,
            booked: 0,
            declined: 0,
            confirmation_failed: 0,
            gave_up: 0,
            refused: 0,
            retried: 0,
            seat_conflicts: 0,
            no_seats: 0,
            replays: 0,
            replay_mismatches: 0,
            cancels: 0,
            cancel_quote_mismatches: 0,
            checkout_requests: 0,
            answers: BTreeMap::new(),
            errors: BTreeMap::new(),
            server_errors: 0,
            checkout_lat: micros_histogram(),
            first_try_lat: micros_histogram(),
            request_lat: micros_histogram(),
            hold_lat: micros_histogram(),
            live_seats: HashMap::new(),
        }
    }

    fn error(&mut self, kind: String) {
        if kind.starts_with("500 ") {
            self.server_errors += 1;
        }
        *self.errors.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, o: Tally) {
        self.purchases += o.purchases;
        self.holds += o.holds;
        self.booked += o.booked;
        self.declined += o.declined;
        self.confirmation_failed += o.confirmation_failed;
        self.gave_up += o.gave_up;
        self.refused += o.refused;
        self.retried += o.retried;
        self.seat_conflicts += o.seat_conflicts;
        self.no_seats += o.no_seats;
        self.replays += o.replays;
        self.replay_mismatches += o.replay_mismatches;
        self.cancels += o.cancels;
        self.cancel_quote_mismatches += o.cancel_quote_mismatches;
        self.checkout_requests += o.checkout_requests;
        self.server_errors += o.server_errors;
        for (k, v) in o.answers {
            *self.answers.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = self.checkout_lat.add(&o.checkout_lat);
        let _ = self.first_try_lat.add(&o.first_try_lat);
        let _ = self.request_lat.add(&o.request_lat);
        let _ = self.hold_lat.add(&o.hold_lat);
        for (k, v) in o.live_seats {
            *self.live_seats.entry(k).or_default() += v;
        }
    }

    /// Seats in more than one live booking, as the users saw them.
    fn double_booked(&self) -> u64 {
        self.live_seats.values().filter(|n| **n > 1).count() as u64
    }
}

/// Runs every user until `duration` has passed (a purchase under way is
/// finished), and merges what they saw.
async fn run_users(
    api: &Api,
    buyers: &Arc<Vec<String>>,
    plan: &Arc<Plan>,
    duration: Duration,
    mode: Mode,
) -> Tally {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..buyers.len())
        .map(|i| {
            let (api, buyers, plan) = (api.clone(), buyers.clone(), plan.clone());
            tokio::spawn(async move {
                let mut t = Tally::new();
                let bearer = &buyers[i];
                while Instant::now() < deadline {
                    match mode {
                        Mode::HoldsOnly => hold_and_release(&api, bearer, &plan, &mut t).await,
                        Mode::Checkout => buy(&api, bearer, &plan, &mut t, i).await,
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Tally::new();
    for task in tasks {
        match task.await {
            Ok(t) => all.merge(t),
            Err(e) => all.error(format!("user task failed: {e}")),
        }
    }
    all.elapsed = started.elapsed();
    all
}

/// Holds seats (other seats after a 409, up to [`HOLD_TRIES`] groups).
async fn take_hold(api: &Api, bearer: &str, plan: &Plan, t: &mut Tally) -> Option<Hold> {
    for _ in 0..HOLD_TRIES {
        let (show, seats) = plan.pick();
        let sent = Instant::now();
        let res = api
            .post::<_, Hold>(
                &format!("/v1/shows/{show}/holds"),
                bearer,
                &CreateHold { seats },
            )
            .await;
        t.hold_lat
            .saturating_record(sent.elapsed().as_micros() as u64);
        match res {
            Ok(h) => {
                t.holds += 1;
                return Some(h);
            }
            Err(e) => match failure(&e) {
                Some(f) if f.status == StatusCode::CONFLICT && f.code == "seats_unavailable" => {
                    t.seat_conflicts += 1;
                }
                Some(f) if f.status == StatusCode::SERVICE_UNAVAILABLE => {
                    t.error(error_kind(&e));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => t.error(format!("hold: {}", error_kind(&e))),
            },
        }
    }
    None
}

async fn release(api: &Api, bearer: &str, hold: &Hold, t: &mut Tally) {
    if let Err(e) = api
        .delete::<Hold>(&format!("/v1/holds/{}", hold.hold_id), bearer)
        .await
    {
        t.error(format!("release: {}", error_kind(&e)));
    }
}

async fn hold_and_release(api: &Api, bearer: &str, plan: &Plan, t: &mut Tally) {
    t.purchases += 1;
    match take_hold(api, bearer, plan, t).await {
        Some(h) => release(api, bearer, &h, t).await,
        None => t.no_seats += 1,
    }
}

/// One purchase: hold, pay, then maybe replay and cancel.
async fn buy(api: &Api, bearer: &str, plan: &Plan, t: &mut Tally, user: usize) {
    t.purchases += 1;
    let Some(hold) = take_hold(api, bearer, plan, t).await else {
        t.no_seats += 1;
        return;
    };
    let run = purchase::pay(
        api,
        bearer,
        hold.hold_id,
        &format!("lg{user}"),
        plan.patience,
    )
    .await;
    t.checkout_requests += run.attempts.len() as u64;
    for a in &run.attempts {
        t.request_lat
            .saturating_record(a.latency.as_micros() as u64);
        let kind = match a.status {
            Some(s) => format!("{s} {}", a.code),
            None => a.code.clone(),
        };
        if a.status == Some(500) {
            t.server_errors += 1;
        }
        *t.answers.entry(kind).or_default() += 1;
    }
    let us = run.elapsed.as_micros() as u64;
    t.checkout_lat.saturating_record(us);
    if run.attempts.len() == 1 {
        t.first_try_lat.saturating_record(us);
    } else {
        t.retried += 1;
    }
    match run.outcome {
        Paid::Booked { booking, body, key } => {
            t.booked += 1;
            for s in &booking.seats {
                *t.live_seats
                    .entry((booking.show_id.0, s.label.clone()))
                    .or_default() += 1;
            }
            // Drawn before any await: the thread's RNG must not be held
            // across one (the task may move to another worker).
            let (replay, cancel) = {
                let mut rng = rand::thread_rng();
                (
                    rng.gen_bool(plan.replay_share),
                    rng.gen_bool(plan.cancel_share),
                )
            };
            if replay {
                replay_checkout(api, bearer, &hold, &key, &body, t).await;
            }
            if cancel {
                cancel_booking(api, bearer, &booking, t).await;
            }
        }
        Paid::Declined => {
            t.declined += 1;
            release(api, bearer, &hold, t).await;
        }
        Paid::Refunded => t.confirmation_failed += 1,
        // The hold is left as is: reconciliation settles the payment.
        Paid::Pending => t.gave_up += 1,
        Paid::Refused { kind } => {
            t.refused += 1;
            t.error(format!("checkout refused: {kind}"));
            release(api, bearer, &hold, t).await;
        }
    }
}

/// Sends the paid request again with the same key: it must answer the
/// same bytes, marked as a replay (and charge nothing: the audit checks).
async fn replay_checkout(
    api: &Api,
    bearer: &str,
    hold: &Hold,
    key: &str,
    first: &[u8],
    t: &mut Tally,
) {
    t.replays += 1;
    match purchase::checkout_once(api, bearer, hold.hold_id, key).await {
        Ok(r) if r.status == StatusCode::CREATED && r.replayed() && r.body == first => {}
        Ok(r) => {
            t.replay_mismatches += 1;
            t.error(format!(
                "replay answered {} (replayed: {}, same body: {})",
                r.status.as_u16(),
                r.replayed(),
                r.body == first
            ));
        }
        Err(e) => t.error(format!("replay: {}", error_kind(&e))),
    }
}

/// Quote, then cancel (with a key); the refund must be what was quoted.
async fn cancel_booking(api: &Api, bearer: &str, booking: &Booking, t: &mut Tally) {
    let quote = match api
        .get::<CancellationQuote>(
            &format!("/v1/bookings/{}/cancellation-quote", booking.id),
            Some(bearer),
        )
        .await
    {
        Ok(q) => q,
        Err(e) => return t.error(format!("quote: {}", error_kind(&e))),
    };
    let key = purchase::new_key("cancel");
    let resp = api
        .send(
            testkit::api::Method::POST,
            &format!("/v1/bookings/{}/cancel", booking.id),
            Some(bearer),
            Some(&key),
            None::<&()>,
        )
        .await;
    let cancelled: Booking = match resp {
        Ok(r) if r.status == StatusCode::OK => match r.json() {
            Ok(b) => b,
            Err(e) => return t.error(format!("cancel: unreadable booking: {e}")),
        },
        Ok(r) => {
            let f = r.failure();
            return t.error(format!("cancel: {} {}", f.status.as_u16(), f.code));
        }
        Err(e) => return t.error(format!("cancel: {}", error_kind(&e))),
    };
    t.cancels += 1;
    for s in &booking.seats {
        if let Some(n) = t.live_seats.get_mut(&(booking.show_id.0, s.label.clone())) {
            *n = n.saturating_sub(1);
        }
    }
    let refunded = cancelled.refund.as_ref().map_or(0, |r| r.amount_minor);
    if refunded != quote.quote.refund_minor {
        t.cancel_quote_mismatches += 1;
    }
}

/// What the report is built from.
struct Findings {
    load: Tally,
    holds_only: Option<Tally>,
    pg: Option<PgBaseline>,
    reconcile: ReconcileReport,
    settle: Duration,
    money: MoneyAudit,
    seats: BookingAudit,
    load_avg: [Option<f64>; 2],
    per_booking: Option<crate::profile::PerBooking>,
}

// Long on purpose: the report's struct literal, one line per field of
// the JSON line, in the order docs/BENCHMARKS.md explains them.
fn build_report(args: &CheckoutArgs, f: Findings) -> CheckoutReport {
    let Findings {
        load,
        holds_only,
        pg,
        reconcile,
        settle,
        money,
        seats,
        load_avg,
        per_booking,
    } = f;
    let elapsed = load.elapsed.as_secs_f64().max(1e-9);
    let bookings_per_s = load.booked as f64 / elapsed;
    let holds_only_per_s = holds_only
        .as_ref()
        .map(|h| h.holds as f64 / h.elapsed.as_secs_f64().max(1e-9));
    let pg_tps = pg.map(|p| p.tps);
    let ratio = |base: Option<f64>| base.filter(|b| *b > 0.0).map(|b| r2(bookings_per_s / b));
    let q = |h: &Histogram<u64>, p: f64| ms(h.value_at_quantile(p));
    let double_booked_client = load.double_booked();
    let double_booked = seats.double_booked() + double_booked_client as i64;
    // Every booking a user was given must exist (reconciliation may add
    // bookings nobody saw: a buyer who gave up on a pending payment).
    let bookings_lost = (load.booked as i64 - seats.bookings).max(0);
    let invariants_ok = money.money_lost == 0
        && money.double_charged == 0
        && double_booked == 0
        && money.refunds_short == 0
        && money.over_refunded == 0
        && money.bookings_unpaid == 0
        && money.payments_unsettled == 0
        && bookings_lost == 0
        && load.replay_mismatches == 0
        && load.cancel_quote_mismatches == 0;
    CheckoutReport {
        model: "closed",
        latency: "client-observed per purchase: first checkout request to final answer, retries and Retry-After waits included",
        users: args.users,
        duration_s: args.duration_secs as f64,
        elapsed_s: r2(elapsed),
        fault_rate: args.fault_rate,
        seed: args.seed,
        cancel_share: args.cancel_share,
        replay_share: args.replay_share,
        gateway_timeout_ms: args.gateway_timeout_ms,
        gateway_hang_ms: args.gateway_hang_ms,
        shows: args.shows,
        seats_per_show: args.seats_per_show,
        purchases: load.purchases,
        bookings_client: load.booked,
        bookings_per_s: r2(bookings_per_s),
        p50_ms: q(&load.checkout_lat, 0.5),
        p90_ms: q(&load.checkout_lat, 0.9),
        p99_ms: q(&load.checkout_lat, 0.99),
        max_ms: ms(load.checkout_lat.max()),
        first_try_p50_ms: q(&load.first_try_lat, 0.5),
        first_try_p99_ms: q(&load.first_try_lat, 0.99),
        request_p50_ms: q(&load.request_lat, 0.5),
        request_p99_ms: q(&load.request_lat, 0.99),
        hold_p50_ms: q(&load.hold_lat, 0.5),
        hold_p99_ms: q(&load.hold_lat, 0.99),
        checkout_requests: load.checkout_requests,
        retried: load.retried,
        declined: load.declined,
        confirmation_failed: load.confirmation_failed,
        gave_up_pending: load.gave_up,
        refused: load.refused,
        seat_conflicts: load.seat_conflicts,
        no_seats: load.no_seats,
        checkout_answers: load.answers.clone(),
        errors: load.errors.clone(),
        server_errors: load.server_errors,
        replays: load.replays,
        replay_mismatches: load.replay_mismatches,
        cancels: load.cancels,
        cancel_quote_mismatches: load.cancel_quote_mismatches,
        reconcile,
        settle_s: r2(settle.as_secs_f64()),
        bookings: seats.bookings,
        bookings_cancelled: seats.cancelled,
        bookings_lost,
        seats_booked: seats.seats_booked,
        charges: money.charges,
        charged_minor: money.charged_minor,
        refunds: money.refunds,
        refunded_minor: money.refunded_minor,
        money_lost: money.money_lost,
        money_lost_minor: money.money_lost_minor,
        double_charged: money.double_charged,
        double_booked,
        double_booked_client,
        refunds_short: money.refunds_short,
        over_refunded: money.over_refunded,
        bookings_unpaid: money.bookings_unpaid,
        unknown_charges: money.unknown_charges,
        payments_unsettled: money.payments_unsettled,
        refunds_pending: money.refunds_pending,
        refunds_failed: money.refunds_failed,
        baseline_holds_only_per_s: holds_only_per_s.map(r2),
        baseline_holds_only_p99_ms: holds_only.as_ref().map(|h| q(&h.hold_lat, 0.99)),
        baseline_pg_hold_tx_per_s: pg_tps.map(r2),
        ratio_vs_holds_only: ratio(holds_only_per_s),
        ratio_vs_pg: ratio(pg_tps),
        per_booking,
        load_avg_1m: load_avg,
        invariants_ok,
    }
}
