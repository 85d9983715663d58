//! `loadgen checkins`: door scanning throughput. A release region core
//! sells `--tickets` seats (bookings of up to 10), then `--gates`
//! concurrent scanners check every ticket in (`POST
//! /v1/shows/{id}/checkins`), then scan them all again (each a 409
//! `already_checked_in`). Baseline in the same run: the signature check
//! alone (`shared::ticket::KeyRing::verify`) on this machine, one thread.
//! Invariant: every ticket checked in exactly once.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use shared::api::{CreateHold, Hold, SaleMode};
use shared::ticket::{KeyRing, PublicKey};
use shared::token::Role;
use testkit::api::{Api, Method, Minter};
use testkit::db::FreshDatabase;

use crate::purchase::{self, Paid, Patience};
use crate::seed::BenchCatalog;
use crate::server::{RegionCoreConfig, Service, WorldArgs};

/// Options of `loadgen checkins`.
#[derive(Debug, Clone, Args)]
pub struct CheckinsArgs {
    /// Print exactly one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Tickets sold, then scanned (a multiple of 10, at most 5,000).
    #[arg(long, default_value_t = 2000)]
    pub tickets: usize,

    /// Scanners at once.
    #[arg(long, default_value_t = 16)]
    pub gates: usize,

    #[command(flatten)]
    pub signing: service_kit::SigningKey,

    #[command(flatten)]
    pub world: WorldArgs,

    /// Worker threads of the spawned region core's runtime.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,

    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
}

/// The JSON line.
#[derive(Debug, Serialize)]
pub struct CheckinsReport {
    bench: &'static str,
    tickets: usize,
    gates: usize,
    checkins_per_s: f64,
    checkin_p50_ms: f64,
    checkin_p99_ms: f64,
    /// The second pass: every scan a 409.
    repeat_scans_per_s: f64,
    repeat_p99_ms: f64,
    /// Baseline: signature checks a second, in-process, one thread.
    baseline_verify_per_s: f64,
    checked_in: usize,
    refused_first_pass: usize,
    admitted_second_pass: usize,
    rows_in_checkins: i64,
}

impl CheckinsReport {
    fn summary(&self) -> String {
        format!(
            "checkins: {} tickets, {} gates: {:.0} check-ins/s (p99 {:.1} ms), repeats {:.0}/s; signature check alone {:.0}/s; checked in {}, rows {}",
            self.tickets,
            self.gates,
            self.checkins_per_s,
            self.checkin_p99_ms,
            self.repeat_scans_per_s,
            self.baseline_verify_per_s,
            self.checked_in,
            self.rows_in_checkins
        )
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(args: CheckinsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.tickets >= 10 && args.tickets <= 5000 && args.tickets.is_multiple_of(10),
        "--tickets must be a multiple of 10 within 10..=5000"
    );
    anyhow::ensure!(args.gates >= 1, "--gates must be at least 1");
    let (admin_url, _own_postgres) = args.world.postgres()?;
    let db = FreshDatabase::create(&admin_url, "loadgen")
        .await
        .context("creating the run's database (LOADGEN_ADMIN_DATABASE_URL)")?;
    eprintln!("loadgen: fresh database {}", db.name());
    let result = with_world(&args, &db).await;
    if let Err(e) = db.drop_now().await {
        eprintln!("loadgen: warning: could not drop the fresh database: {e:#}");
    }
    let report = result?;
    let ok = report.checked_in == args.tickets
        && report.refused_first_pass == 0
        && report.admitted_second_pass == 0
        && report.rows_in_checkins == args.tickets as i64;
    crate::report::emit(&report, args.json, &report.summary(), ok)
}

async fn with_world(args: &CheckinsArgs, db: &FreshDatabase) -> anyhow::Result<CheckinsReport> {
    let config = RegionCoreConfig::new(&db.url, &args.world.redis_url, &args.signing);
    Service::with_charging_core(
        config,
        args.server_threads,
        &args.world.redis_url,
        |url, tag| async move { bench(args, &url, &db.url, &tag).await },
    )
    .await
}

/// One scan's outcome and latency.
async fn scan(api: &Api, staff: &str, show: &str, code: &str) -> anyhow::Result<(u16, Duration)> {
    let started = Instant::now();
    let r = api
        .send(
            Method::POST,
            &format!("/v1/shows/{show}/checkins"),
            Some(staff),
            None,
            Some(&serde_json::json!({ "code": code, "gate": "bench" })),
        )
        .await?;
    Ok((r.status.as_u16(), started.elapsed()))
}

/// Every code scanned once by `gates` concurrent scanners: (statuses
/// counted as (200s, others), latency histogram, seconds).
async fn pass(
    api: &Api,
    staff: &str,
    show: &str,
    codes: &Arc<Vec<String>>,
    gates: usize,
) -> anyhow::Result<((usize, usize), Histogram<u64>, f64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..gates {
        let (api, staff, show, codes, next) = (
            api.clone(),
            staff.to_owned(),
            show.to_owned(),
            codes.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut ok, mut other) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(code) = codes.get(i) else { break };
                let (status, took) = scan(&api, &staff, &show, code).await?;
                h.record(took.as_micros() as u64)?;
                if status == 200 {
                    ok += 1;
                } else {
                    other += 1;
                }
            }
            Ok::<_, anyhow::Error>((ok, other, h))
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ok, mut other) = (0, 0);
    for t in tasks {
        let (o, x, h) = t.await??;
        ok += o;
        other += x;
        all.add(h)?;
    }
    Ok(((ok, other), all, started.elapsed().as_secs_f64()))
}

async fn bench(
    args: &CheckinsArgs,
    url: &str,
    db_url: &str,
    tag: &str,
) -> anyhow::Result<CheckinsReport> {
    let api = Api::new(url)?;
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;
    let rows = args.tickets.div_ceil(50);
    let mut catalog = BenchCatalog::create(&api, &op, rows, 50, tag).await?;
    let show = catalog.new_show(&api, &op, SaleMode::Open).await?;
    let labels = catalog.labels();
    eprintln!("loadgen: selling {} tickets", args.tickets);
    let mut codes = Vec::with_capacity(args.tickets);
    for (n, chunk) in labels[..args.tickets].chunks(10).enumerate() {
        let bearer = minter.bearer(&format!("door-bench-{n}"), Role::User)?;
        let hold: Hold = api
            .post(
                &format!("/v1/shows/{}/holds", show.id),
                &bearer,
                &CreateHold {
                    seats: chunk.to_vec(),
                },
            )
            .await?;
        let paid = purchase::pay(&api, &bearer, hold.hold_id, "door", Patience::default()).await;
        let Paid::Booked { booking, .. } = paid.outcome else {
            anyhow::bail!("purchase {n} did not book");
        };
        let t: serde_json::Value = api
            .get(
                &format!("/v1/bookings/{}/tickets", booking.id),
                Some(&bearer),
            )
            .await?;
        for ticket in t["tickets"].as_array().context("tickets")? {
            codes.push(ticket["code"].as_str().context("code")?.to_owned());
        }
    }
    anyhow::ensure!(codes.len() == args.tickets, "{} codes", codes.len());

    // Baseline: the signature check alone, as many as the run scans.
    let keys: serde_json::Value = api.get("/v1/tickets/keys", None).await?;
    let keys: Vec<PublicKey> = serde_json::from_value(keys["keys"].clone())?;
    let ring = KeyRing::new(&keys).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    for code in &codes {
        ring.verify(code).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let verify_s = started.elapsed().as_secs_f64();

    let staff = minter.bearer("door-bench-staff", Role::Staff)?;
    let codes = Arc::new(codes);
    let show_id = show.id.to_string();
    eprintln!("loadgen: scanning with {} gates", args.gates);
    let ((checked_in, refused), first, first_s) =
        pass(&api, &staff, &show_id, &codes, args.gates).await?;
    eprintln!("loadgen: scanning everything again");
    let ((admitted_again, _), second, second_s) =
        pass(&api, &staff, &show_id, &codes, args.gates).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(db_url)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM checkins")
        .fetch_one(&pool)
        .await?;
    let ms = |h: &Histogram<u64>, q: f64| (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
    let n = args.tickets as f64;
    Ok(CheckinsReport {
        bench: "checkins",
        tickets: args.tickets,
        gates: args.gates,
        checkins_per_s: (n / first_s).round(),
        checkin_p50_ms: ms(&first, 0.5),
        checkin_p99_ms: ms(&first, 0.99),
        repeat_scans_per_s: (n / second_s).round(),
        repeat_p99_ms: ms(&second, 0.99),
        baseline_verify_per_s: (n / verify_s).round(),
        checked_in,
        refused_first_pass: refused,
        admitted_second_pass: admitted_again,
        rows_in_checkins: rows,
    })
}
