//! `loadgen flash-sale --through-edge`: a bounded flash sale driven
//! through the edge Worker running in workerd, and what it shows.
//!
//! One invocation, self-contained:
//! 1. the world: a fresh database, a sandbox payment gateway and a region
//!    core in-process (its `REGION_ADMISSION_KEYS` = the edge's
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

use crate::api::{Api, Method, Minter};
use crate::checks;
use crate::crowd::{
    self, code_of, locked, unix_ms, Buyer, Crowd, Kind, Outcome, Plan, Record, Stats,
};
use crate::edge::{self, EdgeSettings, EdgeWorker, Room, SaleSettings};
use crate::openloop::micros_histogram;
use crate::report::{ms, r2, FlashSaleBaseline, FlashSaleReport};
use crate::seed::{self, row_label, BenchCatalog, NewShow};
use crate::server::{
    FreshDatabase, InProcessGateway, InProcessServer, InProcessUpstash, UpstashCounters, WorldArgs,
};
use anyhow::Context;
use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use clap::Args;
use functions::rate_limit::{gate_keys_args, Caller, RateLimits, RouteClass};
use functions::upstash::{command_body, decode_command, prefixed, UpstashError};
use functions::waiting_room::{self as room, Mode, Sale};
use region_core::auth::Role;
use region_core::Settings;
use reqwest::StatusCode;
use shared::api::{CreateHold, SaleMode};
use shared::waiting_room::{prequeue_score, seed_commitment, SaleConfig};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    pub signing: region_core::auth::SigningKey,

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

    /// The `functions/` directory (its `build/` from scripts/build-edge.sh
    /// and `dev/serve.mjs`).
    #[arg(long, default_value = edge::DEFAULT_FUNCTIONS_DIR)]
    pub functions_dir: PathBuf,

    /// The Node.js binary that runs serve.mjs.
    #[arg(long, env = "LOADGEN_NODE", default_value = "node")]
    pub node: String,

    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    /// Worker threads of the in-process region core's runtime.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,

    /// Keep the fresh database after the run (for inspection).
    #[arg(long)]
    pub keep_database: bool,
}

/// The bench city (routed by the edge to the run's region core).
const CITY: &str = "lgbench";
/// Seats a buyer asks for: 1..=MAX_GROUP adjacent ones.
const MAX_GROUP: u16 = 2;
/// Seat groups a buyer tries before giving up.
const HOLD_TRIES: usize = 4;
/// Token of the in-process Upstash gateway.
const UPSTASH_TOKEN: &str = "loadgen-upstash-token";

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
    edge::require_build(&args.functions_dir)?;
    let wasm_gzip_bytes = edge::wasm_gzip_bytes(&args.functions_dir)?;
    let db = FreshDatabase::create(&args.world.admin_database_url).await?;
    eprintln!("loadgen: fresh database {}", db.name());
    let tag = seed::short_tag();
    let key_prefix = format!("loadgen_{tag}:");
    let streams = format!("loadgen_{tag}:events");
    let mut shows = Vec::new();
    let result = with_world(&args, &db, &tag, &key_prefix, &streams, &mut shows).await;
    cleanup(&args, db, &key_prefix, &streams, &shows).await;
    let mut report = result?;
    report.wasm_gzip_bytes = wasm_gzip_bytes;
    crate::report::emit(&report, args.json, &report.summary(), report.invariants_ok)
}

/// Removes what the run left in the shared Redis and Postgres.
async fn cleanup(
    args: &FlashSaleArgs,
    db: FreshDatabase,
    key_prefix: &str,
    streams: &str,
    shows: &[uuid::Uuid],
) {
    let redis = &args.world.redis_url;
    match checks::delete_keys(redis, &format!("{key_prefix}*"), |_| true).await {
        Ok(n) => eprintln!("loadgen: deleted {n} edge keys under {key_prefix}"),
        Err(e) => eprintln!("loadgen: warning: could not delete the edge's keys: {e:#}"),
    }
    if let Err(e) = checks::delete_show_keys(redis, shows).await {
        eprintln!("loadgen: warning: redis cleanup of the show's seats failed: {e:#}");
    }
    if let Err(e) = checks::delete_keys(redis, &format!("{streams}:*"), |_| true).await {
        eprintln!("loadgen: warning: could not delete the run's event streams: {e:#}");
    }
    if args.keep_database {
        eprintln!("loadgen: kept database {}", db.name());
    } else if let Err(e) = db.drop_now().await {
        eprintln!("loadgen: warning: could not drop the fresh database: {e:#}");
    }
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

/// Starts the services, runs the sale, stops them (the edge first: it
/// calls the others).
async fn with_world(
    args: &FlashSaleArgs,
    db: &FreshDatabase,
    tag: &str,
    key_prefix: &str,
    streams: &str,
    shows: &mut Vec<uuid::Uuid>,
) -> anyhow::Result<FlashSaleReport> {
    let admission_key = hex_key();
    let gw = InProcessGateway::start(
        sandbox_gateway::SandboxConfig {
            listen: "127.0.0.1:0".into(),
            fault_rate: args.fault_rate,
            ..sandbox_gateway::SandboxConfig::default()
        },
        1,
    )
    .await?;
    let upstash = match InProcessUpstash::start(&args.world.redis_url, UPSTASH_TOKEN).await {
        Ok(u) => u,
        Err(e) => {
            gw.stop().await;
            return Err(e);
        }
    };
    let mut settings = Settings::from_env()?;
    settings.listen = "127.0.0.1:0".into();
    settings.database_url = db.url.clone();
    settings.redis_url = args.world.redis_url.clone();
    settings.signing = args.signing.clone();
    settings.admission_keys = vec![admission_key.clone()];
    settings.gateway_url = gw.url().to_owned();
    settings.gateway_api_key = sandbox_gateway::DEFAULT_API_KEY.into();
    settings.gateway_webhook_secret = sandbox_gateway::DEFAULT_WEBHOOK_SECRET.into();
    settings.events_stream_prefix = streams.to_owned();
    let core = match InProcessServer::start(settings, args.server_threads).await {
        Ok(c) => c,
        Err(e) => {
            upstash.stop().await;
            gw.stop().await;
            return Err(e);
        }
    };
    eprintln!(
        "loadgen: in-process region core at {}, sandbox gateway at {}, upstash gateway at {}",
        core.url(),
        gw.url(),
        upstash.url()
    );
    let edge_settings = EdgeSettings {
        functions_dir: args.functions_dir.clone(),
        node: args.node.clone(),
        regions: BTreeMap::from([(CITY.to_owned(), core.url().to_owned())]),
        upstash_url: upstash.url().to_owned(),
        upstash_token: UPSTASH_TOKEN.to_owned(),
        admission_key: admission_key.clone(),
        jwt_secret: args.signing.jwt_secret.clone(),
        key_prefix: key_prefix.to_owned(),
        log_file: std::env::temp_dir().join(format!("loadgen-edge-{tag}.log")),
    };
    let result = match EdgeWorker::start(&edge_settings).await {
        Ok(edge) => {
            eprintln!(
                "loadgen: edge Worker in workerd at {} (KEY_PREFIX {key_prefix}, log {})",
                edge.url(),
                edge.log_file().display()
            );
            let world = World {
                edge_url: edge.url(),
                core_url: core.url(),
                upstash: &upstash,
                admission_key: &admission_key,
                key_prefix,
                db_url: &db.url,
            };
            let gateway = crate::gateway::Gateway::new(gw.url(), sandbox_gateway::DEFAULT_API_KEY)?;
            let r = async {
                gateway
                    .set_webhook(&format!("{}/v1/webhooks/payments", core.url()))
                    .await?;
                bench(args, &world, tag, shows).await
            }
            .await;
            edge.stop().await;
            r
        }
        Err(e) => Err(e),
    };
    core.stop().await;
    upstash.stop().await;
    gw.stop().await;
    result
}

/// 32 random bytes as hex: the run's admission-pass signing key.
fn hex_key() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;

    // The catalog, through the edge's operator routes.
    let per_row = 100u16;
    let rows = args.seats.div_ceil(usize::from(per_row));
    let catalog = BenchCatalog::create(&edge_api, &op, rows, per_row, tag).await?;
    let show = seed::create_show_in(
        &edge_api,
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
    let mut sale = SaleSettings {
        city: CITY.to_owned(),
        opens_at: edge::rfc3339(Utc::now() + ChronoDuration::hours(1)),
        rate_per_sec: args.rate,
        pass_ttl_s: args.pass_ttl_secs,
        grace_s: args.grace_secs,
    };
    edge::put_sale(&edge_api, &op, &show_id, &sale).await?;

    let buyers: Vec<Buyer> = (0..args.users)
        .map(|i| {
            let id = format!("lgflash-{tag}-{i:05}");
            Ok(Buyer {
                bearer: minter.bearer(&id, Role::User)?,
                edge: edge_api.at_ip(&edge::client_ip(i)),
                id,
            })
        })
        .collect::<anyhow::Result<_>>()?;
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

    // 2. The sale opens a few seconds from now (whole seconds: the edge
    // reports opening times to the second).
    let opens =
        (Utc::now() + ChronoDuration::seconds(args.open_delay_secs as i64 + 1)).trunc_subsecs(0);
    sale.opens_at = edge::rfc3339(opens);
    let moved = crowd
        .call(
            Kind::Operator,
            edge_api.send(
                Method::PUT,
                &format!("/v1/operator/sales/{show_id}"),
                Some(&op),
                None,
                Some(&sale),
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
    let bookings = checks::audit_bookings(w.db_url, &[show.id.0]).await?;

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

/// What the intruders achieved.
#[derive(Debug, Default)]
struct Bypass {
    attempts: u64,
    accepted: u64,
    /// Control attempts: the same hold with a pass genuinely signed for
    /// the intruder (what only the waiting room can issue). They must be
    /// let through, or `accepted == 0` would prove nothing.
    controls: u64,
    controls_accepted: u64,
    /// `where status code` → count.
    answers: BTreeMap<String, u64>,
    /// Why the intruders could not run, if they could not.
    error: Option<String>,
}

impl Bypass {
    fn failed(e: String) -> Self {
        Self {
            error: Some(e),
            ..Self::default()
        }
    }
}

/// Who the intruders are and what they can reach.
struct Intruders<'a> {
    region: &'a Api,
    edge: &'a Api,
    minter: &'a Minter,
    /// The run's admission key, for the control attempts only.
    admission_key: &'a str,
    tag: &'a str,
}

/// Intruders who never joined try to hold seats without being admitted:
/// straight at the region core (no pass, a forged pass, a stolen one) and
/// through the edge (no pass, forged, altered, stolen). Counted as
/// accepted when the pass check let the hold through. Each also makes one
/// control attempt with a pass genuinely signed for it, which must be
/// accepted (and is released at once).
async fn intrude(crowd: &Crowd, who: &Intruders<'_>, n: usize) -> Bypass {
    // Genuine passes to steal, while seats are still free (a bypass would
    // then show as a 201).
    while crowd.admitted() < 8 && Instant::now() < crowd.deadline() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stolen = crowd.first_passes();
    if stolen.is_empty() {
        return Bypass::failed("nobody was admitted: no pass to steal".into());
    }
    // All at once, so they are done while most seats are still free.
    let each = (0..n).map(|i| intruder(crowd, who, i, &stolen[i % stolen.len()]));
    let mut out = Bypass::default();
    for b in futures::future::join_all(each).await {
        out.attempts += b.attempts;
        out.accepted += b.accepted;
        out.controls += b.controls;
        out.controls_accepted += b.controls_accepted;
        for (k, v) in b.answers {
            *out.answers.entry(k).or_default() += v;
        }
        if out.error.is_none() {
            out.error = b.error;
        }
    }
    out
}

/// Intruder `i`'s attempts, with `stolen` = (victim, their pass).
async fn intruder(
    crowd: &Crowd,
    who: &Intruders<'_>,
    i: usize,
    stolen: &(String, String),
) -> Bypass {
    let mut out = Bypass::default();
    let show = &crowd.plan().show;
    let path = format!("/v1/shows/{show}/holds");
    let id = format!("{}-intruder-{i}", who.tag);
    let bearer = match who.minter.bearer(&id, Role::User) {
        Ok(b) => b,
        Err(e) => return Bypass::failed(format!("{e:#}")),
    };
    let edge = who.edge.at_ip(&edge::client_ip(1_000_000 + i));
    let now_s = unix_ms() / 1000;
    let (victim, genuine) = stolen;
    let forged = edge::forged_pass(&id, show, now_s);
    let altered = edge::altered_pass(genuine, &id, show, now_s);
    let control = shared::admission::sign(
        who.admission_key.as_bytes(),
        &shared::admission::PassClaims {
            pid: format!("{show}:control-{i}"),
            sub: id.clone(),
            sale: show.clone(),
            pos: 0,
            iat: now_s,
            exp: now_s + 60,
        },
    );
    // (what, through the edge, pass)
    let attempts: [(&str, bool, Option<&str>); 8] = [
        ("region no_pass", false, None),
        ("region forged", false, Some(&forged)),
        ("region stolen", false, Some(genuine)),
        ("edge no_pass", true, None),
        ("edge forged", true, Some(&forged)),
        ("edge altered", true, Some(&altered)),
        ("edge stolen", true, Some(genuine)),
        ("edge control", true, Some(&control)),
    ];
    for (what, via_edge, pass) in attempts {
        let body = CreateHold {
            seats: crowd.pick(),
        };
        let headers: Vec<(&str, &str)> = pass.map(|p| ("Admission-Pass", p)).into_iter().collect();
        let api = if via_edge { &edge } else { who.region };
        let send = api.send_with(Method::POST, &path, Some(&bearer), &headers, Some(&body));
        let r = if via_edge {
            crowd.call(Kind::Bypass, send).await
        } else {
            send.await
        };
        let key = match &r {
            Ok(r) => format!(
                "{what} {} {}",
                r.status.as_u16(),
                code_of(r).unwrap_or_default()
            ),
            Err(_) => format!("{what} transport"),
        };
        *out.answers.entry(key.trim_end().to_owned()).or_default() += 1;
        let Ok(r) = &r else { continue };
        let passed = edge::passed_pass_check(r);
        if r.status.is_success() {
            // Whoever got it, the seats go back at once.
            if let Ok(h) = r.json::<shared::api::Hold>() {
                let release = format!("/v1/holds/{}", h.hold_id);
                let _ = who
                    .region
                    .send(Method::DELETE, &release, Some(&bearer), None, None::<&()>)
                    .await;
            }
        }
        if what == "edge control" {
            out.controls += 1;
            out.controls_accepted += u64::from(passed);
            continue;
        }
        out.attempts += 1;
        if passed {
            out.accepted += 1;
            eprintln!(
                "loadgen: BYPASS ACCEPTED: {what} (intruder {id}, pass of {victim}): {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    out
}

/// The sale's waiting room as Redis holds it at the end.
struct RoomState {
    /// Users in queue order, with their scores.
    queue: Vec<(String, f64)>,
    /// User → (unix ms the pass was first issued, 1-based place then).
    passes: HashMap<String, (i64, u64)>,
    /// Places given back by completed passes.
    bonus: u64,
    /// Users dropped for not polling.
    gone: u64,
    /// The pre-queue seed.
    seed: Option<String>,
}

impl RoomState {
    async fn read(redis_url: &str, prefix: &str, show: &str) -> anyhow::Result<Self> {
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
struct Analysis {
    admitted: u64,
    admitted_client: u64,
    order_violations: u64,
    draw_mismatches: u64,
    joined_after_opening: u64,
    seed_commitment_verified: bool,
    /// Admissions per second from the rate alone (places given back by
    /// completed passes taken out): the least-squares slope of the
    /// serving counter over time.
    base_rate: Option<f64>,
    /// Serving-counter samples the slope was fitted to.
    samples: usize,
    /// All admissions per second, first to last.
    total_rate: Option<f64>,
    /// Most passes issued within one second.
    peak_per_s: u64,
    /// Most passes issued within any 10 seconds, per second (the cap).
    worst_10s_per_s: f64,
    window_s: Option<f64>,
    bonus: u64,
    gone: u64,
}

/// Pre-queue scores are below 2^48; later joins are 2^48 + n.
const PREQUEUE_LIMIT: f64 = 281_474_976_710_656.0;

fn analyse(run: &SaleRun, state: &RoomState, config: &SaleConfig) -> Analysis {
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
fn slope(points: &[(f64, f64)]) -> Option<f64> {
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

/// The same-run baseline: the work of a status poll and of a forwarded
/// read, through the edge and without it, interleaved so both see the
/// same machine.
async fn baseline(
    args: &FlashSaleArgs,
    w: &World<'_>,
    records: &[Record],
    minter: &Minter,
    sale: &Sale,
) -> anyhow::Result<FlashSaleBaseline> {
    use futures::StreamExt;
    let buyers: Vec<(String, String, uuid::Uuid)> = records
        .iter()
        .filter_map(|r| {
            let booking = r.booking?;
            Some((
                r.id.clone(),
                minter.bearer(&r.id, Role::User).ok()?,
                booking,
            ))
        })
        .collect();
    anyhow::ensure!(!buyers.is_empty(), "no booking to read for the baseline");
    let edge = Api::edge(w.edge_url, CITY)?;
    let region = Api::new(w.core_url)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()?;
    let room = Room::new(CITY, &sale.config.sale);
    let hists = Mutex::new([
        micros_histogram(),
        micros_histogram(),
        micros_histogram(),
        micros_histogram(),
    ]);
    let errors = AtomicUsize::new(0);
    const CONCURRENCY: usize = 8;
    eprintln!(
        "loadgen: baseline: {} rounds, {CONCURRENCY} at a time (status via edge / straight to Upstash, booking read via edge / straight to the region)",
        args.baseline_rounds
    );
    futures::stream::iter(0..args.baseline_rounds)
        .for_each_concurrent(CONCURRENCY, |i| {
            let (edge, region, http, room, hists, errors) =
                (&edge, &region, &http, &room, &hists, &errors);
            let b = i % buyers.len();
            let (id, bearer, booking) = &buyers[b];
            async move {
                let ip = edge::client_ip(2_000_000 + b);
                let as_user = edge.at_ip(&ip);
                let read = format!("/v1/bookings/{booking}");
                let mut lat = [Duration::ZERO; 4];
                let mut ok = [false; 4];
                let t = Instant::now();
                let r = room.status(&as_user, bearer).await;
                lat[0] = t.elapsed();
                ok[0] = r.is_ok_and(|r| r.status == StatusCode::OK);
                let t = Instant::now();
                let r = direct_status(http, w, sale, id, &ip).await;
                lat[1] = t.elapsed();
                ok[1] = r.is_ok();
                let t = Instant::now();
                let r = as_user
                    .send(Method::GET, &read, Some(bearer), None, None::<&()>)
                    .await;
                lat[2] = t.elapsed();
                ok[2] = r.is_ok_and(|r| r.status == StatusCode::OK);
                let t = Instant::now();
                let r = region
                    .send(Method::GET, &read, Some(bearer), None, None::<&()>)
                    .await;
                lat[3] = t.elapsed();
                ok[3] = r.is_ok_and(|r| r.status == StatusCode::OK);
                let mut h = locked(hists);
                for k in 0..4 {
                    if ok[k] {
                        h[k].saturating_record(lat[k].as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    let h = locked(&hists);
    let q = |k: usize, p: f64| ms(h[k].value_at_quantile(p));
    Ok(FlashSaleBaseline {
        rounds: args.baseline_rounds,
        concurrency: CONCURRENCY,
        status_edge_p50_ms: q(0, 0.5),
        status_edge_p99_ms: q(0, 0.99),
        status_direct_upstash_p50_ms: q(1, 0.5),
        status_direct_upstash_p99_ms: q(1, 0.99),
        read_edge_p50_ms: q(2, 0.5),
        read_edge_p99_ms: q(2, 0.99),
        read_region_p50_ms: q(3, 0.5),
        read_region_p99_ms: q(3, 0.99),
        status_edge_overhead_p50_ms: r2(q(0, 0.5) - q(1, 0.5)),
        read_edge_overhead_p50_ms: r2(q(2, 0.5) - q(3, 0.5)),
        errors: errors.load(Ordering::Relaxed) as u64,
    })
}

/// The status poll the Worker makes for `user`, sent straight to the
/// Upstash gateway: the same script (`ROOM`), keys and arguments, built by
/// the Worker's own code. Fails unless it reports the user's pass.
async fn direct_status(
    http: &reqwest::Client,
    w: &World<'_>,
    sale: &Sale,
    user: &str,
    ip: &str,
) -> anyhow::Result<()> {
    let limits = RateLimits::default();
    let class = RouteClass::Status;
    let bucket = functions::auth::ip_bucket(ip);
    let caller = Caller {
        ip_bucket: &bucket,
        user: Some(user),
    };
    let now = unix_ms();
    let (mut keys, mut argv) = gate_keys_args(class, limits.get(class), &caller, now, &[]);
    keys.extend(room::room_keys(&sale.config.sale));
    let (seed, pid) = (hex_key(), room::pass_id(&sale.config.sale, "baseline"));
    argv.extend(room::room_args(Mode::Status, user, sale, now, &seed, &pid));
    let keys = prefixed(w.key_prefix, &keys);
    let script = &functions::scripts::ROOM;
    let mut reply = upstash(http, w, &script.evalsha(&keys, &argv)).await;
    if matches!(reply, Err(UpstashError::NoScript)) {
        reply = upstash(http, w, &script.eval(&keys, &argv)).await;
    }
    let reply = reply.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, room) = room::decode_room_reply(&reply).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        room.is_some_and(|r| r.pass.is_some()),
        "the status script did not find {user}'s pass"
    );
    Ok(())
}

/// One command to the Upstash gateway.
async fn upstash(
    http: &reqwest::Client,
    w: &World<'_>,
    command: &[String],
) -> Result<functions::upstash::Reply, UpstashError> {
    let resp = http
        .post(format!("{}/", w.upstash.url()))
        .bearer_auth(UPSTASH_TOKEN)
        .header("Content-Type", "application/json")
        .body(command_body(command))
        .send()
        .await
        .map_err(|e| UpstashError::Unavailable(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| UpstashError::Unavailable(e.to_string()))?;
    decode_command(status, &body)
}

/// What the report is built from.
struct Findings<'a> {
    args: &'a FlashSaleArgs,
    run: &'a SaleRun,
    analysis: Analysis,
    stats: &'a Stats,
    upstash: UpstashCounters,
    bookings: checks::BookingAudit,
    baseline: Option<FlashSaleBaseline>,
    joined: usize,
    seats: u32,
    elapsed: Duration,
}

fn build_report(f: Findings<'_>) -> FlashSaleReport {
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
