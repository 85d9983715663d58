//! `loadgen holds`: the seat-hold benchmark.
//!
//! One invocation, strictly one thing at a time (each would steal CPU from
//! the others on a small machine):
//! 1. a fresh database (`loadgen_<random>`), and unless `--target` is given
//!    the release region core binary spawned against it;
//! 2. the Redis and Postgres baselines (`baselines`);
//! 3. a warm-up, then either the fixed `--rate` or a ramp that finds the
//!    highest rate the deployment sustains within the p99 SLO;
//! 4. the measured run at that rate: open model, holds of 1-4 adjacent
//!    seats in a random row of a random show, latency from the scheduled
//!    send time (see `openloop`);
//! 5. the double-booking audit in Postgres, then cleanup (the run's Redis
//!    keys, the database).
//!
//! Every phase gets shows of its own, sized so that at most `--max-fill`
//! of their seats get held: the run measures holds, not a sold-out show
//! answering 409s.

use crate::baselines::{self, PgBaseline, PgbenchArgs, RedisBaseline, RedisSpec};
use crate::checks;
use crate::openloop::{self, micros_histogram, Schedule};
use crate::report::{ms, r2, Goals, HoldsReport, RampStep};
use crate::seed::BenchCatalog;
use crate::server::{RegionCoreConfig, Service, WorldArgs};
use anyhow::Context;
use clap::Args;
use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use shared::api::{Availability, CreateHold};
use shared::token::Role;
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use testkit::api::{failure_from_body, Api, Minter};
use testkit::db::FreshDatabase;
use testkit::invariants::{self, Shows};
use testkit::seed::row_label;
use uuid::Uuid;

/// Options of `loadgen holds`.
#[derive(Debug, Clone, Args)]
pub struct HoldsArgs {
    /// Print exactly one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Also print each phase's per-second latency timeline to stderr.
    #[arg(long)]
    pub timeline: bool,

    /// Drive this deployment instead of spawning a region core.
    #[arg(long)]
    pub target: Option<String>,

    /// Key that operator and user tokens are signed with.
    #[command(flatten)]
    pub signing: service_kit::SigningKey,

    /// Postgres and Redis of the run.
    #[command(flatten)]
    pub world: WorldArgs,

    /// With --target: the target's database, for the double-booking audit
    /// (read-only). Without it the audit is skipped (client view only).
    #[arg(long, env = "LOADGEN_CHECK_DATABASE_URL")]
    pub check_database_url: Option<String>,

    /// Scheduled hold attempts per second. Without it, a ramp finds the
    /// highest rate kept up with within --slo-p99-ms and the run uses that.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Length of the measured run, seconds.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,

    /// Seats per show (rows of 100).
    #[arg(long, default_value_t = 20_000)]
    pub seats_per_show: usize,

    /// Fewest shows per phase (more are created to respect --max-fill).
    #[arg(long, default_value_t = 4)]
    pub shows: usize,

    /// Most shows per phase.
    #[arg(long, default_value_t = 64)]
    pub max_shows: usize,

    /// Largest share of a phase's seats its holds may take.
    #[arg(long, default_value_t = 0.1)]
    pub max_fill: f64,

    /// Cap on requests in flight (waiting for a slot counts as latency).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,

    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    /// Worker threads of the spawned region core's runtime (TOKIO_WORKER_THREADS).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,

    /// p99 a ramp step must stay under to count as within the SLO, ms.
    #[arg(long, default_value_t = 25.0)]
    pub slo_p99_ms: f64,

    /// First rate of the ramp.
    #[arg(long, default_value_t = 250.0)]
    pub ramp_start: f64,

    /// Rate multiplier between ramp steps.
    #[arg(long, default_value_t = 2.0)]
    pub ramp_factor: f64,

    /// Length of each ramp step, seconds.
    #[arg(long, default_value_t = 3)]
    pub ramp_step_secs: u64,

    /// Most ramp steps (bisection steps come on top).
    #[arg(long, default_value_t = 10)]
    pub ramp_max_steps: usize,

    /// Skip the Redis and Postgres baselines.
    #[arg(long)]
    pub skip_baselines: bool,

    /// EVALSHA calls of the Redis baseline.
    #[arg(long, default_value_t = 120_000)]
    pub redis_requests: u64,

    /// Connections of the Redis baseline.
    #[arg(long, default_value_t = 50)]
    pub redis_clients: u32,

    /// Seat keys per lock call in the Redis baseline.
    #[arg(long, default_value_t = 3)]
    pub redis_keys: u32,

    /// The pgbench baseline.
    #[command(flatten)]
    pub pgbench: PgbenchArgs,

    /// Keep the fresh database after the run (for inspection).
    #[arg(long)]
    pub keep_database: bool,
}

/// Seats a hold asks for: uniform in 1..=MAX_GROUP (mean 2.5).
const MAX_GROUP: u16 = 4;
const MEAN_GROUP: f64 = 2.5;
/// Distinct users the holds are spread over.
const USERS: usize = 1000;

/// Entry point of `loadgen holds`.
pub async fn run(args: HoldsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.duration_secs >= 1,
        "--duration-secs must be at least 1"
    );
    anyhow::ensure!(
        args.seats_per_show >= 4,
        "--seats-per-show must be at least 4"
    );
    anyhow::ensure!(
        args.max_in_flight >= 1,
        "--max-in-flight must be at least 1"
    );
    anyhow::ensure!(
        args.max_fill > 0.0 && args.max_fill <= 1.0,
        "--max-fill must be in (0, 1]"
    );
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0, "--rate must be positive");
    }
    // The spawned core and pgbench need a database of their own; a run
    // against --target without baselines needs none.
    let needs_db = args.target.is_none() || !args.skip_baselines;
    // Declared first, dropped last: the run's database goes before its server.
    let (admin_url, _own_postgres) = match needs_db {
        true => args.world.postgres()?,
        false => (String::new(), None),
    };
    let db = if needs_db {
        let db = FreshDatabase::create(&admin_url, "loadgen")
            .await
            .context("creating the run's database (LOADGEN_ADMIN_DATABASE_URL)")?;
        eprintln!("loadgen: fresh database {}", db.name());
        Some(db)
    } else {
        None
    };
    let mut created = Vec::new();
    let result = with_database(&args, db.as_ref(), &mut created).await;
    if args.target.is_none() {
        // The database goes away; so must Redis state that points into it.
        match checks::delete_show_keys(&args.world.redis_url, &created).await {
            Ok(n) => eprintln!(
                "loadgen: deleted {n} redis keys of {} bench shows",
                created.len()
            ),
            Err(e) => eprintln!("loadgen: warning: redis cleanup failed: {e:#}"),
        }
    }
    match db {
        Some(db) if args.keep_database => eprintln!("loadgen: kept database {}", db.name()),
        Some(db) => {
            if let Err(e) = db.drop_now().await {
                eprintln!("loadgen: warning: could not drop the fresh database: {e:#}");
            }
        }
        None => {}
    }
    let report = result?;
    // The run is an invariant check too: a double-booked seat or a hold
    // acknowledged but not durable fails it.
    let ok = report.goals.no_double_booking && report.holds_lost.unwrap_or(0) == 0;
    crate::report::emit(&report, args.json, &report.summary(), ok)
}

/// Everything that needs the fresh database; `created` collects the shows
/// made, for cleanup even when this fails.
async fn with_database(
    args: &HoldsArgs,
    db: Option<&FreshDatabase>,
    created: &mut Vec<Uuid>,
) -> anyhow::Result<HoldsReport> {
    let db_url = db.map(|d| d.url.clone());
    let (server, base) = match (&args.target, &db_url) {
        (Some(t), _) => (None, t.clone()),
        (None, None) => anyhow::bail!("a self-contained run needs its fresh database"),
        (None, Some(db_url)) => {
            let config = RegionCoreConfig::new(db_url, &args.world.redis_url, &args.signing);
            let s = Service::region_core(config, args.server_threads).await?;
            eprintln!(
                "loadgen: region core (release binary) at {} (log {})",
                s.url(),
                s.log_file().display()
            );
            let url = s.url().to_owned();
            (Some(s), url)
        }
    };
    let result = bench(args, &base, db_url.as_deref(), created).await;
    if let Some(s) = server {
        s.stop().await;
    }
    result
}

// About 90 lines: the run's steps in order (baselines, seed, ramp or
// fixed rate, audit), each a call.
/// The part of the run that talks to the API.
async fn bench(
    args: &HoldsArgs,
    base: &str,
    db_url: Option<&str>,
    created: &mut Vec<Uuid>,
) -> anyhow::Result<HoldsReport> {
    let api = Api::new(base)?;
    api.get::<serde_json::Value>("/readyz", None)
        .await
        .with_context(|| format!("{base} is not ready"))?;

    let (redis_base, pg_base) = match db_url {
        Some(url) if !args.skip_baselines => {
            let (r, p) = run_baselines(args, url).await?;
            (Some(r), Some(p))
        }
        _ => (None, None),
    };

    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;
    let per_row = args.seats_per_show.min(100) as u16;
    let rows = args.seats_per_show.div_ceil(usize::from(per_row));
    eprintln!("loadgen: seeding a {rows}x{per_row} screen");
    let catalog = BenchCatalog::create(&api, &op, rows, per_row, &crate::seed::short_tag()).await?;
    let tokens = (0..USERS)
        .map(|i| {
            let bearer = minter.bearer(&format!("loadgen-user-{i}"), Role::User)?;
            Ok(HeaderValue::from_str(&bearer)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .tcp_nodelay(true)
        .timeout(grace(args))
        .build()
        .context("building the HTTP client")?;
    // Only when the run owns the core's database may it VACUUM it.
    let vacuum_url = db_url.filter(|_| args.target.is_none()).map(str::to_owned);
    let mut driver = Driver {
        args,
        api: &api,
        op,
        catalog,
        http,
        tokens: Arc::new(tokens),
        vacuum_url,
        created,
        acknowledged: 0,
        client_double: 0,
    };

    eprintln!("loadgen: warm-up (2s at 500/s)");
    driver.phase(500.0, Duration::from_secs(2)).await?;

    let mut ramp = Vec::new();
    let (rate, kept_up_rate) = match args.rate {
        Some(r) => (r, None),
        None => {
            let found = ramp_rate(&mut driver, &mut ramp).await?;
            (found.slo_rate, found.kept_up_rate)
        }
    };
    eprintln!(
        "loadgen: measured run: {rate:.0} holds/s scheduled for {}s",
        args.duration_secs
    );
    let main = driver
        .phase(rate, Duration::from_secs(args.duration_secs))
        .await?;
    eprintln!("loadgen: {}", main.line());

    let audit_url = match &args.target {
        None => db_url.map(str::to_owned),
        Some(_) => args.check_database_url.clone(),
    };
    let audit = match &audit_url {
        Some(url) => {
            let pool = invariants::connect(url).await?;
            let shows = Shows::Only(driver.created);
            let audit = async {
                let report = invariants::check_postgres(&pool, shows).await?;
                let counts = invariants::count_holds(&pool, shows).await?;
                anyhow::Ok((report, counts))
            }
            .await;
            pool.close().await;
            Some(audit?)
        }
        None => None,
    };
    let findings = Findings {
        rate,
        ramp,
        kept_up_rate,
        audit,
        redis: redis_base,
        pg: pg_base,
    };
    Ok(build_report(args, &driver, &main, findings))
}

fn grace(args: &HoldsArgs) -> Duration {
    Duration::from_secs(10).max(Duration::from_secs(args.duration_secs))
}

async fn run_baselines(
    args: &HoldsArgs,
    db_url: &str,
) -> anyhow::Result<(RedisBaseline, PgBaseline)> {
    eprintln!(
        "loadgen: baseline: redis-benchmark EVALSHA seat lock, {} keys/call, -c {} -n {}",
        args.redis_keys, args.redis_clients, args.redis_requests
    );
    let redis = baselines::redis_lock(
        &args.world.redis_url,
        RedisSpec {
            requests: args.redis_requests,
            clients: args.redis_clients,
            keys: args.redis_keys,
        },
    )
    .await
    .context("redis baseline")?;
    eprintln!(
        "loadgen:   {:.0} lock calls/s ({} bench keys deleted)",
        redis.per_s, redis.keys_deleted
    );
    let pg = args.pgbench.run(db_url).await?;
    Ok((redis, pg))
}

/// What the ramp found.
struct RampResult {
    /// Highest rate kept up with and within the p99 SLO.
    slo_rate: f64,
    /// Highest rate kept up with at all (capacity), whatever the latency.
    kept_up_rate: Option<f64>,
}

/// Ramps the rate up by `--ramp-factor` until a step no longer keeps up
/// with its schedule (so the ramp also shows the capacity), then bisects
/// twice between the highest rate within the p99 SLO and the lowest one
/// above it. Steps down if even `--ramp-start` misses the SLO.
async fn ramp_rate(
    driver: &mut Driver<'_>,
    ramp: &mut Vec<RampStep>,
) -> anyhow::Result<RampResult> {
    let args = driver.args;
    let slo = args.slo_p99_ms;
    let step = Duration::from_secs(args.ramp_step_secs.max(1));
    let mut kept_up_rate: Option<f64> = None;
    let mut rate = args.ramp_start;
    for _ in 0..args.ramp_max_steps {
        let p = ramp_phase(driver, rate, step).await?;
        ramp.push(p.ramp_step(slo));
        if !p.kept_up() {
            break;
        }
        kept_up_rate = Some(rate);
        rate *= args.ramp_factor;
    }
    rate = args.ramp_start;
    while !ramp.iter().any(|s| s.within_slo) && rate > 50.0 {
        rate /= 2.0;
        let p = ramp_phase(driver, rate, step).await?;
        ramp.push(p.ramp_step(slo));
    }
    // Latency is noisy on a shared machine, so the bracket comes from all
    // steps: the best rate within the SLO, and the lowest above it that
    // was not.
    let Some(mut lo) = ramp
        .iter()
        .filter(|s| s.within_slo)
        .map(|s| s.rate)
        .reduce(f64::max)
    else {
        anyhow::bail!("no rate down to {rate:.0}/s met the p99 SLO of {slo} ms");
    };
    let hi = ramp
        .iter()
        .filter(|s| !s.within_slo && s.rate > lo)
        .map(|s| s.rate)
        .reduce(f64::min);
    if let Some(mut hi) = hi {
        for _ in 0..2 {
            if hi / lo < 1.1 {
                break;
            }
            let mid = ((lo + hi) / 2.0).round();
            let p = ramp_phase(driver, mid, step).await?;
            ramp.push(p.ramp_step(slo));
            if p.within_slo(slo) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    Ok(RampResult {
        slo_rate: lo,
        kept_up_rate,
    })
}

async fn ramp_phase(driver: &mut Driver<'_>, rate: f64, step: Duration) -> anyhow::Result<Phase> {
    let p = driver.phase(rate, step).await?;
    eprintln!("loadgen: ramp {}", p.line());
    Ok(p)
}

/// What one request came back with.
#[derive(Debug)]
enum Outcome {
    /// 201: the group is held.
    Held(Group),
    /// 409 seats_unavailable.
    Conflict,
    /// Anything else; `shed` for 503.
    Error { kind: String, shed: bool },
}

/// Seats `first..first + n` of row `row` of the phase's show `show`.
#[derive(Debug, Clone, Copy)]
struct Group {
    show: u32,
    row: u32,
    first: u16,
    n: u16,
}

/// Runs phases against one deployment, keeping what spans phases.
struct Driver<'a> {
    args: &'a HoldsArgs,
    api: &'a Api,
    op: String,
    catalog: BenchCatalog,
    http: reqwest::Client,
    tokens: Arc<Vec<HeaderValue>>,
    vacuum_url: Option<String>,
    created: &'a mut Vec<Uuid>,
    acknowledged: u64,
    client_double: u64,
}

impl Driver<'_> {
    /// Shows needed so that `rate` for `duration` fills at most --max-fill.
    fn shows_for(&self, rate: f64, duration: Duration) -> usize {
        let seats = rate * duration.as_secs_f64() * MEAN_GROUP;
        let per_show = self.catalog.seats_per_show() as f64 * self.args.max_fill;
        ((seats / per_show).ceil() as usize)
            .clamp(self.args.shows.max(1), self.args.max_shows.max(1))
    }

    // About 80 lines: one open-model phase (schedule, send, collect),
    // a single loop over the scheduler.
    /// One open-model run at `rate` for `duration` on fresh shows.
    async fn phase(&mut self, rate: f64, duration: Duration) -> anyhow::Result<Phase> {
        let n = self.shows_for(rate, duration);
        let shows = self.catalog.new_shows(self.api, &self.op, n).await?;
        self.created.extend(shows.iter().map(|s| s.0));
        if let Some(url) = &self.vacuum_url {
            checks::vacuum(url).await?;
        }
        // Load each show's layout into the core's cache and build its seat
        // map before timing starts, as browsing buyers would have.
        for s in &shows {
            self.api
                .get::<Availability>(&format!("/v1/shows/{s}/availability"), None)
                .await?;
        }
        eprintln!(
            "loadgen:   {n} fresh shows ready; running {rate:.0}/s for {:.0}s",
            duration.as_secs_f64()
        );
        // Parsed once: URL parsing is a visible share of client CPU.
        let urls: Arc<Vec<reqwest::Url>> = Arc::new(
            shows
                .iter()
                .map(|s| reqwest::Url::parse(&format!("{}/v1/shows/{s}/holds", self.api.base())))
                .collect::<Result<_, _>>()
                .context("building hold URLs")?,
        );
        let rows: Arc<Vec<String>> = Arc::new((0..self.catalog.rows).map(row_label).collect());
        let per_row = self.catalog.per_row;
        let schedule = Schedule {
            rate,
            duration,
            max_in_flight: self.args.max_in_flight,
            grace: grace(self.args),
        };
        let http = self.http.clone();
        let tokens = self.tokens.clone();
        let run = openloop::run(schedule, move |_| {
            let mut rng = rand::thread_rng();
            let show = rng.gen_range(0..urls.len());
            let row = rng.gen_range(0..rows.len());
            let n = rng.gen_range(1..=MAX_GROUP).min(per_row);
            let first = rng.gen_range(1..=per_row - n + 1);
            let seats = (first..first + n)
                .map(|k| format!("{}{k}", rows[row]))
                .collect();
            let body = serde_json::to_vec(&CreateHold { seats }).unwrap_or_default();
            let token = tokens[rng.gen_range(0..tokens.len())].clone();
            let req = http
                .post(urls[show].clone())
                .header(AUTHORIZATION, token)
                .header(CONTENT_TYPE, "application/json")
                .body(body);
            let group = Group {
                show: show as u32,
                row: row as u32,
                first,
                n,
            };
            async move { classify(req.send().await, group).await }
        })
        .await;
        if self.args.timeline {
            for s in openloop::timeline(&run.samples, Duration::from_secs(1)) {
                eprintln!(
                    "loadgen:     t={:>3}s  {:>6} req  p99 {:>8.2} ms  max {:>8.2} ms",
                    s.start.as_secs(),
                    s.count,
                    s.p99_us as f64 / 1000.0,
                    s.max_us as f64 / 1000.0
                );
            }
        }
        let phase = Phase::summarize(
            rate,
            duration,
            n * self.catalog.seats_per_show(),
            run,
            &schedule,
        );
        self.acknowledged += phase.held;
        self.client_double += phase.client_double;
        Ok(phase)
    }
}

/// Turns the answer to a hold of `group` into an outcome, reading the
/// body so the connection can be reused.
async fn classify(resp: reqwest::Result<reqwest::Response>, group: Group) -> Outcome {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            return Outcome::Error {
                kind: kind.into(),
                shed: false,
            };
        }
    };
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if status == StatusCode::CREATED {
        return Outcome::Held(group);
    }
    let f = failure_from_body(status, &body);
    if status == StatusCode::CONFLICT && f.code == "seats_unavailable" {
        return Outcome::Conflict;
    }
    Outcome::Error {
        kind: format!("{} {}", status.as_u16(), f.code),
        shed: status == StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The numbers of one phase.
struct Phase {
    rate: f64,
    duration: Duration,
    seats: usize,
    scheduled: u64,
    attempts: u64,
    held: u64,
    conflicts: u64,
    errors: u64,
    shed: u64,
    dropped: u64,
    error_kinds: BTreeMap<String, u64>,
    attempts_per_s: f64,
    holds_per_s: f64,
    all: hdrhistogram::Histogram<u64>,
    held_lat: hdrhistogram::Histogram<u64>,
    send_lag_p99_us: u64,
    client_double: u64,
}

impl Phase {
    fn summarize(
        rate: f64,
        duration: Duration,
        seats: usize,
        run: openloop::Run<Outcome>,
        schedule: &Schedule,
    ) -> Self {
        let elapsed = run.elapsed(schedule).as_secs_f64();
        let mut all = micros_histogram();
        let mut held_lat = micros_histogram();
        let mut p = Phase {
            rate,
            duration,
            seats,
            scheduled: run.scheduled,
            attempts: run.samples.len() as u64,
            held: 0,
            conflicts: 0,
            errors: 0,
            shed: 0,
            dropped: run.dropped + run.unfinished,
            error_kinds: BTreeMap::new(),
            attempts_per_s: 0.0,
            holds_per_s: 0.0,
            all: micros_histogram(),
            held_lat: micros_histogram(),
            send_lag_p99_us: run.send_lag_us.value_at_quantile(0.99),
            client_double: 0,
        };
        let mut seen: HashSet<(u32, u32, u16)> = HashSet::new();
        for s in &run.samples {
            let us = s.latency.as_micros() as u64;
            all.saturating_record(us);
            match &s.outcome {
                Outcome::Held(g) => {
                    p.held += 1;
                    held_lat.saturating_record(us);
                    for k in g.first..g.first + g.n {
                        if !seen.insert((g.show, g.row, k)) {
                            p.client_double += 1;
                        }
                    }
                }
                Outcome::Conflict => p.conflicts += 1,
                Outcome::Error { kind, shed } => {
                    p.errors += 1;
                    if *shed {
                        p.shed += 1;
                    }
                    *p.error_kinds.entry(kind.clone()).or_default() += 1;
                }
            }
        }
        p.attempts_per_s = p.attempts as f64 / elapsed;
        p.holds_per_s = p.held as f64 / elapsed;
        p.all = all;
        p.held_lat = held_lat;
        p
    }

    /// Kept up with the schedule: nothing dropped, at least 95 % of the
    /// scheduled rate completed (a growing backlog stretches the run and
    /// fails this), and at most 1 % errors.
    fn kept_up(&self) -> bool {
        self.dropped == 0
            && self.attempts_per_s >= 0.95 * self.rate
            && (self.errors as f64) <= 0.01 * (self.attempts.max(1) as f64)
    }

    /// Kept up, with p99 within the SLO.
    fn within_slo(&self, slo_p99_ms: f64) -> bool {
        self.kept_up() && self.all.value_at_quantile(0.99) as f64 / 1000.0 <= slo_p99_ms
    }

    fn ramp_step(&self, slo_p99_ms: f64) -> RampStep {
        RampStep {
            rate: r2(self.rate),
            attempts_per_s: r2(self.attempts_per_s),
            holds_per_s: r2(self.holds_per_s),
            p50_ms: ms(self.all.value_at_quantile(0.5)),
            p99_ms: ms(self.all.value_at_quantile(0.99)),
            errors: self.errors + self.dropped,
            kept_up: self.kept_up(),
            within_slo: self.within_slo(slo_p99_ms),
        }
    }

    fn line(&self) -> String {
        format!(
            "{:.0}/s for {:.0}s: {:.0} attempts/s, {:.0} holds/s, {} conflicts, {} errors, {} dropped, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, send lag p99 {:.2} ms",
            self.rate,
            self.duration.as_secs_f64(),
            self.attempts_per_s,
            self.holds_per_s,
            self.conflicts,
            self.errors,
            self.dropped,
            self.all.value_at_quantile(0.5) as f64 / 1000.0,
            self.all.value_at_quantile(0.99) as f64 / 1000.0,
            self.all.max() as f64 / 1000.0,
            self.send_lag_p99_us as f64 / 1000.0,
        )
    }
}

/// What the report is built from, besides the measured phase.
struct Findings {
    rate: f64,
    ramp: Vec<RampStep>,
    kept_up_rate: Option<f64>,
    audit: Option<(invariants::Report, invariants::HoldCounts)>,
    redis: Option<RedisBaseline>,
    pg: Option<PgBaseline>,
}

fn build_report(args: &HoldsArgs, driver: &Driver<'_>, main: &Phase, f: Findings) -> HoldsReport {
    let Findings {
        rate,
        ramp,
        kept_up_rate,
        audit,
        redis,
        pg,
    } = f;
    let ratio = |base: Option<f64>| base.filter(|b| *b > 0.0).map(|b| r2(main.holds_per_s / b));
    let redis_per_s = redis.map(|r| r.per_s);
    let pg_tps = pg.map(|p| p.tps);
    let double_booked = audit.as_ref().map(|(r, _)| r.double_held());
    let capacity =
        kept_up_rate.and_then(|r| ramp.iter().find(|s| s.kept_up && s.rate == r2(r)).copied());
    let p99_ms = ms(main.all.value_at_quantile(0.99));
    HoldsReport {
        model: "open",
        latency_from: "scheduled_send_time",
        rate_mode: if args.rate.is_some() {
            "fixed"
        } else {
            "auto_ramp"
        },
        target: args.target.clone().unwrap_or_else(|| "spawned".into()),
        rate: r2(rate),
        duration_secs: main.duration.as_secs_f64(),
        shows: main.seats / driver.catalog.seats_per_show().max(1),
        seats_per_show: driver.catalog.seats_per_show(),
        seats: main.seats,
        seats_per_hold: "1-4",
        max_in_flight: args.max_in_flight,
        client_threads: args.client_threads,
        server_threads: args.target.is_none().then_some(args.server_threads),
        scheduled: main.scheduled,
        attempts: main.attempts,
        holds: main.held,
        conflicts: main.conflicts,
        errors: main.errors,
        shed: main.shed,
        dropped: main.dropped,
        attempts_per_s: r2(main.attempts_per_s),
        holds_per_s: r2(main.holds_per_s),
        p50_ms: ms(main.all.value_at_quantile(0.5)),
        p90_ms: ms(main.all.value_at_quantile(0.9)),
        p99_ms,
        p999_ms: ms(main.all.value_at_quantile(0.999)),
        max_ms: ms(main.all.max()),
        held_p50_ms: ms(main.held_lat.value_at_quantile(0.5)),
        held_p99_ms: ms(main.held_lat.value_at_quantile(0.99)),
        send_lag_p99_ms: ms(main.send_lag_p99_us),
        slo_p99_ms: args.slo_p99_ms,
        kept_up: main.kept_up(),
        within_slo: main.within_slo(args.slo_p99_ms),
        max_kept_up_rate: capacity.map(|c| c.rate),
        max_kept_up_holds_per_s: capacity.map(|c| c.holds_per_s),
        max_kept_up_p99_ms: capacity.map(|c| c.p99_ms),
        double_booked,
        double_booked_client: driver.client_double,
        holds_acknowledged: driver.acknowledged,
        holds_in_db: audit.as_ref().map(|(_, c)| c.holds),
        seats_held_in_db: audit.as_ref().map(|(_, c)| c.seats_held),
        holds_lost: audit
            .as_ref()
            .map(|(_, c)| (driver.acknowledged as i64 - c.holds).max(0)),
        baseline_redis_lock_per_s: redis_per_s.map(r2),
        baseline_redis_keys_per_call: redis.map(|_| args.redis_keys),
        baseline_pg_hold_tx_per_s: pg_tps.map(r2),
        baseline_pg_holds_per_s: pg.map(|p| r2(p.holds_per_s)),
        ratio_vs_pg: ratio(pg_tps),
        ratio_vs_redis: ratio(redis_per_s),
        goals: Goals {
            holds_ge_2x_pg: pg_tps.map(|b| main.holds_per_s >= 2.0 * b),
            holds_ge_40pct_redis: redis_per_s.map(|b| main.holds_per_s >= 0.4 * b),
            p99_lt_25ms: p99_ms < 25.0,
            no_double_booking: double_booked.unwrap_or(0) == 0 && driver.client_double == 0,
        },
        ramp,
        error_kinds: main.error_kinds.clone(),
    }
}
