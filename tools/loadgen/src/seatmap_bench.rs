//! `loadgen seatmap`: many viewers of one show's live seat map while
//! buyers hold and release seats (issue 11).
//!
//! One invocation, one phase at a time, the same viewers and the same
//! buyers in each:
//! 1. **push**: every viewer holds a WebSocket (`GET …/live`) and keeps an
//!    exact copy (`testkit::live::Viewer`); fan-out latency is measured
//!    from the moment a buyer sends the hold or release (before its
//!    commit, so it over-states) to the moment a viewer applies it. At
//!    the end every copy is compared with the region's map
//!    (`missed_updates`), and the region core's resident memory growth is
//!    divided by the viewers (`region_rss_bytes_per_viewer`);
//! 2. **polling fallback**: the same viewers poll `…/seats?since=N` every
//!    `--poll-interval-secs` with `If-None-Match`; the region core counts
//!    the polls it serves (`live_polls_total`), which is what an edge's
//!    micro-cache divides;
//! 3. **naive polling** (the baseline): the same viewers fetch the whole
//!    map (`GET …/seats`) every `--poll-interval-secs`.
//!
//! Everything runs against a region core spawned from the release binary
//! on a fresh database, on this machine's loopback.

use crate::report::{r2, PollingReport, SeatmapGoals, SeatmapReport};
use crate::seed::BenchCatalog;
use crate::server::{InProcessUpstash, RegionCoreConfig, Service, WorldArgs};
use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use shared::api::CreateHold;
use shared::live::{Frame, Replica};
use shared::token::Role;
use shared::{SeatState, ShowId};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::api::{Api, Minter};
use testkit::db::FreshDatabase;
use testkit::live::{ws_url, Viewer};
use testkit::seed::row_label;
use testkit::workerd::{EdgeLaunch, EdgeWorker};
use uuid::Uuid;

/// Options of `loadgen seatmap`.
#[derive(Debug, Clone, Args)]
pub struct SeatmapArgs {
    /// Print exactly one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Concurrent viewers of the one show.
    #[arg(long, default_value_t = 5000)]
    pub viewers: usize,

    /// Buyers holding and releasing seats (each its own seat).
    #[arg(long, default_value_t = 20)]
    pub buyers: usize,

    /// Pause between a buyer's hold and its release (and after), ms.
    #[arg(long, default_value_t = 400)]
    pub buyer_pause_ms: u64,

    /// Length of each phase, seconds.
    #[arg(long, default_value_t = 15)]
    pub duration_secs: u64,

    /// How often a polling viewer polls, seconds.
    #[arg(long, default_value_t = 2)]
    pub poll_interval_secs: u64,

    /// Rows of the show (50 seats each).
    #[arg(long, default_value_t = 20)]
    pub rows: usize,

    /// Key that operator and user tokens are signed with.
    #[command(flatten)]
    pub signing: service_kit::SigningKey,

    /// Postgres and Redis of the run.
    #[command(flatten)]
    pub world: WorldArgs,

    /// Worker threads of the load generator's runtime (one thread could
    /// not read 5,000 viewers' frames as fast as they came).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,

    /// Worker threads of the spawned region core's runtime.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,

    /// Keep the run's database (for inspection).
    #[arg(long)]
    pub keep_database: bool,

    /// Viewers and `?since=N` pollers go through the edge Worker in
    /// workerd (its Durable Objects and micro-cache; `scripts/build-edge.sh`
    /// first); the naive baseline still polls the region core directly.
    #[arg(long)]
    pub through_edge: bool,

    /// Pollers of the `?since=N` phase (default: --viewers).
    #[arg(long)]
    pub pollers: Option<usize>,

    /// The `functions/` directory (its `build/` and `dev/serve.mjs`).
    #[arg(long, default_value = testkit::workerd::FUNCTIONS_DIR)]
    pub functions_dir: std::path::PathBuf,

    /// The Node.js binary that runs serve.mjs.
    #[arg(long, env = "LOADGEN_NODE", default_value = "node")]
    pub node: String,
}

/// The bench catalog's city (`BenchCatalog`), the edge's route to it.
const CITY: &str = "lgbench";

/// Token of the in-process Upstash gateway the edge keeps its state in.
const UPSTASH_TOKEN: &str = "loadgen-seatmap-upstash";

const PER_ROW: u16 = 50;

/// Runs the benchmark and prints its report.
pub async fn run(args: SeatmapArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.viewers >= 1, "--viewers must be at least 1");
    anyhow::ensure!(args.buyers >= 1, "--buyers must be at least 1");
    anyhow::ensure!(
        args.buyers <= args.rows * usize::from(PER_ROW),
        "--buyers must not exceed the show's seats"
    );
    anyhow::ensure!(
        args.duration_secs >= 1,
        "--duration-secs must be at least 1"
    );
    anyhow::ensure!(
        args.poll_interval_secs >= 1,
        "--poll-interval-secs must be at least 1"
    );
    // Declared first, dropped last: the run's database goes before its server.
    let (admin_url, _own_postgres) = args.world.postgres()?;
    let db = FreshDatabase::create(&admin_url, "loadgen")
        .await
        .context("creating the run's database (LOADGEN_ADMIN_DATABASE_URL)")?;
    eprintln!("loadgen: fresh database {}", db.name());
    let mut show = None;
    let result = with_database(&args, &db, &mut show).await;
    if let Some(s) = show {
        if let Err(e) = crate::checks::delete_show_keys(&args.world.redis_url, &[s]).await {
            eprintln!("loadgen: warning: redis cleanup failed: {e:#}");
        }
    }
    if args.keep_database {
        eprintln!("loadgen: kept database {}", db.name());
    } else if let Err(e) = db.drop_now().await {
        eprintln!("loadgen: warning: could not drop the fresh database: {e:#}");
    }
    let report = result?;
    let ok = report.missed_updates == 0;
    crate::report::emit(&report, args.json, &report.summary(), ok)
}

async fn with_database(
    args: &SeatmapArgs,
    db: &FreshDatabase,
    created: &mut Option<Uuid>,
) -> anyhow::Result<SeatmapReport> {
    let config = RegionCoreConfig::new(&db.url, &args.world.redis_url, &args.signing)
        .set("REGION_LIVE_MAX_SOCKETS", args.viewers + 100);
    let server = Service::region_core(config, args.server_threads).await?;
    eprintln!(
        "loadgen: region core (release binary) at {} (log {})",
        server.url(),
        server.log_file().display()
    );
    let result = if args.through_edge {
        through_edge(args, &server, created).await
    } else {
        measure(args, &server, None, created).await
    };
    server.stop().await;
    result
}

/// Starts the edge Worker (and the Upstash gateway it keeps its state
/// in) in front of `server`, and measures through it.
async fn through_edge(
    args: &SeatmapArgs,
    server: &Service,
    created: &mut Option<Uuid>,
) -> anyhow::Result<SeatmapReport> {
    testkit::workerd::require_build(&args.functions_dir)?;
    let upstash = InProcessUpstash::start(&args.world.redis_url, UPSTASH_TOKEN).await?;
    let vars = [
        (
            "REGIONS",
            serde_json::to_string(&std::collections::BTreeMap::from([(CITY, server.url())]))?,
        ),
        ("UPSTASH_REDIS_REST_URL", upstash.url().to_owned()),
        ("UPSTASH_REDIS_REST_TOKEN", UPSTASH_TOKEN.to_owned()),
        ("JWT_SECRET", args.signing.jwt_secret.clone()),
        // No flash sale here, but the Worker needs its pass-signing key.
        (
            "ADMISSION_KEY",
            format!("loadgen-seatmap-{}", Uuid::new_v4().simple()),
        ),
        (
            "KEY_PREFIX",
            format!("lgseatmap{}:", crate::seed::short_tag()),
        ),
        // Viewers name their address in CF-Connecting-IP, as Cloudflare
        // does for real ones (each its own: the rate limits are per IP).
        ("TRUST_CF_CONNECTING_IP", "true".to_owned()),
        ("LIVE_BUCKETS", "1".to_owned()),
    ];
    let launch = EdgeLaunch {
        functions_dir: args.functions_dir.clone(),
        node: args.node.clone(),
        vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        log_file: std::env::temp_dir().join(format!(
            "loadgen-seatmap-edge-{}.log",
            crate::seed::short_tag()
        )),
    };
    let edge = match EdgeWorker::start(&launch).await {
        Ok(e) => e,
        Err(e) => {
            upstash.stop().await;
            return Err(e);
        }
    };
    eprintln!(
        "loadgen: edge Worker in workerd at {} (log {})",
        edge.url(),
        edge.log_file().display()
    );
    let result = measure(args, server, Some(edge.url()), created).await;
    edge.stop().await;
    upstash.stop().await;
    result
}

/// The bench's clock: microseconds since the run began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn us(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// For each seat, the last change a buyer asked for: its state in the top
/// two bits, the time it was sent (µs) below; and when the region answered
/// it (µs), with the send time it answers. Viewers read both to time the
/// changes they see: the change committed between the send and the answer.
struct Intents {
    sent: Vec<AtomicU64>,
    answered: Vec<(AtomicU64, AtomicU64)>,
}

impl Intents {
    fn new(seats: usize) -> Self {
        Self {
            sent: (0..seats).map(|_| AtomicU64::new(0)).collect(),
            answered: (0..seats)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
        }
    }

    fn set(&self, ordinal: usize, state: SeatState, at_us: u64) {
        let v = (u64::from(state.code()) << 62) | (at_us & ((1 << 62) - 1));
        self.sent[ordinal].store(v, Ordering::SeqCst);
    }

    /// The region answered the change sent at `sent_us`.
    fn answered(&self, ordinal: usize, sent_us: u64, at_us: u64) {
        let (for_sent, at) = &self.answered[ordinal];
        at.store(at_us, Ordering::SeqCst);
        for_sent.store(sent_us, Ordering::SeqCst);
    }

    /// When the change of `ordinal` to `state` was sent, if that is the
    /// last change asked for it.
    fn sent_at(&self, ordinal: usize, state: SeatState) -> Option<u64> {
        let v = self.sent.get(ordinal)?.load(Ordering::SeqCst);
        (v != 0 && (v >> 62) as u8 == state.code()).then_some(v & ((1 << 62) - 1))
    }

    /// When the change sent at `sent_us` was answered, if it was yet.
    fn answered_at(&self, ordinal: usize, sent_us: u64) -> Option<u64> {
        let (for_sent, at) = self.answered.get(ordinal)?;
        (for_sent.load(Ordering::SeqCst) == sent_us).then(|| at.load(Ordering::SeqCst))
    }
}

/// Latency samples (ms), shared by every viewer (one client thread: the
/// lock is never contended for long).
type Samples = Arc<Mutex<Histogram<u64>>>;

fn samples() -> Samples {
    Arc::new(Mutex::new(
        Histogram::new_with_bounds(1, 600_000, 3).expect("constant histogram bounds are valid"),
    ))
}

fn record(samples: &Samples, ms: u64) {
    if let Ok(mut h) = samples.lock() {
        let _ = h.record(ms.max(1));
    }
}

/// Records, for each seat a delta changes in the copy `before` it was
/// applied, the time since its buyer sent that change (`sent`), and
/// since the region answered it (`answered`, if given; 0 when the delta
/// came first). The commit lies between the two. (A delta may name seats
/// the copy already had in that state: it applies whole.)
fn time_delta(
    frame: &Frame,
    before: &Replica,
    intents: &Intents,
    clock: Clock,
    sent_samples: &Samples,
    answered_samples: Option<&Samples>,
) {
    if let Frame::Delta { changes, .. } = frame {
        let now = clock.us();
        for (ordinal, state) in changes {
            if before.seat(*ordinal) == Some(*state) {
                continue;
            }
            if let Some(sent) = intents.sent_at(*ordinal as usize, *state) {
                record(sent_samples, now.saturating_sub(sent) / 1000);
                if let Some(samples) = answered_samples {
                    let answered = intents.answered_at(*ordinal as usize, sent).unwrap_or(now);
                    record(samples, now.saturating_sub(answered) / 1000);
                }
            }
        }
    }
}

struct World {
    /// The region core's API (buyers, metrics, the naive baseline).
    api: Api,
    /// Where viewers and `?since` pollers go: the region core, or the
    /// edge with the city's prefix.
    viewer_base: String,
    /// The edge, when viewers go through it.
    edge: Option<Api>,
    show: ShowId,
    seats: usize,
    clock: Clock,
    intents: Arc<Intents>,
    minter: Minter,
}

async fn measure(
    args: &SeatmapArgs,
    server: &Service,
    edge_url: Option<&str>,
    created: &mut Option<Uuid>,
) -> anyhow::Result<SeatmapReport> {
    let api = Api::new(server.url())?;
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;
    let tag = crate::seed::short_tag();
    let mut catalog = BenchCatalog::create(&api, &op, args.rows, PER_ROW, &tag).await?;
    let show = catalog
        .new_shows(&api, &op, 1)
        .await?
        .into_iter()
        .next()
        .context("no show created")?;
    *created = Some(show.0);
    let seats = catalog.seats_per_show();
    let (viewer_base, edge) = match edge_url {
        Some(e) => (format!("{e}/v1/c/{CITY}"), Some(Api::new(e)?)),
        None => (format!("{}/v1", server.url()), None),
    };
    let world = World {
        api,
        viewer_base,
        edge,
        show,
        seats,
        clock: Clock(Instant::now()),
        intents: Arc::new(Intents::new(seats)),
        minter,
    };
    let rss_before = rss_bytes(server.pid());
    let push = push_phase(args, &world, server).await?;
    let polling = since_phase(args, &world).await?;
    let naive = naive_phase(args, &world).await?;
    let per_viewer = match (rss_before, push.rss_with_viewers) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) / args.viewers as u64),
        _ => None,
    };
    let fanout_p99 = push.fanout_p99_ms;
    Ok(SeatmapReport {
        bench: "seatmap",
        target: "spawned",
        through_edge: args.through_edge,
        viewers: args.viewers,
        viewers_connected: push.connected,
        buyers: args.buyers,
        seats,
        duration_s: args.duration_secs,
        changes_per_s: push.changes_per_s,
        fanout_p50_ms: push.fanout_p50_ms,
        fanout_p99_ms: push.fanout_p99_ms,
        fanout_max_ms: push.fanout_max_ms,
        fanout_after_answer_p50_ms: push.fanout_after_answer_p50_ms,
        fanout_after_answer_p99_ms: push.fanout_after_answer_p99_ms,
        fanout_samples: push.samples,
        frames_per_viewer_per_s: push.frames_per_viewer_per_s,
        missed_updates: push.missed,
        gaps: push.gaps,
        settle_ms: push.settle_ms,
        region_sockets: push.region_sockets,
        region_rss_bytes_per_viewer: per_viewer,
        polling,
        naive_polling: naive,
        goals: SeatmapGoals {
            viewers_5000: push.connected >= 5000,
            fanout_p99_under_250ms: fanout_p99 < 250.0,
            rss_per_viewer_under_16kb: per_viewer.is_some_and(|b| b <= 16 * 1024),
            no_missed_updates: push.missed == 0,
        },
    })
}

/// The resident set of a process, from /proc (Linux).
fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Buyers hold and release their own seats until `stop`; returns the
/// number of changes made.
fn start_buyers(
    args: &SeatmapArgs,
    world: &World,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<u64>>> {
    let stride = world.seats / args.buyers;
    let mut handles = Vec::new();
    for b in 0..args.buyers {
        let ordinal = b * stride;
        let label = format!(
            "{}{}",
            row_label(ordinal / usize::from(PER_ROW)),
            ordinal % usize::from(PER_ROW) + 1
        );
        let token = world
            .minter
            .bearer(&format!("seatmap-buyer-{b}"), Role::User)?;
        let (api, show, intents, clock, stop) = (
            world.api.clone(),
            world.show,
            world.intents.clone(),
            world.clock,
            stop.clone(),
        );
        let pause = Duration::from_millis(args.buyer_pause_ms);
        handles.push(tokio::spawn(async move {
            // Spread the buyers over the pause.
            tokio::time::sleep(pause * b as u32 / 20).await;
            let mut changes = 0;
            while !stop.load(Ordering::Relaxed) {
                let sent = clock.us();
                intents.set(ordinal, SeatState::Held, sent);
                let body = CreateHold {
                    seats: vec![label.clone()],
                };
                let held: anyhow::Result<shared::api::Hold> = api
                    .post(&format!("/v1/shows/{}/holds", show.0), &token, &body)
                    .await;
                let Ok(hold) = held else {
                    tokio::time::sleep(pause).await;
                    continue;
                };
                intents.answered(ordinal, sent, clock.us());
                changes += 1;
                tokio::time::sleep(pause).await;
                let sent = clock.us();
                intents.set(ordinal, SeatState::Available, sent);
                let released = api
                    .send_with::<()>(
                        reqwest::Method::DELETE,
                        &format!("/v1/holds/{}", hold.hold_id),
                        Some(&token),
                        &[],
                        None,
                    )
                    .await;
                if released.is_ok_and(|r| r.status.is_success()) {
                    intents.answered(ordinal, sent, clock.us());
                    changes += 1;
                }
                tokio::time::sleep(pause).await;
            }
            changes
        }));
    }
    Ok(handles)
}

async fn stop_buyers(stop: &AtomicBool, handles: Vec<tokio::task::JoinHandle<u64>>) -> u64 {
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap_or(0);
    }
    total
}

/// The region's map now: a snapshot through the polling endpoint (a
/// number from the future always gets one).
async fn region_map(world: &World) -> anyhow::Result<Vec<SeatState>> {
    let resp = world
        .api
        .send_with::<()>(
            reqwest::Method::GET,
            &format!("/v1/shows/{}/seats?since={}", world.show.0, u64::MAX),
            None,
            &[],
            None,
        )
        .await?;
    let frame: Frame = resp.json()?;
    let mut r = Replica::new(world.show);
    r.apply(&frame).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(r.seats())
}

struct Push {
    connected: usize,
    changes_per_s: f64,
    fanout_p50_ms: f64,
    fanout_p99_ms: f64,
    fanout_max_ms: f64,
    fanout_after_answer_p50_ms: f64,
    fanout_after_answer_p99_ms: f64,
    samples: u64,
    frames_per_viewer_per_s: f64,
    missed: usize,
    gaps: u64,
    settle_ms: u64,
    region_sockets: Option<u64>,
    rss_with_viewers: Option<u64>,
}

async fn push_phase(args: &SeatmapArgs, world: &World, server: &Service) -> anyhow::Result<Push> {
    eprintln!("loadgen: connecting {} viewers", args.viewers);
    let url = ws_url(&world.viewer_base, &format!("/shows/{}/live", world.show.0));
    let samples = (samples(), samples());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    // Once buyers stop: the region's final map; a viewer whose copy
    // equals it counts itself settled and stops.
    let truth: Arc<std::sync::OnceLock<Vec<SeatState>>> = Arc::default();
    let settled = Arc::new(tokio::sync::Semaphore::new(0));
    let connect_slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut viewers = Vec::with_capacity(args.viewers);
    for i in 0..args.viewers {
        let ip = viewer_ip(i);
        let (url, show, samples, measuring, stop, frames, ready, slots, intents, clock) = (
            url.clone(),
            world.show,
            samples.clone(),
            measuring.clone(),
            stop.clone(),
            frames.clone(),
            ready.clone(),
            connect_slots.clone(),
            world.intents.clone(),
            world.clock,
        );
        let (truth, settled) = (truth.clone(), settled.clone());
        viewers.push(tokio::spawn(async move {
            let viewer = {
                let _slot = slots.acquire().await.ok()?;
                let mut v = Viewer::connect_with(&url, show, &[("CF-Connecting-IP", &ip)])
                    .await
                    .ok()?;
                v.next(Duration::from_secs(30)).await.ok()??;
                v
            };
            ready.add_permits(1);
            let mut v = viewer;
            while !stop.load(Ordering::Relaxed) {
                // The copy before the frame (cheap: a few hundred bytes).
                let before = v.replica.clone();
                match v.next(Duration::from_millis(250)).await {
                    Ok(Some(frame)) => {
                        if measuring.load(Ordering::Relaxed) {
                            frames.fetch_add(1, Ordering::Relaxed);
                            time_delta(
                                &frame,
                                &before,
                                &intents,
                                clock,
                                &samples.0,
                                Some(&samples.1),
                            );
                        }
                    }
                    Ok(None) if v.closed.is_some() => break,
                    Ok(None) => {}
                    Err(_) => break,
                }
                if truth.get().is_some_and(|t| *t == v.replica.seats()) {
                    settled.add_permits(1);
                    break;
                }
            }
            Some(v)
        }));
    }
    // Wait for the viewers (each has its snapshot), or give up after a
    // minute and measure those that made it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.available_permits() < args.viewers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = ready.available_permits();
    eprintln!("loadgen: {connected} viewers connected");
    anyhow::ensure!(
        connected > 0,
        "no viewer could connect to {url} (see the logs named above)"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_with_viewers = rss_bytes(server.pid());
    let region_sockets = metric(&world.api, "live_sockets").await;
    measuring.store(true, Ordering::Relaxed);
    let buying = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let buyers = start_buyers(args, world, buying.clone())?;
    tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    let changes = stop_buyers(&buying, buyers).await;
    let elapsed = started.elapsed().as_secs_f64();
    // Every copy must come to equal the region's final map: wait until
    // all have (or 60 s), then count those that did not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = truth.set(region_map(world).await?);
    let settling = Instant::now();
    while settled.available_permits() < connected && settling.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settle_ms = settling.elapsed().as_millis() as u64;
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut gaps = 0;
    for v in viewers {
        if let Some(v) = v.await.ok().flatten() {
            gaps += v.gaps;
        }
    }
    let missed = connected.saturating_sub(settled.available_permits());
    let snapshot = |s: &Samples| {
        s.lock()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    };
    let (h, after_answer) = (snapshot(&samples.0), snapshot(&samples.1));
    Ok(Push {
        connected,
        changes_per_s: r2(changes as f64 / elapsed),
        fanout_p50_ms: h.value_at_quantile(0.5) as f64,
        fanout_p99_ms: h.value_at_quantile(0.99) as f64,
        fanout_max_ms: h.max() as f64,
        fanout_after_answer_p50_ms: after_answer.value_at_quantile(0.5) as f64,
        fanout_after_answer_p99_ms: after_answer.value_at_quantile(0.99) as f64,
        samples: h.len(),
        frames_per_viewer_per_s: r2(frames.load(Ordering::Relaxed) as f64
            / connected.max(1) as f64
            / elapsed),
        missed,
        gaps,
        settle_ms,
        region_sockets,
        rss_with_viewers,
    })
}

/// A distinct client address per viewer (the edge limits rates per IP).
fn viewer_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// A counter or gauge from the region core's /metrics (its series summed).
async fn metric(api: &Api, name: &str) -> Option<u64> {
    crate::profile::metric_sum(&api.url("/metrics"), name).await
}

/// A poll that takes this long is counted as failed (a poller waiting on
/// a saturated server would otherwise never be counted at all).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `count` pollers for one phase and reports it; `poll` does one
/// poll and returns the bytes received (`None`: it failed).
async fn polling_phase<F, Fut>(
    args: &SeatmapArgs,
    world: &World,
    name: &str,
    count: usize,
    poll: F,
) -> anyhow::Result<PollingReport>
where
    F: Fn(usize, Samples) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Option<u64>> + Send,
{
    eprintln!(
        "loadgen: {name}: {} pollers every {} s",
        count, args.poll_interval_secs
    );
    let samples = samples();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(PollCounts::default());
    let every = Duration::from_secs(args.poll_interval_secs);
    let mut pollers = Vec::new();
    for i in 0..count {
        let (poll, samples, stop, counts) =
            (poll.clone(), samples.clone(), stop.clone(), counts.clone());
        let offset = every.mul_f64(i as f64 / count as f64);
        pollers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                counts.sent.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(POLL_TIMEOUT, poll(i, samples.clone())).await {
                    Ok(Some(n)) => {
                        counts.answered.fetch_add(1, Ordering::Relaxed);
                        counts.bytes.fetch_add(n, Ordering::Relaxed);
                    }
                    _ => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // One interval to get every poller going, then measure.
    tokio::time::sleep(every).await;
    let c0 = counts.read();
    let served0 = metric(&world.api, "live_polls_total").await.unwrap_or(0);
    let buying = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let buyers = start_buyers(args, world, buying.clone())?;
    tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let c1 = counts.read();
    let served1 = metric(&world.api, "live_polls_total").await.unwrap_or(0);
    stop_buyers(&buying, buyers).await;
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        let _ = p.await;
    }
    let rate = |a: u64, b: u64| r2(b.saturating_sub(a) as f64 / elapsed);
    let h = samples
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    Ok(PollingReport {
        interval_s: args.poll_interval_secs,
        client_requests_per_s: rate(c0.sent, c1.sent),
        answered_per_s: rate(c0.answered, c1.answered),
        failed: c1.failed.saturating_sub(c0.failed),
        region_requests_per_s: rate(served0, served1),
        bytes_per_s: (c1.bytes.saturating_sub(c0.bytes) as f64 / elapsed) as u64,
        staleness_p50_ms: h.value_at_quantile(0.5) as f64,
        staleness_p99_ms: h.value_at_quantile(0.99) as f64,
        samples: h.len(),
    })
}

/// The pollers' running counts.
#[derive(Default)]
struct PollCounts {
    sent: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// A reading of [`PollCounts`].
#[derive(Clone, Copy)]
struct PollCount {
    sent: u64,
    answered: u64,
    failed: u64,
    bytes: u64,
}

impl PollCounts {
    fn read(&self) -> PollCount {
        PollCount {
            sent: self.sent.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A poller's copy and the ETag it came with.
type PollerCopy = (Replica, Option<String>);

/// Phase 2: `?since=N` with `If-None-Match`, each poller keeping a copy.
async fn since_phase(args: &SeatmapArgs, world: &World) -> anyhow::Result<PollingReport> {
    let pollers = args.pollers.unwrap_or(args.viewers);
    let copies: Arc<Vec<Mutex<PollerCopy>>> = Arc::new(
        (0..pollers)
            .map(|_| Mutex::new((Replica::new(world.show), None)))
            .collect(),
    );
    // Through the edge: its API, each poller from its own address; the
    // path carries the city.
    let (api, prefix) = match &world.edge {
        Some(e) => (e.clone(), format!("/v1/c/{CITY}")),
        None => (world.api.clone(), "/v1".to_owned()),
    };
    let (show, intents, clock) = (world.show, world.intents.clone(), world.clock);
    polling_phase(
        args,
        world,
        "polling ?since=N",
        pollers,
        move |i, samples| {
            let (api, copies, intents) =
                (api.at_ip(&viewer_ip(i)), copies.clone(), intents.clone());
            let prefix = prefix.clone();
            async move {
                let (since, etag) = {
                    let c = copies[i].lock().unwrap_or_else(|p| p.into_inner());
                    (c.0.seq().unwrap_or(0), c.1.clone())
                };
                let headers: Vec<(&str, &str)> = etag
                    .as_deref()
                    .map(|t| vec![("if-none-match", t)])
                    .unwrap_or_default();
                let Ok(resp) = api
                    .send_with::<()>(
                        reqwest::Method::GET,
                        &format!("{prefix}/shows/{}/seats?since={since}", show.0),
                        None,
                        &headers,
                        None,
                    )
                    .await
                else {
                    return None;
                };
                let n = resp.body.len() as u64;
                if resp.status == 200 {
                    if let Ok(frame) = resp.json::<Frame>() {
                        let mut c = copies[i].lock().unwrap_or_else(|p| p.into_inner());
                        time_delta(&frame, &c.0, &intents, clock, &samples, None);
                        if c.0.apply(&frame).is_err() {
                            c.0 = Replica::new(show);
                        }
                        c.1 = resp.header("etag").map(str::to_owned);
                    }
                }
                Some(n)
            }
        },
    )
    .await
}

/// Phase 3, the baseline: the whole map every interval.
async fn naive_phase(args: &SeatmapArgs, world: &World) -> anyhow::Result<PollingReport> {
    let seen: Arc<Vec<Mutex<Vec<Option<SeatState>>>>> = Arc::new(
        (0..args.viewers)
            .map(|_| Mutex::new(vec![None; world.seats]))
            .collect(),
    );
    let (api, show, intents, clock) = (
        world.api.clone(),
        world.show,
        world.intents.clone(),
        world.clock,
    );
    let mut report = polling_phase(
        args,
        world,
        "naive polling",
        args.viewers,
        move |i, samples| {
            let (api, seen, intents) = (api.clone(), seen.clone(), intents.clone());
            async move {
                let Ok(resp) = api
                    .send_with::<()>(
                        reqwest::Method::GET,
                        &format!("/v1/shows/{}/seats", show.0),
                        None,
                        &[],
                        None,
                    )
                    .await
                else {
                    return None;
                };
                let n = resp.body.len() as u64;
                if let Ok(map) = resp.json::<shared::api::SeatMap>() {
                    let now = clock.us();
                    let mut seen = seen[i].lock().unwrap_or_else(|p| p.into_inner());
                    for (o, seat) in map.seats.iter().enumerate() {
                        if seen[o].is_some_and(|s| s != seat.status) {
                            if let Some(sent) = intents.sent_at(o, seat.status) {
                                record(&samples, now.saturating_sub(sent) / 1000);
                            }
                        }
                        seen[o] = Some(seat.status);
                    }
                }
                Some(n)
            }
        },
    )
    .await?;
    // Every naive poll reaches the region (nothing to cache by number).
    report.region_requests_per_s = report.answered_per_s;
    Ok(report)
}
