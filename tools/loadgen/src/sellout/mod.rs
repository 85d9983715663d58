//! `loadgen sellout`: a flash sale from the queue to the last seat.
//!
//! One invocation, self-contained (the world of `flash-sale`: a fresh
//! database, the sandbox gateway with a share of faults, the region core,
//! the Upstash gateway and the Worker in workerd):
//!
//! 1. **calibration**, before each sale, through the path that sale
//!    takes (a fresh show per step, no gateway faults): buyers hold and
//!    pay at rising concurrency, which measures the path's capacity, then
//!    arrive at falling shares of it until purchase p99 stays under the
//!    goal; the admission rate is [`calibrate::HEADROOM`] of that arrival
//!    rate (or `--admission-rate`, said so in the report). The two rates
//!    side by side are the edge's cost in capacity;
//! 2. **without the edge**: a show of `--seats` seats sold to `--buyers`
//!    buyers admitted at the region's rate by a pacer in the load
//!    generator, each with a pass signed as the edge would, straight at
//!    the region core;
//! 3. **through the edge**: another such show; every buyer joins the
//!    waiting room before it opens, is admitted by it at the edge's rate,
//!    and buys through the edge;
//! 4. after each sale, the **drain**: reconciliation until it finds
//!    nothing, the show's last holds paid, released or expired; then the
//!    audit (seats sold once and all of them, money against the
//!    gateway's ledger).
//!
//! A buyer wants 1–4 adjacent seats, picks them from the seat map, holds,
//! pays (a careful client: same key after an unknown outcome, a new key
//! after a decline), gives the hold back when the payment failed, and
//! while every free seat is held waits for seats to come back. Exits
//! non-zero if a seat was oversold or sold twice, money was lost, or a
//! seat was left unsold.

use crate::checkout_bench;
use crate::edge::{self, SaleSettings};
use crate::edge_world::{EdgeRunArgs, EdgeWorld, EdgeWorldSpec};
use crate::report::{self, r2};
use crate::seed::{self, BenchCatalog};
use crate::server::WorldArgs;
use anyhow::Context;
use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use clap::Args;
use serde::Serialize;
use shared::api::SaleMode;
use shared::token::Role;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::api::{Api, Minter};
use testkit::db::FreshDatabase;
use testkit::invariants::{self, Shows};
use testkit::money::{CoreRecords, MoneyAudit};
use testkit::seed::row_label;

pub mod board;
pub mod calibrate;
pub mod phase;
pub mod shop;

use board::SharedBoard;
use calibrate::{Choice, Step, Trial};

/// The calibration's steps and trials, and the rate chosen from them.
type Calibration = (Vec<Step>, Vec<Trial>, Choice);
use phase::{Audit, Figures};
use shop::Shop;

/// Options of `loadgen sellout`.
#[derive(Debug, Clone, Args)]
pub struct SelloutArgs {
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

    /// Seats of each sale's show (rows of 100).
    #[arg(long, default_value_t = 10_000)]
    pub seats: usize,

    /// Buyers of each sale; all join the waiting room before it opens.
    #[arg(long, default_value_t = 5_000)]
    pub buyers: usize,

    /// A buyer wants 1..=this many adjacent seats.
    #[arg(long, default_value_t = 4)]
    pub max_group: u16,

    /// Share of payments the sandbox gateway turns into faults (timeouts,
    /// lost successes, 5xx).
    #[arg(long, default_value_t = 0.02)]
    pub fault_rate: f64,

    /// The purchase p99 the admission rate must keep, ms.
    #[arg(long, default_value_t = 50.0)]
    pub purchase_p99_goal_ms: f64,

    /// Admit at this rate (buyers/s) instead of calibrating.
    #[arg(long)]
    pub admission_rate: Option<f64>,

    /// Concurrency steps of the calibration, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    pub calibration_steps: Vec<usize>,

    /// Length of each calibration step, seconds.
    #[arg(long, default_value_t = 4.0)]
    pub calibration_secs: f64,

    /// Requests in flight at most (buyers wait for a slot).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Longest wait between two waiting-room polls of a buyer, ms. Buyers
    /// poll when the edge tells them to (`refresh_after_s`, up to a third
    /// of the grace, 10 s), as the buyer's page does; a lower cap makes
    /// them poll faster than told.
    #[arg(long, default_value_t = 10_000)]
    pub max_poll_ms: u64,

    /// Longest a sale runs after opening, seconds.
    #[arg(long, default_value_t = 900)]
    pub max_sale_secs: u64,

    /// How long a hold keeps its seats (the core's REGION_HOLD_TTL_SECS):
    /// a hold whose buyer vanished comes back to the sale after this.
    #[arg(long, default_value_t = 120)]
    pub hold_ttl_secs: u32,

    /// The edge, the processes and the database of the run.
    #[command(flatten)]
    pub run: EdgeRunArgs,
}

/// The bench city (routed by the edge to the run's region core).
const CITY: &str = "lgbench";
/// Seats per row.
const PER_ROW: u16 = 100;
/// How often the core reconciles during the sale, and how old a payment
/// must be: a buyer's unknown outcome is settled in seconds, so its seats
/// come back to the sale while buyers are still there.
const RECONCILE_INTERVAL_SECS: u64 = 5;
const RECONCILE_GRACE: Duration = Duration::from_secs(3);
/// Lifetime of a waiting-room pass and the grace of a silent waiter.
const PASS_TTL_SECS: u32 = 1800;
const GRACE_SECS: u32 = 30;

/// The report: the sale through the edge at the top, the same figures
/// without the edge under `direct`.
#[derive(Debug, Clone, Serialize)]
pub struct SelloutReport {
    /// `"sellout"`.
    pub bench: &'static str,
    /// The sale through the edge.
    #[serde(flatten)]
    pub edge: Figures,
    /// The same sale straight at the region core.
    pub direct: Figures,
    /// The purchase p99 the admission rates were chosen to keep, ms.
    pub purchase_p99_goal_ms: f64,
    /// Share of payments turned into faults.
    pub fault_rate: f64,
    /// Largest group a buyer wants.
    pub max_group: u16,
    /// Whole run, seconds.
    pub elapsed_s: f64,
    /// Every invariant held in both sales.
    pub invariants_ok: bool,
}

impl SelloutReport {
    /// A few readable lines for stderr.
    pub fn summary(&self) -> String {
        let line = |name: &str, f: &Figures| {
            format!(
                "{name}: {} of {} seats to {} buyers in {} s ({} tickets/s); purchase p50 {} ms, p99 {} ms; queue wait p50 {} s, p99 {} s; oversold {}, unsold {}, double-booked {}, money lost {}",
                f.tickets_sold,
                f.seats,
                f.buyers,
                f.seconds_to_sell_out.map_or("n/a".into(), |s| s.to_string()),
                f.tickets_per_s,
                f.purchase_p50_ms,
                f.purchase_p99_ms,
                f.queue_wait_p50_s.map_or("n/a".into(), |s| s.to_string()),
                f.queue_wait_p99_s.map_or("n/a".into(), |s| s.to_string()),
                f.oversold,
                f.unsold_at_end,
                f.double_booked,
                f.money_lost
            )
        };
        format!(
            "sellout: through the edge, admitting {} buyers/s ({}); without it, {} buyers/s ({})\n{}\n{}",
            self.edge.admission_rate_per_s,
            self.edge.admission_rate_why,
            self.direct.admission_rate_per_s,
            self.direct.admission_rate_why,
            line("through the edge", &self.edge),
            line("without the edge", &self.direct)
        )
    }

    /// Every invariant of one sale.
    fn sale_ok(f: &Figures) -> bool {
        f.oversold == 0 && f.unsold_at_end == 0 && f.double_booked == 0 && f.money_lost == 0
    }
}

/// Entry point of `loadgen sellout`.
pub async fn run(args: SelloutArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let r = measure(args).await?;
    report::emit(&r, json, &r.summary(), r.invariants_ok)
}

/// Runs the benchmark and returns its report (the CI's short form calls
/// this and checks the invariants itself).
pub async fn measure(args: SelloutArgs) -> anyhow::Result<SelloutReport> {
    validate(&args)?;
    crate::server::ensure_binaries(&["region-core", "sandbox-gateway"])?;
    crate::server::ensure_edge_build(&args.run.functions_dir)?;
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
    result
}

fn validate(args: &SelloutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seats >= usize::from(PER_ROW) && args.buyers >= 1,
        "--seats must be at least {PER_ROW} and --buyers at least 1"
    );
    anyhow::ensure!((1..=4).contains(&args.max_group), "--max-group must be 1-4");
    anyhow::ensure!(
        (0.0..=0.5).contains(&args.fault_rate),
        "--fault-rate must be 0-0.5"
    );
    anyhow::ensure!(
        args.admission_rate
            .is_none_or(|r| r > 0.0 && r <= 100_000.0),
        "--admission-rate must be above 0 and at most 100000"
    );
    anyhow::ensure!(
        !args.calibration_steps.is_empty()
            && args.calibration_steps.iter().all(|c| (1..=512).contains(c))
            && args.calibration_secs > 0.0,
        "--calibration-steps must be 1-512 each, --calibration-secs above 0"
    );
    anyhow::ensure!(
        args.concurrency >= 1 && args.hold_ttl_secs >= 30,
        "--concurrency must be at least 1 and --hold-ttl-secs at least 30"
    );
    anyhow::ensure!(
        u64::from(GRACE_SECS) * 1000 > 2 * args.max_poll_ms,
        "--max-poll-ms must stay well below {GRACE_SECS} s, or polling buyers would be dropped"
    );
    Ok(())
}

async fn with_world(
    args: &SelloutArgs,
    db: &FreshDatabase,
    tag: &str,
    key_prefix: &str,
    streams: &str,
    shows: &mut Vec<uuid::Uuid>,
) -> anyhow::Result<SelloutReport> {
    let core_env = [
        ("REGION_HOLD_TTL_SECS", args.hold_ttl_secs.to_string()),
        (
            "REGION_RECONCILE_INTERVAL_SECS",
            RECONCILE_INTERVAL_SECS.to_string(),
        ),
        (
            "REGION_RECONCILE_GRACE_SECS",
            RECONCILE_GRACE.as_secs().to_string(),
        ),
        ("REGION_REFUND_POLL_MS", "100".into()),
        ("REGION_REFUND_BACKOFF_BASE_MS", "100".into()),
        ("REGION_REFUND_BACKOFF_MAX_SECS", "1".into()),
    ];
    let services = EdgeWorld::start(&EdgeWorldSpec {
        world: &args.world,
        signing: &args.signing,
        database_url: &db.url,
        city: CITY,
        key_prefix,
        streams,
        tag,
        fault_rate: args.fault_rate,
        core_env: core_env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        run: &args.run,
    })
    .await?;
    let result = bench(args, &services, &db.url, tag, shows).await;
    services.stop().await;
    result
}

/// What every phase uses.
struct Run<'a> {
    args: &'a SelloutArgs,
    services: &'a EdgeWorld,
    db_url: &'a str,
    edge_api: Api,
    region: Api,
    minter: Minter,
    op: String,
    rows: Vec<String>,
}

/// The run's steps in order: the catalog, the sale without the edge, the
/// sale through it.
async fn bench(
    args: &SelloutArgs,
    services: &EdgeWorld,
    db_url: &str,
    tag: &str,
    shows: &mut Vec<uuid::Uuid>,
) -> anyhow::Result<SelloutReport> {
    let started = Instant::now();
    let edge_api = Api::edge(services.edge.url(), CITY)?;
    let region = Api::new(services.core.url())?;
    edge::wait_healthy(&edge_api, Duration::from_secs(15)).await?;
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;
    let rows_n = args.seats.div_ceil(usize::from(PER_ROW));
    let mut catalog = BenchCatalog::create(&edge_api, &op, rows_n, PER_ROW, tag).await?;
    let run = Run {
        args,
        services,
        db_url,
        edge_api,
        region,
        minter,
        op,
        rows: (0..rows_n).map(row_label).collect(),
    };

    // The region's capacity straight, and as buyers reach it through the
    // edge: each sale admits at what its own path was measured to take.
    let direct = run.sale(Path::Region, &mut catalog, shows, tag).await?;
    eprintln!("loadgen: without the edge: {direct:?}");
    let edge = run.sale(Path::Edge, &mut catalog, shows, tag).await?;

    let invariants_ok = SelloutReport::sale_ok(&edge) && SelloutReport::sale_ok(&direct);
    Ok(SelloutReport {
        bench: "sellout",
        edge,
        direct,
        purchase_p99_goal_ms: args.purchase_p99_goal_ms,
        fault_rate: args.fault_rate,
        max_group: args.max_group,
        elapsed_s: r2(started.elapsed().as_secs_f64()),
        invariants_ok,
    })
}

/// The way buyers reach the region core in a sale.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// Straight (a pacer stands in for the waiting room).
    Region,
    /// Through the edge and its waiting room.
    Edge,
}

impl Run<'_> {
    /// One sale through `path`: a fresh flash-sale show, its rate
    /// (calibrated through the same path), the sell-out, its figures.
    async fn sale(
        &self,
        path: Path,
        catalog: &mut BenchCatalog,
        shows: &mut Vec<uuid::Uuid>,
        tag: &str,
    ) -> anyhow::Result<Figures> {
        match path {
            Path::Region => {
                let rate = self
                    .admission_rate(&self.region, catalog, shows, tag, "region")
                    .await?;
                let show = catalog
                    .new_show(&self.region, &self.op, SaleMode::FlashSale)
                    .await?;
                shows.push(show.id.0);
                let per_s = rate.2.admission_rate_per_s;
                let mut figures = self.direct(&show.id.to_string(), per_s, tag).await?;
                figures.set_admission(rate);
                Ok(figures)
            }
            Path::Edge => self.through_edge(catalog, shows, tag).await,
        }
    }

    /// The admission rate for a sale through `api` (the region core, or
    /// the edge): `--admission-rate` if given, else calibrated.
    async fn admission_rate(
        &self,
        api: &Api,
        catalog: &mut BenchCatalog,
        shows: &mut Vec<uuid::Uuid>,
        tag: &str,
        path: &str,
    ) -> anyhow::Result<Calibration> {
        let r = match self.args.admission_rate {
            Some(rate) => (
                Vec::new(),
                Vec::new(),
                Choice {
                    admission_rate_per_s: rate,
                    why: "given with --admission-rate".into(),
                    goal_met: false,
                },
            ),
            None => self.calibrate(api, catalog, shows, tag, path).await?,
        };
        eprintln!(
            "loadgen: admission rate through the {path}: {} buyers/s: {}",
            r.2.admission_rate_per_s, r.2.why
        );
        Ok(r)
    }

    /// Steps of rising concurrency through `api`, each on a fresh show,
    /// until one's purchase p99 is over twice the goal (the capacity);
    /// then trials of open arrivals at falling shares of it, each on a
    /// fresh show, until one keeps the goal.
    async fn calibrate(
        &self,
        api: &Api,
        catalog: &mut BenchCatalog,
        shows: &mut Vec<uuid::Uuid>,
        tag: &str,
        path: &str,
    ) -> anyhow::Result<Calibration> {
        let target = calibrate::Target {
            api,
            minter: &self.minter,
            tag: format!("lgsell-cal-{path}-{tag}"),
            admission_key: &self.services.admission_key,
            rows: &self.rows,
            per_row: PER_ROW,
            max_group: self.args.max_group,
        };
        // Capacity is measured without faults: a hung charge holds no
        // connection and costs only its buyer (ADR 0013), but in a closed
        // loop it would stall the step's buyer and understate the rate.
        let gateway = self.gateway()?;
        gateway.set_fault_rate(0.0).await?;
        let mut steps = Vec::new();
        for &c in &self.args.calibration_steps {
            let show = self.calibration_show(catalog, shows).await?;
            let step =
                calibrate::measure(&target, &show, c, self.args.calibration_secs, "lgsell-cal")
                    .await;
            eprintln!("loadgen: calibration through the {path}: {step:?}");
            let over = step.purchase_p99_ms > 2.0 * self.args.purchase_p99_goal_ms;
            steps.push(step);
            if over {
                break;
            }
        }
        let capacity = calibrate::capacity(&steps)
            .context("the calibration booked nothing: is the region core healthy?")?;
        let mut trials = Vec::new();
        for rate in calibrate::trial_rates(capacity) {
            let show = self.calibration_show(catalog, shows).await?;
            let trial = calibrate::trial(
                &target,
                &show,
                rate,
                self.args.calibration_secs,
                "lgsell-cal",
            )
            .await;
            eprintln!("loadgen: trial through the {path}: {trial:?}");
            let met = trial.bookings > 0 && trial.purchase_p99_ms <= self.args.purchase_p99_goal_ms;
            trials.push(trial);
            if met {
                break;
            }
        }
        gateway.set_fault_rate(self.args.fault_rate).await?;
        // The calibration's payments settle before the sale starts.
        self.drain_payments().await;
        let choice = calibrate::choose(&trials, capacity, self.args.purchase_p99_goal_ms)
            .context("no trial booked anything: is the region core healthy?")?;
        Ok((steps, trials, choice))
    }

    /// A fresh flash-sale show for one calibration step or trial (its
    /// buyers must not meet the seats another one took); its id.
    async fn calibration_show(
        &self,
        catalog: &mut BenchCatalog,
        shows: &mut Vec<uuid::Uuid>,
    ) -> anyhow::Result<String> {
        let show = catalog
            .new_show(&self.region, &self.op, SaleMode::FlashSale)
            .await?;
        shows.push(show.id.0);
        Ok(show.id.to_string())
    }

    fn shop(&self, crowd: Arc<crate::crowd::Crowd>, api: Api, show: &str) -> Shop {
        Shop {
            crowd,
            board: SharedBoard::new(api, show),
            show: show.to_owned(),
            max_group: usize::from(self.args.max_group),
            key_prefix: "lgsell".into(),
            purchases: Mutex::new(crate::openloop::micros_histogram()),
        }
    }

    fn gateway(&self) -> anyhow::Result<testkit::gateway::Gateway> {
        testkit::gateway::Gateway::new(
            self.services.gateway.url(),
            sandbox_gateway::DEFAULT_API_KEY,
        )
    }

    fn crowd(&self, show: &str) -> Arc<crate::crowd::Crowd> {
        crate::crowd::Crowd::new(crate::crowd::Plan {
            city: CITY.to_owned(),
            show: show.to_owned(),
            rows: self.rows.clone(),
            per_row: PER_ROW,
            max_group: self.args.max_group,
            hold_tries: 1,
            keep_unpaid: 0,
            poll_cap: Duration::from_millis(self.args.max_poll_ms),
            concurrency: self.args.concurrency,
            key_prefix: "lgsell".into(),
        })
    }

    /// The sale straight at the region core, buyers admitted by a pacer.
    async fn direct(&self, show: &str, rate: f64, tag: &str) -> anyhow::Result<Figures> {
        let buyers = crate::crowd::Buyer::many(
            self.args.buyers,
            &format!("lgsell-d-{tag}"),
            5,
            &self.minter,
            &self.region,
        )?;
        let crowd = self.crowd(show);
        let opens = Instant::now() + Duration::from_secs(1);
        let opens_at_ms = crate::crowd::unix_ms() + 1000;
        crowd.set_deadline(opens + Duration::from_secs(self.args.max_sale_secs));
        let shop = Arc::new(self.shop(crowd.clone(), self.region.clone(), show));
        eprintln!(
            "loadgen: without the edge: {} buyers, {} seats, admitted at {rate}/s",
            buyers.len(),
            self.args.seats
        );
        let records = phase::paced(
            shop.clone(),
            buyers,
            rate,
            opens,
            opens_at_ms,
            Arc::from(self.services.admission_key.as_str()),
            i64::from(PASS_TTL_SECS),
        )
        .await;
        self.finish(show, &records, opens_at_ms, &shop, &crowd)
            .await
    }

    /// The sale through the edge: everyone joins the waiting room and
    /// waits there, polling, while the rate is calibrated through the
    /// edge (so the steps and trials find the edge as busy with the queue
    /// as the sale will), then the room opens at that rate.
    async fn through_edge(
        &self,
        catalog: &mut BenchCatalog,
        shows: &mut Vec<uuid::Uuid>,
        tag: &str,
    ) -> anyhow::Result<Figures> {
        let show = catalog
            .new_show(&self.edge_api, &self.op, SaleMode::FlashSale)
            .await?;
        shows.push(show.id.0);
        let show = show.id.to_string();
        let mut sale = SaleSettings {
            city: CITY.to_owned(),
            opens_at: edge::rfc3339(Utc::now() + ChronoDuration::hours(1)),
            // Until calibrated; nobody is admitted before the opening.
            rate_per_sec: 1.0,
            pass_ttl_s: PASS_TTL_SECS,
            grace_s: GRACE_SECS,
        };
        edge::put_sale(&self.edge_api, &self.op, &show, &sale).await?;
        let buyers = crate::crowd::Buyer::many(
            self.args.buyers,
            &format!("lgsell-e-{tag}"),
            5,
            &self.minter,
            &self.edge_api,
        )?;
        let crowd = self.crowd(&show);
        let joins = crowd.join_all(&buyers).await;
        let joined = joins.iter().filter(|j| j.is_ok()).count();
        eprintln!(
            "loadgen: through the edge: {joined}/{} buyers joined the waiting room",
            buyers.len()
        );
        let board_api = self.edge_api.at_ip(&edge::client_ip(self.args.buyers + 1));
        let shop = Arc::new(self.shop(crowd.clone(), board_api, &show));
        let joined_buyers: Vec<_> = buyers
            .into_iter()
            .zip(&joins)
            .filter(|(_, j)| j.is_ok())
            .map(|(b, _)| b)
            .collect();
        let queue = tokio::spawn(phase::queued(shop.clone(), crowd.clone(), joined_buyers));
        // The buyers poll until the deadline: if the sale cannot open, it
        // is now, so they stop.
        let opened = async {
            let rate = self
                .admission_rate(&self.edge_api, catalog, shows, tag, "edge")
                .await?;
            let opens = (Utc::now() + ChronoDuration::seconds(2)).trunc_subsecs(0);
            sale.opens_at = edge::rfc3339(opens);
            sale.rate_per_sec = rate.2.admission_rate_per_s;
            edge::put_sale(&self.edge_api, &self.op, &show, &sale)
                .await
                .context("opening the sale")?;
            anyhow::Ok((rate, opens.timestamp_millis()))
        }
        .await;
        let (rate, opens_at_ms) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                crowd.set_deadline(Instant::now());
                let _ = queue.await;
                return Err(e);
            }
        };
        let until_open =
            Duration::from_millis((opens_at_ms - crate::crowd::unix_ms()).max(0) as u64);
        crowd.set_deadline(
            Instant::now() + until_open + Duration::from_secs(self.args.max_sale_secs),
        );
        let records = queue.await.context("the queued buyers' task")?;
        let mut figures = self
            .finish(&show, &records, opens_at_ms, &shop, &crowd)
            .await?;
        figures.set_admission(rate);
        Ok(figures)
    }

    /// The drain after a sale, then its audit and figures.
    async fn finish(
        &self,
        show: &str,
        records: &[crate::crowd::Record],
        opens_at_ms: i64,
        shop: &Shop,
        crowd: &crate::crowd::Crowd,
    ) -> anyhow::Result<Figures> {
        let drained_at = Instant::now();
        eprintln!("loadgen: last buyer done; draining (reconciliation, the last holds)");
        self.drain_payments().await;
        let show_id: uuid::Uuid = show.parse()?;
        self.wait_for_no_holds(show_id).await?;
        let drain = drained_at.elapsed();
        let pool = invariants::connect(self.db_url).await?;
        let seats = show_seats(&pool, show_id).await;
        let bookings = invariants::audit_bookings(&pool, Shows::Only(&[show_id])).await;
        pool.close().await;
        let (seats, bookings) = (seats?, bookings?);
        let ledger = self.gateway()?.ledger().await?;
        let money = MoneyAudit::of(&ledger, &CoreRecords::load_url(self.db_url).await?);
        let audit = Audit {
            seats,
            seats_booked: bookings.seats_booked,
            double_booked: bookings.double_booked(),
            money_lost: money.money_lost,
        };
        let purchases = crate::crowd::locked(&shop.purchases).clone();
        Ok(phase::figures(
            records,
            opens_at_ms,
            &purchases,
            &crowd.take_stats(),
            audit,
            drain,
        ))
    }

    /// Reconciliation until it finds nothing, then the refunds it began.
    async fn drain_payments(&self) {
        let report = checkout_bench::reconcile(&self.region, &self.op, RECONCILE_GRACE, |e| {
            eprintln!("loadgen: warning: {e}");
        })
        .await;
        eprintln!("loadgen: reconciliation: {report:?}");
        if let Err(e) = checkout_bench::wait_for_refunds(self.db_url, Duration::from_secs(60)).await
        {
            eprintln!("loadgen: warning: waiting for refunds: {e:#}");
        }
    }

    /// Waits until no hold of `show` is live (paid, released or expired;
    /// at most the hold TTL and a sweep).
    async fn wait_for_no_holds(&self, show: uuid::Uuid) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(self.db_url).await?;
        let until = Instant::now() + Duration::from_secs(u64::from(self.args.hold_ttl_secs) + 10);
        loop {
            let (live,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM holds WHERE show_id = $1 AND state = 'ACTIVE'",
            )
            .bind(show)
            .fetch_one(&mut conn)
            .await?;
            if live == 0 || Instant::now() >= until {
                if live > 0 {
                    eprintln!("loadgen: warning: {live} holds still live after the drain");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let _ = conn.close().await;
        Ok(())
    }
}

/// Seats of a show, from Postgres.
async fn show_seats(pool: &sqlx::PgPool, show: uuid::Uuid) -> anyhow::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM show_seats WHERE show_id = $1")
        .bind(show)
        .fetch_one(pool)
        .await?;
    Ok(n)
}
