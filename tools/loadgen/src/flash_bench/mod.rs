//! `loadgen flash-sale --through-edge`: a bounded flash sale driven
//! through the edge Worker running in workerd, and what it shows.
//!
//! One invocation, self-contained:
//! 1. the world: a fresh database, a sandbox payment gateway and a region
//!    core (the release binary; its `REGION_ADMISSION_KEYS` = the edge's
//!    `ADMISSION_KEY`, a random key of the run), the Upstash-compatible
//!    gateway in-process over the shared Redis, and the built Worker
//!    (`node functions/dev/serve.mjs --port 0`) with a `KEY_PREFIX` of the
//!    run's own, routing the bench city to that core;
//! 2. through the edge: a flash-sale show (operator API), its sale set at
//!    the edge to open far in the future; every user joins the waiting
//!    room (the pre-queue); then the sale is moved to open a few seconds
//!    later at `--rate` admissions per second;
//! 3. the sale: every user polls its status as told (`refresh_after_s`,
//!    capped), and once admitted holds 1-2 seats with the pass and pays,
//!    all through the edge; meanwhile intruders try to get round the
//!    queue (direct region holds without or with forged passes, edge holds
//!    with forged, altered or someone else's passes);
//! 4. the reading: the queue, the pass records and the seed from Redis
//!    (admission rate, order, the draw), the bookings from Postgres
//!    (double booking), the Upstash gateway's counters (Redis round trips
//!    per edge decision), client latencies; then a same-run baseline that
//!    sends the same status script straight to the Upstash gateway and the
//!    same booking read straight to the region core;
//! 5. cleanup: the run's Redis keys, its database.
//!
//! Exits non-zero if anyone was admitted out of order, a bypass was
//! accepted, or a seat was sold twice.

use crate::crowd::{unix_ms, Buyer, Crowd, Kind, Plan, Record};
use crate::edge::{self, SaleSettings};
use crate::edge_world::{EdgeRunArgs, EdgeWorld, EdgeWorldSpec};
use crate::report::FlashSaleReport;
use crate::seed::{self, BenchCatalog};
use crate::server::{InProcessUpstash, WorldArgs};
use anyhow::Context;
use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use clap::Args;
use functions::waiting_room::Sale;
use reqwest::StatusCode;
use shared::api::SaleMode;
use shared::token::Role;
use shared::waiting_room::SaleConfig;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::api::{Api, Method, Minter};
use testkit::db::FreshDatabase;
use testkit::invariants::{self, Shows};
use testkit::seed::{row_label, NewShow};
use testkit::workerd;

mod analysis;
mod baseline;
mod findings;
mod intruders;

use analysis::{analyse, RoomState};
use baseline::baseline;
use findings::{build_report, Findings};
use intruders::{intrude, Bypass, Intruders};

/// Options of `loadgen flash-sale`.
#[derive(Debug, Clone, Args)]
pub struct FlashSaleArgs {
    /// Drive the sale through the edge Worker in workerd (the waiting room
    /// lives there, so this is the only mode).
    #[arg(long)]
    pub through_edge: bool,

    /// Print exactly one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Key that operator and user tokens are signed with (also the edge's
    /// JWT_SECRET).
    #[command(flatten)]
    pub signing: service_kit::SigningKey,

    /// Postgres and Redis of the run.
    #[command(flatten)]
    pub world: WorldArgs,

    /// Simulated users; all join the waiting room before it opens.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,

    /// Admissions per second the sale is configured with.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// The sale opens this long after the last user joined, seconds.
    #[arg(long, default_value_t = 3)]
    pub open_delay_secs: u64,

    /// Lifetime of an admission pass, seconds.
    #[arg(long, default_value_t = 300)]
    pub pass_ttl_secs: u32,

    /// A waiting user who does not poll for this long loses the place.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u32,

    /// Seats of the flash-sale show (rows of 100).
    #[arg(long, default_value_t = 1000)]
    pub seats: usize,

    /// Requests in flight to the edge at most (users wait for a slot).
    #[arg(long, default_value_t = 48)]
    pub concurrency: usize,

    /// Longest wait between two status polls of a user, ms (the edge's
    /// `refresh_after_s` is honoured up to this).
    #[arg(long, default_value_t = 2000)]
    pub max_poll_ms: u64,

    /// Longest the sale runs after opening, seconds: users still waiting
    /// then are reported as such.
    #[arg(long, default_value_t = 60)]
    pub max_sale_secs: u64,

    /// Intruders trying to get round the queue, each in seven ways (plus
    /// one control attempt with a genuinely signed pass).
    #[arg(long, default_value_t = 20)]
    pub intruders: usize,

    /// Rounds of the same-run baseline (each: a status through the edge,
    /// the same script straight to Upstash, a booking read through the
    /// edge and straight from the region core).
    #[arg(long, default_value_t = 300)]
    pub baseline_rounds: usize,

    /// Probability that the sandbox turns a payment into a fault.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,

    /// The edge, the processes and the database of the run.
    #[command(flatten)]
    pub run: EdgeRunArgs,
}

/// The bench city (routed by the edge to the run's region core).
const CITY: &str = "lgbench";
/// Seats a buyer asks for: 1..=MAX_GROUP adjacent ones.
const MAX_GROUP: u16 = 2;
/// Seat groups a buyer tries before giving up.
const HOLD_TRIES: usize = 4;

/// Entry point of `loadgen flash-sale`.
pub async fn run(args: FlashSaleArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.through_edge,
        "flash-sale needs --through-edge: the waiting room that admits users is the edge Worker's"
    );
    anyhow::ensure!(args.users >= 2, "--users must be at least 2");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 100_000.0,
        "--rate must be above 0 and at most 100000"
    );
    anyhow::ensure!(
        args.seats >= 100 && args.concurrency >= 1,
        "--seats must be at least 100 and --concurrency at least 1"
    );
    anyhow::ensure!(
        (10..=86_400).contains(&args.pass_ttl_secs) && (3..=86_400).contains(&args.grace_secs),
        "--pass-ttl-secs must be 10-86400 and --grace-secs 3-86400"
    );
    anyhow::ensure!(
        u64::from(args.grace_secs) * 1000 > 2 * args.max_poll_ms,
        "--max-poll-ms must stay well below --grace-secs, or polling users would be dropped"
    );
    workerd::require_build(&args.run.functions_dir)?;
    let wasm_gzip_bytes = edge::wasm_gzip_bytes(&args.run.functions_dir)?;
    let db = FreshDatabase::create(&args.world.admin_database_url, "loadgen")
        .await
        .context("creating the run's database (LOADGEN_ADMIN_DATABASE_URL)")?;
    eprintln!("loadgen: fresh database {}", db.name());
    let tag = seed::short_tag();
    let key_prefix = format!("loadgen_{tag}:");
    let streams = format!("loadgen_{tag}:events");
    let mut shows = Vec::new();
    let result = with_world(&args, &db, &tag, &key_prefix, &streams, &mut shows).await;
    crate::edge_world::cleanup(
        &args.world,
        args.run.keep_database,
        db,
        &key_prefix,
        &streams,
        &shows,
    )
    .await;
    let mut report = result?;
    report.wasm_gzip_bytes = wasm_gzip_bytes;
    crate::report::emit(&report, args.json, &report.summary(), report.invariants_ok)
}

/// What the services are reached at.
struct World<'a> {
    edge_url: &'a str,
    core_url: &'a str,
    upstash: &'a InProcessUpstash,
    admission_key: &'a str,
    key_prefix: &'a str,
    db_url: &'a str,
}

/// Starts the services, runs the sale, stops them.
async fn with_world(
    args: &FlashSaleArgs,
    db: &FreshDatabase,
    tag: &str,
    key_prefix: &str,
    streams: &str,
    shows: &mut Vec<uuid::Uuid>,
) -> anyhow::Result<FlashSaleReport> {
    let services = EdgeWorld::start(&EdgeWorldSpec {
        world: &args.world,
        signing: &args.signing,
        database_url: &db.url,
        city: CITY,
        key_prefix,
        streams,
        tag,
        fault_rate: args.fault_rate,
        core_env: Vec::new(),
        run: &args.run,
    })
    .await?;
    let world = World {
        edge_url: services.edge.url(),
        core_url: services.core.url(),
        upstash: &services.upstash,
        admission_key: &services.admission_key,
        key_prefix,
        db_url: &db.url,
    };
    let result = bench(args, &world, tag, shows).await;
    services.stop().await;
    result
}

/// The sale phase's result.
struct SaleRun {
    records: Vec<Record>,
    bypass: Bypass,
    opens_at_ms: i64,
    elapsed: Duration,
    commitment: Option<String>,
    revealed_seed: Option<String>,
}

// About 100 lines: the run's steps in order (seed, join, open, buy
// while intruders try, analyse), each a call; splitting it would only
// thread the same values through more signatures.
/// The part of the run that talks to the services.
async fn bench(
    args: &FlashSaleArgs,
    w: &World<'_>,
    tag: &str,
    shows: &mut Vec<uuid::Uuid>,
) -> anyhow::Result<FlashSaleReport> {
    let started = Instant::now();
    let edge_api = Api::edge(w.edge_url, CITY)?;
    let region = Api::new(w.core_url)?;
    edge::wait_healthy(&edge_api, Duration::from_secs(15)).await?;
    region
        .get::<serde_json::Value>("/readyz", None)
        .await
        .context("the region core is not ready")?;
    let Stage {
        minter,
        op,
        show,
        show_id,
        mut sale,
        buyers,
        crowd,
    } = stage(args, &edge_api, tag, shows).await?;
    let counters_before = w.upstash.counters();

    // 1. Everyone joins the pre-queue.
    let join_started = Instant::now();
    let joins = crowd.join_all(&buyers).await;
    let joined = joins.iter().filter(|j| j.is_ok()).count();
    let commitment = joins
        .iter()
        .find_map(|j| j.as_ref().ok().and_then(|s| s.seed_commitment.clone()));
    if let Some(Err(e)) = joins.iter().find(|j| j.is_err()) {
        eprintln!("loadgen: warning: a join failed: {e:#}");
    }
    eprintln!(
        "loadgen: {joined}/{} users joined the pre-queue in {:.1}s (seed commitment {})",
        buyers.len(),
        join_started.elapsed().as_secs_f64(),
        commitment.as_deref().unwrap_or("none")
    );

    let opens = open_sale(&crowd, &edge_api, &op, &show_id, &mut sale, args).await?;
    let opens_at_ms = opens.timestamp_millis();
    let until_open = Duration::from_millis((opens_at_ms - unix_ms()).max(0) as u64);
    crowd.set_deadline(Instant::now() + until_open + Duration::from_secs(args.max_sale_secs));

    // 3. The sale.
    let buyers: Vec<(Buyer, bool)> = buyers
        .into_iter()
        .zip(joins.iter().map(Result::is_ok))
        .collect();
    let run = run_sale(&crowd, buyers, args, w, &edge_api, opens_at_ms, commitment).await;
    // Completions are reported in the background (`wait_until`): let them land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let upstash_used = w.upstash.counters().since(counters_before);
    let stats = crowd.take_stats();
    eprintln!(
        "loadgen: sale over after {:.1}s; reading the waiting room from Redis",
        run.elapsed.as_secs_f64()
    );

    // 4. The reading.
    let config = SaleConfig {
        sale: show_id.clone(),
        opens_at_ms,
        rate_per_sec: args.rate,
        pass_ttl_s: args.pass_ttl_secs,
        grace_s: args.grace_secs,
    };
    let state = RoomState::read(&args.world.redis_url, w.key_prefix, &show_id).await?;
    let analysis = analyse(&run, &state, &config);
    let bookings = {
        let pool = invariants::connect(w.db_url).await?;
        let audit = invariants::audit_bookings(&pool, Shows::Only(&[show.id.0])).await;
        pool.close().await;
        audit?
    };

    // 5. The baseline, outside the measured window.
    let baseline = if args.baseline_rounds == 0 {
        None
    } else {
        let sale = Sale {
            city: CITY.to_owned(),
            config: config.clone(),
        };
        Some(baseline(args, w, &run.records, &minter, &sale).await?)
    };

    Ok(build_report(Findings {
        args,
        run: &run,
        analysis,
        stats: &stats,
        upstash: upstash_used,
        bookings,
        baseline,
        joined,
        seats: show.seat_count,
        elapsed: started.elapsed(),
    }))
}

/// What a run sets up before anyone joins.
struct Stage {
    minter: Minter,
    op: String,
    show: shared::api::Show,
    show_id: String,
    sale: SaleSettings,
    buyers: Vec<Buyer>,
    crowd: Arc<Crowd>,
}

/// The catalog and the flash-sale show (through the edge's operator
/// routes), the sale set to open far away, the buyers and their crowd.
async fn stage(
    args: &FlashSaleArgs,
    edge_api: &Api,
    tag: &str,
    shows: &mut Vec<uuid::Uuid>,
) -> anyhow::Result<Stage> {
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;

    // The catalog, through the edge's operator routes.
    let per_row = 100u16;
    let rows = args.seats.div_ceil(usize::from(per_row));
    let catalog = BenchCatalog::create(edge_api, &op, rows, per_row, tag).await?;
    let show = testkit::seed::create_show_in(
        edge_api,
        &op,
        NewShow {
            screen_id: catalog.screen_id,
            movie_id: catalog.movie_id,
            starts_at: Utc::now() + ChronoDuration::days(14),
            prices: &[("STANDARD", 25_000)],
            currency: "INR",
        },
        SaleMode::FlashSale,
    )
    .await?;
    shows.push(show.id.0);
    let show_id = show.id.to_string();
    eprintln!(
        "loadgen: flash-sale show {show_id}: {} seats; {} users",
        show.seat_count, args.users
    );

    // The sale is set first to open far away, so nobody is admitted while
    // users are still joining; it is moved once they all have.
    let sale = SaleSettings {
        city: CITY.to_owned(),
        opens_at: edge::rfc3339(Utc::now() + ChronoDuration::hours(1)),
        rate_per_sec: args.rate,
        pass_ttl_s: args.pass_ttl_secs,
        grace_s: args.grace_secs,
    };
    edge::put_sale(edge_api, &op, &show_id, &sale).await?;

    let buyers = Buyer::many(args.users, &format!("lgflash-{tag}"), 5, &minter, edge_api)?;
    let crowd = Crowd::new(Plan {
        city: CITY.to_owned(),
        show: show_id.clone(),
        rows: (0..rows).map(row_label).collect(),
        per_row,
        max_group: MAX_GROUP,
        hold_tries: HOLD_TRIES,
        keep_unpaid: 0,
        poll_cap: Duration::from_millis(args.max_poll_ms),
        concurrency: args.concurrency,
        key_prefix: "lgflash".into(),
    });
    Ok(Stage {
        minter,
        op,
        show,
        show_id,
        sale,
        buyers,
        crowd,
    })
}

/// Moves the sale's opening to a few seconds from now (whole seconds: the
/// edge reports opening times to the second); returns the instant.
async fn open_sale(
    crowd: &Crowd,
    edge_api: &Api,
    op: &str,
    show_id: &str,
    sale: &mut SaleSettings,
    args: &FlashSaleArgs,
) -> anyhow::Result<chrono::DateTime<Utc>> {
    let opens =
        (Utc::now() + ChronoDuration::seconds(args.open_delay_secs as i64 + 1)).trunc_subsecs(0);
    sale.opens_at = edge::rfc3339(opens);
    let moved = crowd
        .call(
            Kind::Operator,
            edge_api.send(
                Method::PUT,
                &format!("/v1/operator/sales/{show_id}"),
                Some(op),
                None,
                Some(&*sale),
            ),
        )
        .await?;
    anyhow::ensure!(
        moved.status == StatusCode::OK,
        "moving the opening: {}",
        moved.failure()
    );
    eprintln!(
        "loadgen: the sale opens at {} ({} admissions/s, pass TTL {}s, grace {}s)",
        sale.opens_at, args.rate, args.pass_ttl_secs, args.grace_secs
    );
    Ok(opens)
}

/// Runs the crowd and, meanwhile, the intruders.
async fn run_sale(
    crowd: &Arc<Crowd>,
    buyers: Vec<(Buyer, bool)>,
    args: &FlashSaleArgs,
    w: &World<'_>,
    edge_api: &Api,
    opens_at_ms: i64,
    commitment: Option<String>,
) -> SaleRun {
    let started = Instant::now();
    let intruders = {
        let crowd = crowd.clone();
        let region = Api::new(w.core_url);
        let edge_api = edge_api.clone();
        let minter = Minter::new(&args.signing.jwt_secret);
        let n = args.intruders;
        let tag = w.key_prefix.trim_end_matches(':').to_owned();
        let key = w.admission_key.to_owned();
        tokio::spawn(async move {
            match region {
                Ok(region) => {
                    let who = Intruders {
                        region: &region,
                        edge: &edge_api,
                        minter: &minter,
                        admission_key: &key,
                        tag: &tag,
                    };
                    intrude(&crowd, &who, n).await
                }
                Err(e) => Bypass::failed(format!("{e:#}")),
            }
        })
    };
    let records = crowd.run(buyers).await;
    let bypass = intruders
        .await
        .unwrap_or_else(|e| Bypass::failed(format!("intruder task failed: {e}")));
    SaleRun {
        records,
        bypass,
        opens_at_ms,
        elapsed: started.elapsed(),
        commitment,
        revealed_seed: crowd.revealed_seed(),
    }
}
