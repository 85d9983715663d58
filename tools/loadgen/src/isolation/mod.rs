//! `loadgen isolation`: load across shards. Two cities, each a shard of
//! its own (its own fresh Postgres database, its own Redis, its own
//! release region cores): `nyc` serves steady open-model traffic (seat-map
//! reads and holds at a fixed rate) while `mum` runs a flash sale at
//! capacity, loses one of its replicas (SIGKILL) and then its Redis master
//! (SIGKILL; the sentinels promote the replica).
//!
//! The timeline, one `nyc` schedule throughout:
//! 1. `nyc` alone (`--alone-secs`): its p99 is the reference;
//! 2. `mum`'s sale starts (`--sale-secs` of steady sale): closed-loop
//!    buyers hold seats of one show as fast as the shard answers, each
//!    keeping at most two holds and releasing the older one first, so the
//!    show never sells out and the sale stays at capacity;
//! 3. one `mum` replica is killed (`--replica-window-secs`); its buyers'
//!    client moves to the next replica as the edge does (per-replica
//!    breaker, keyed writes and reads fail over on no answer);
//! 4. `mum`'s Redis master is killed (`--sentinel-window-secs`, longer if
//!    the fast path has not come back: up to 30 s more);
//! 5. both databases are audited (no seat in two live holds).
//!
//! Only 127.0.0.1 traffic; every process, database and Redis is the run's
//! own and goes away with it.
//!
//! `route` is the client of a city's replicas (the edge's rules), `report`
//! the figures computed from the samples.

mod report;
mod route;
mod targets;

use crate::openloop::{self, Schedule};
use crate::report::r2;
use crate::seed::BenchCatalog;
use crate::server::{RegionCoreConfig, Service};
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use report::{build_report, IsolationReport, Measured};
use reqwest::header::HeaderValue;
use reqwest::Method;
use route::{Answer, CityRoute};
use shared::api::{CreateHold, Hold};
use shared::token::Role;
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use targets::CityUrls;
use testkit::api::{failure_from_body, Api, Minter};
use testkit::db::FreshDatabase;
use testkit::invariants::{self, Shows};
use testkit::redis_server::RedisServer;
use testkit::seed::row_label;
use testkit::sentinel::{SentinelSet, SERVICE};

/// Options of `loadgen isolation`.
#[derive(Debug, Clone, Args)]
pub struct IsolationArgs {
    /// Print exactly one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Key that operator and user tokens are signed with.
    #[command(flatten)]
    pub signing: service_kit::SigningKey,

    /// Database used to create (and drop) the two shards' fresh databases.
    #[arg(
        long,
        env = "LOADGEN_ADMIN_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_database_url: String,

    /// `nyc`'s steady rate, requests per second (half seat-map reads,
    /// half holds of 1-2 seats).
    #[arg(long, default_value_t = 200.0)]
    pub nyc_rate: f64,

    /// `nyc` alone, seconds.
    #[arg(long, default_value_t = 10)]
    pub alone_secs: u64,

    /// `mum`'s sale before the first fault, seconds.
    #[arg(long, default_value_t = 10)]
    pub sale_secs: u64,

    /// From the replica's kill to the Redis master's kill, seconds.
    #[arg(long, default_value_t = 10)]
    pub replica_window_secs: u64,

    /// From the Redis master's kill to the end of `nyc`'s schedule,
    /// seconds (the sale goes on until `mum` holds through Redis again,
    /// at most 30 s more).
    #[arg(long, default_value_t = 15)]
    pub sentinel_window_secs: u64,

    /// `mum`'s buyers (closed loop, each waits for its answer).
    #[arg(long, default_value_t = 64)]
    pub buyers: usize,

    /// `mum`'s region-core replicas (one is killed).
    #[arg(long, default_value_t = 2)]
    pub mum_replicas: usize,

    /// Worker threads of each spawned region core (TOKIO_WORKER_THREADS).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,

    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,

    /// Runs the two loads against a running deployment instead of
    /// spawning one: `--target mum=URL[,URL…] --target nyc=URL[,URL…]`,
    /// each city's region-core replicas (the edge's directory entry). No
    /// fault is injected there; `nyc` alone, then `mum`'s sale for
    /// `--sale-secs`. Shows are seeded through the operator API, so
    /// `--jwt-secret` must be the deployment's.
    #[arg(long = "target", value_name = "CITY=URL[,URL…]")]
    pub targets: Vec<CityUrls>,

    /// With --target: a city's database for the audit of its holds
    /// (`--audit-database mum=postgres://…`); a city without one is not
    /// audited (the report says so).
    #[arg(long = "audit-database", value_name = "CITY=URL")]
    pub audit_databases: Vec<CityUrls>,
}

/// Seats per row and rows of every show (20,000 seats).
const PER_ROW: u16 = 100;
const ROWS: usize = 200;
/// Holds a `mum` buyer keeps before releasing its oldest.
const HOLDS_KEPT: usize = 2;
/// `nyc`'s users.
const NYC_USERS: usize = 200;
/// nyc's Postgres pool: its steady load needs few connections, and the
/// three cores share one server with whatever else runs on it. mum's
/// replicas keep the operator default (24): on the Postgres-only path
/// during the Sentinel failover every hold needs a connection.
const NYC_DB_POOL: u32 = 8;
/// Most time past the sentinel window for `mum` to hold through Redis.
const FAST_PATH_PATIENCE: Duration = Duration::from_secs(30);

/// Entry point of `loadgen isolation`.
pub async fn run(args: IsolationArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.nyc_rate > 0.0, "--nyc-rate must be positive");
    anyhow::ensure!(args.buyers >= 1, "--buyers must be at least 1");
    anyhow::ensure!(args.mum_replicas >= 2, "--mum-replicas must be at least 2");
    anyhow::ensure!(
        args.alone_secs >= 1 && args.sale_secs >= 1,
        "--alone-secs and --sale-secs must be at least 1"
    );
    if !args.targets.is_empty() {
        return targets::run(&args).await;
    }
    crate::server::ensure_binaries(&["region-core"])?;
    let mum_db = FreshDatabase::create(&args.admin_database_url, "loadgen")
        .await
        .context("creating mum's database (LOADGEN_ADMIN_DATABASE_URL)")?;
    let nyc_db = match FreshDatabase::create(&args.admin_database_url, "loadgen").await {
        Ok(db) => db,
        Err(e) => {
            let _ = mum_db.drop_now().await;
            return Err(e.context("creating nyc's database"));
        }
    };
    eprintln!(
        "loadgen: fresh databases {} (mum), {} (nyc)",
        mum_db.name(),
        nyc_db.name()
    );
    let result = with_databases(&args, &mum_db.url, &nyc_db.url).await;
    for db in [mum_db, nyc_db] {
        if let Err(e) = db.drop_now().await {
            eprintln!("loadgen: warning: could not drop a fresh database: {e:#}");
        }
    }
    let report = result?;
    let ok = report.double_booked == 0 && report.partial_holds == 0;
    crate::report::emit(&report, args.json, &report.summary(), ok)
}

/// One city's shard: its replicas (None once killed) and their URLs.
struct Shard {
    code: &'static str,
    db_url: String,
    replicas: Vec<Option<Service>>,
    urls: Vec<String>,
}

impl Shard {
    /// Starts `n` replicas one after the other (the first migrates the
    /// fresh database).
    async fn start(
        code: &'static str,
        n: usize,
        db_url: &str,
        config: impl Fn(usize) -> RegionCoreConfig,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let mut shard = Self {
            code,
            db_url: db_url.to_owned(),
            replicas: Vec::new(),
            urls: Vec::new(),
        };
        for i in 0..n {
            match Service::region_core(config(i), threads).await {
                Ok(s) => {
                    eprintln!(
                        "loadgen: {code} replica {i} (release region core) at {} (log {})",
                        s.url(),
                        s.log_file().display()
                    );
                    shard.urls.push(s.url().to_owned());
                    shard.replicas.push(Some(s));
                }
                Err(e) => {
                    shard.stop().await;
                    return Err(e.context(format!("starting {code} replica {i}")));
                }
            }
        }
        Ok(shard)
    }

    /// SIGKILL of replica `i`.
    async fn kill(&mut self, i: usize) {
        if let Some(s) = self.replicas.get_mut(i).and_then(Option::as_mut) {
            s.kill().await;
        }
        if let Some(slot) = self.replicas.get_mut(i) {
            *slot = None;
        }
    }

    /// URLs of the replicas still running.
    fn live_urls(&self) -> Vec<String> {
        self.replicas
            .iter()
            .zip(&self.urls)
            .filter(|(s, _)| s.is_some())
            .map(|(_, u)| u.clone())
            .collect()
    }

    async fn stop(&mut self) {
        for s in self.replicas.drain(..).flatten() {
            s.stop().await;
        }
    }
}

fn core_config(
    args: &IsolationArgs,
    code: &str,
    db_url: &str,
    redis_url: &str,
    replica: usize,
) -> RegionCoreConfig {
    RegionCoreConfig::new(db_url, redis_url, &args.signing)
        .set("REGION_SHARD_CODE", code)
        .set("REGION_REPLICA_ID", format!("{code}-{replica}"))
}

/// Starts both shards' Redis and region cores, runs the bench, stops
/// everything (Redis processes go when dropped).
async fn with_databases(
    args: &IsolationArgs,
    mum_db: &str,
    nyc_db: &str,
) -> anyhow::Result<IsolationReport> {
    let mut sentinels = tokio::task::spawn_blocking(SentinelSet::start)
        .await?
        .context("starting mum's Redis master, replica and three sentinels")?;
    let nyc_redis = tokio::task::spawn_blocking(RedisServer::start)
        .await?
        .context("starting nyc's redis-server")?;
    eprintln!(
        "loadgen: mum's Redis master at {} (sentinels {}), nyc's Redis at {}",
        sentinels.master_url()?,
        sentinels.sentinel_urls().join(","),
        nyc_redis.url()
    );
    let master = sentinels.master_url()?;
    let sentinel_list = sentinels.sentinel_urls().join(",");
    let mut mum = Shard::start(
        "mum",
        args.mum_replicas,
        mum_db,
        |i| {
            core_config(args, "mum", mum_db, &master, i)
                .set("REGION_REDIS_SENTINELS", &sentinel_list)
                .set("REGION_REDIS_SENTINEL_SERVICE", SERVICE)
        },
        args.server_threads,
    )
    .await?;
    let mut nyc = match Shard::start(
        "nyc",
        1,
        nyc_db,
        |i| {
            core_config(args, "nyc", nyc_db, &nyc_redis.url(), i)
                .set("REGION_DB_POOL_SIZE", NYC_DB_POOL)
        },
        args.server_threads,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            mum.stop().await;
            return Err(e);
        }
    };
    let result = bench(args, &mut mum, &nyc, &mut sentinels).await;
    mum.stop().await;
    nyc.stop().await;
    tokio::task::spawn_blocking(move || drop((sentinels, nyc_redis))).await?;
    result
}

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Hold,
    Release,
}

/// A request's outcome: status (None: no answer) and, for a failure, its
/// kind (`409 seats_unavailable`, `503 …`, `no answer`).
#[derive(Debug)]
struct Outcome {
    kind: Kind,
    status: Option<u16>,
    error: Option<String>,
    failed_tries: u32,
}

impl Outcome {
    fn of(kind: Kind, a: &Answer) -> Self {
        let error = match a.status {
            Some(s) if s < 300 => None,
            Some(s) => {
                let status = reqwest::StatusCode::from_u16(s)
                    .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
                Some(format!("{s} {}", failure_from_body(status, &a.body).code))
            }
            None => Some("no answer".into()),
        };
        Self {
            kind,
            status: a.status,
            error,
            failed_tries: a.failed_tries,
        }
    }

    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s < 300)
    }

    fn conflict(&self) -> bool {
        self.status == Some(409)
    }

    /// A connection error or a 5xx: what the failover windows count.
    fn failed(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }
}

/// A `mum` buyer's request.
struct SaleEvent {
    /// From the start of the run.
    sent: Duration,
    done: Duration,
    /// The replica the buyer's client tries first.
    home: usize,
    outcome: Outcome,
}

/// What the `nyc` requests pick from.
struct NycLoad {
    route: CityRoute,
    shows: Vec<String>,
    rows: Vec<String>,
    tokens: Vec<HeaderValue>,
}

/// Request `i` of `nyc`'s schedule: even ones read a show's seat map,
/// odd ones hold 1-2 adjacent seats.
async fn nyc_request(load: Arc<NycLoad>, i: u64) -> Outcome {
    let (show, seats, token) = {
        let mut rng = rand::thread_rng();
        let show = load.shows[rng.gen_range(0..load.shows.len())].clone();
        let row = &load.rows[rng.gen_range(0..load.rows.len())];
        let n = rng.gen_range(1..=2u16);
        let first = rng.gen_range(1..=PER_ROW - n + 1);
        let seats: Vec<String> = (first..first + n).map(|k| format!("{row}{k}")).collect();
        let token = load.tokens[rng.gen_range(0..load.tokens.len())].clone();
        (show, seats, token)
    };
    if i.is_multiple_of(2) {
        let path = format!("/v1/shows/{show}/availability");
        let a = load
            .route
            .call(Method::GET, &path, &token, None, None, None)
            .await;
        return Outcome::of(Kind::Read, &a);
    }
    let body = serde_json::to_vec(&CreateHold { seats }).unwrap_or_default();
    let key = uuid::Uuid::now_v7().to_string();
    let path = format!("/v1/shows/{show}/holds");
    let a = load
        .route
        .call(Method::POST, &path, &token, Some(body), Some(&key), None)
        .await;
    Outcome::of(Kind::Hold, &a)
}

/// What one `mum` buyer shares with the others.
struct Sale {
    route: CityRoute,
    hold_path: String,
    rows: Vec<String>,
    start: Instant,
    stop: AtomicBool,
}

/// One buyer: holds 1-4 adjacent seats at random (a keyed write, so its
/// client may fail over), keeps at most [`HOLDS_KEPT`] holds and releases
/// the oldest before the next; backs off briefly after a 5xx or no answer
/// (a client honouring Retry-After).
async fn buyer(sale: Arc<Sale>, token: HeaderValue, home: usize) -> Vec<SaleEvent> {
    let mut rng = StdRng::from_entropy();
    let mut live: VecDeque<String> = VecDeque::new();
    let mut events = Vec::new();
    while !sale.stop.load(Ordering::Relaxed) {
        let sent = sale.start.elapsed();
        let outcome = if live.len() >= HOLDS_KEPT {
            let id = live.pop_front().unwrap_or_default();
            let a = sale
                .route
                .call(
                    Method::DELETE,
                    &format!("/v1/holds/{id}"),
                    &token,
                    None,
                    None,
                    Some(home),
                )
                .await;
            Outcome::of(Kind::Release, &a)
        } else {
            let row = &sale.rows[rng.gen_range(0..sale.rows.len())];
            let n = rng.gen_range(1..=4u16);
            let first = rng.gen_range(1..=PER_ROW - n + 1);
            let seats = (first..first + n).map(|k| format!("{row}{k}")).collect();
            let body = serde_json::to_vec(&CreateHold { seats }).unwrap_or_default();
            let key = uuid::Uuid::now_v7().to_string();
            let a = sale
                .route
                .call(
                    Method::POST,
                    &sale.hold_path,
                    &token,
                    Some(body),
                    Some(&key),
                    Some(home),
                )
                .await;
            if a.status == Some(201) {
                if let Ok(h) = serde_json::from_slice::<Hold>(&a.body) {
                    live.push_back(h.hold_id.to_string());
                }
            }
            Outcome::of(Kind::Hold, &a)
        };
        let back_off = outcome.failed();
        events.push(SaleEvent {
            sent,
            done: sale.start.elapsed(),
            home,
            outcome,
        });
        if back_off {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    events
}

/// Instants of the run, from its start (the start of `nyc`'s schedule).
#[derive(Debug, Clone, Copy, Default)]
struct Marks {
    sale_start: Duration,
    replica_kill: Duration,
    master_kill: Duration,
    promoted: Duration,
    nyc_end: Duration,
    sale_end: Duration,
}

// About 150 lines: the run's timeline in order (seed, warm up, nyc alone,
// sale, two faults, audit), each step a call or a few lines.
async fn bench(
    args: &IsolationArgs,
    mum: &mut Shard,
    nyc: &Shard,
    sentinels: &mut SentinelSet,
) -> anyhow::Result<IsolationReport> {
    let total = args.alone_secs + args.sale_secs + args.replica_window_secs;
    let nyc_secs = total + args.sentinel_window_secs;
    let Prepared {
        minter,
        mum_show,
        nyc_load,
        schedule,
    } = prepare(args, &mum.urls, &nyc.urls, nyc_secs).await?;
    let rows = nyc_load.rows.clone();
    let sale = Arc::new(Sale {
        route: CityRoute::new(mum.urls.clone(), args.buyers)?,
        hold_path: format!("/v1/shows/{mum_show}/holds"),
        rows,
        start: Instant::now(),
        stop: AtomicBool::new(false),
    });
    let start = sale.start;
    let at = |d: Duration| tokio::time::sleep_until((start + d).into());
    let load = nyc_load.clone();
    let nyc_run = tokio::spawn(openloop::run(schedule.lasting(nyc_secs), move |i| {
        nyc_request(load.clone(), i)
    }));
    eprintln!(
        "loadgen: nyc alone at {:.0}/s for {}s",
        args.nyc_rate, args.alone_secs
    );
    let mut marks = Marks::default();
    at(Duration::from_secs(args.alone_secs)).await;
    marks.sale_start = start.elapsed();
    eprintln!(
        "loadgen: mum's sale: {} buyers on one show through {} replicas",
        args.buyers, args.mum_replicas
    );
    let buyers = start_buyers(&minter, &sale, args.buyers, args.mum_replicas)?;

    at(Duration::from_secs(args.alone_secs + args.sale_secs)).await;
    const KILLED: usize = 0;
    marks.replica_kill = start.elapsed();
    mum.kill(KILLED).await;
    eprintln!("loadgen: killed mum replica {KILLED} (SIGKILL)");

    at(Duration::from_secs(total)).await;
    let master_kill_wall = Utc::now();
    marks.master_kill = start.elapsed();
    eprintln!("loadgen: killing mum's Redis master (SIGKILL); the sentinels fail it over");
    let new_master = tokio::task::block_in_place(|| {
        sentinels.kill_master_and_fail_over(Duration::from_secs(30))
    })?;
    marks.promoted = start.elapsed();
    eprintln!(
        "loadgen: the sentinels promoted 127.0.0.1:{new_master} after {:.2}s",
        (marks.promoted - marks.master_kill).as_secs_f64()
    );
    at(Duration::from_secs(nyc_secs)).await;
    marks.nyc_end = start.elapsed();
    let back = wait_fast_path(&mum.live_urls(), FAST_PATH_PATIENCE).await;
    if !back {
        eprintln!("loadgen: warning: mum is not back on the Redis fast path");
    }
    sale.stop.store(true, Ordering::Relaxed);
    let mut events = Vec::new();
    for b in buyers {
        events.extend(b.await.context("a buyer panicked")?);
    }
    marks.sale_end = start.elapsed();
    let nyc_run = nyc_run.await.context("nyc's load panicked")?;
    eprintln!("loadgen: load done; auditing both databases");

    let audit = Audit::run(mum, nyc, &mum_show, &sentinels.master_url()?).await?;
    let sentinel_redis_s = first_redis_hold_after(
        &mum.db_url,
        master_kill_wall,
        marks.promoted - marks.master_kill,
    )
    .await?;
    Ok(build_report(
        args,
        mum,
        nyc,
        Measured {
            marks,
            events,
            nyc_run,
            sentinel_redis_s,
            audit,
            killed: KILLED,
            load_avg: crate::checkout_bench::load_avg_1m().await,
        },
    ))
}

/// What both loads need, ready before any timing: the shows seeded and
/// loaded by every replica, nyc's load warmed up.
struct Prepared {
    minter: Minter,
    mum_show: String,
    nyc_load: Arc<NycLoad>,
    schedule: NycSchedule,
}

/// nyc's open-model schedule at `--nyc-rate`.
#[derive(Debug, Clone, Copy)]
struct NycSchedule {
    rate: f64,
}

impl NycSchedule {
    fn lasting(self, secs: u64) -> Schedule {
        Schedule {
            rate: self.rate,
            duration: Duration::from_secs(secs),
            max_in_flight: 256,
            grace: Duration::from_secs(10),
        }
    }
}

/// Seeds one `mum` show and enough `nyc` shows for `nyc_secs` of its
/// load, has every replica load them, and warms `nyc` up for 2 s.
async fn prepare(
    args: &IsolationArgs,
    mum_urls: &[String],
    nyc_urls: &[String],
    nyc_secs: u64,
) -> anyhow::Result<Prepared> {
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;
    let tag = crate::seed::short_tag();
    // Enough nyc shows that its holds fill at most a quarter of them.
    let nyc_seats = args.nyc_rate / 2.0 * (nyc_secs + 2) as f64 * 1.5;
    let nyc_shows_n =
        ((nyc_seats / (ROWS * usize::from(PER_ROW)) as f64 / 0.25).ceil() as usize).clamp(1, 16);
    eprintln!("loadgen: seeding a {ROWS}x{PER_ROW} screen in each city; 1 mum show, {nyc_shows_n} nyc shows");
    let mum_show = seed(&mum_urls[0], &op, "mum", "Mumbai", &tag, 1).await?[0].clone();
    let nyc_shows = seed(&nyc_urls[0], &op, "nyc", "New York", &tag, nyc_shows_n).await?;
    // Every replica loads the shows' layouts and seat maps before timing.
    for (urls, shows) in [
        (mum_urls, std::slice::from_ref(&mum_show)),
        (nyc_urls, &nyc_shows[..]),
    ] {
        for u in urls {
            let api = Api::new(u)?;
            for s in shows {
                api.get::<serde_json::Value>(&format!("/v1/shows/{s}/availability"), None)
                    .await?;
            }
        }
    }
    let nyc_load = Arc::new(NycLoad {
        route: CityRoute::new(nyc_urls.to_vec(), 256)?,
        shows: nyc_shows,
        rows: (0..ROWS).map(row_label).collect(),
        tokens: tokens(&minter, "nyc", NYC_USERS)?,
    });
    let schedule = NycSchedule {
        rate: args.nyc_rate,
    };
    eprintln!("loadgen: warm-up: nyc at {:.0}/s for 2s", args.nyc_rate);
    let load = nyc_load.clone();
    openloop::run(schedule.lasting(2), move |i| nyc_request(load.clone(), i)).await;
    Ok(Prepared {
        minter,
        mum_show,
        nyc_load,
        schedule,
    })
}

/// Starts `mum`'s buyers on `sale`, buyer `i` trying replica `i % n`
/// first.
fn start_buyers(
    minter: &Minter,
    sale: &Arc<Sale>,
    buyers: usize,
    replicas: usize,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Vec<SaleEvent>>>> {
    Ok(tokens(minter, "mum", buyers)?
        .into_iter()
        .enumerate()
        .map(|(i, t)| tokio::spawn(buyer(sale.clone(), t, i % replicas.max(1))))
        .collect())
}

/// Creates city `code`, a screen and `n` shows on it through `base`.
async fn seed(
    base: &str,
    op: &str,
    code: &str,
    name: &str,
    tag: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let api = Api::new(base)?;
    let mut catalog = BenchCatalog::create_in(&api, op, (code, name), ROWS, PER_ROW, tag).await?;
    let shows = catalog.new_shows(&api, op, n).await?;
    Ok(shows.iter().map(|s| s.to_string()).collect())
}

fn tokens(minter: &Minter, city: &str, n: usize) -> anyhow::Result<Vec<HeaderValue>> {
    (0..n)
        .map(|i| {
            let bearer = minter.bearer(&format!("loadgen-{city}-{i}"), Role::User)?;
            Ok(HeaderValue::from_str(&bearer)?)
        })
        .collect()
}

/// Waits until every replica at `urls` says its holds go through Redis
/// (`lock_path` of `/healthz`).
async fn wait_fast_path(urls: &[String], patience: Duration) -> bool {
    let until = Instant::now() + patience;
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    loop {
        let mut all = true;
        for u in urls {
            let path = match http.get(format!("{u}/healthz")).send().await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["lock_path"].as_str().map(str::to_owned)),
                Err(_) => None,
            };
            all &= path.as_deref() == Some("redis");
        }
        if all {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds from the master's kill (`killed_at`, wall clock) to the first
/// hold `mum` committed through Redis once the sentinels had named the
/// new master (`promoted_after` later): the old master was dead, so that
/// lock was taken on the new one. None if there was none.
async fn first_redis_hold_after(
    db_url: &str,
    killed_at: DateTime<Utc>,
    promoted_after: Duration,
) -> anyhow::Result<Option<f64>> {
    let promoted_at = killed_at + chrono::Duration::from_std(promoted_after)?;
    let pool = invariants::connect(db_url).await?;
    let first: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(created_at) FROM holds WHERE path = 'redis' AND created_at >= $1",
    )
    .bind(promoted_at)
    .fetch_one(&pool)
    .await
    .context("reading mum's first Redis-path hold after the failover")?;
    pool.close().await;
    Ok(first.map(|t| r2((t - killed_at).num_milliseconds() as f64 / 1000.0)))
}

/// Both shards' seat invariants after the run.
struct Audit {
    /// Seats in two live holds, or held by a hold that does not own them,
    /// over both databases.
    double_booked: i64,
    /// Holds owning some but not all of their seats.
    partial_holds: i64,
    /// mum's live held seats the new master does not know, plus keys
    /// there naming a hold that does not own the seat.
    mum_redis_disagreements: usize,
}

impl Audit {
    async fn run(mum: &Shard, nyc: &Shard, mum_show: &str, master: &str) -> anyhow::Result<Self> {
        let mut out = Self {
            double_booked: 0,
            partial_holds: 0,
            mum_redis_disagreements: 0,
        };
        for shard in [mum, nyc] {
            let pool = invariants::connect(&shard.db_url).await?;
            let report = if shard.code == "mum" {
                invariants::check(&pool, master, &[mum_show.to_owned()]).await
            } else {
                invariants::check_postgres(&pool, Shows::All).await
            };
            pool.close().await;
            let report = report?;
            out.double_booked += report.double_held();
            out.partial_holds += report.partial_holds;
            out.mum_redis_disagreements += report.redis_missing + report.redis_extra;
        }
        Ok(out)
    }
}
