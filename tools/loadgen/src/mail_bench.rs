//! `loadgen mail`: how many e-mails a second the region core's mailer
//! sends into a real SMTP server (the local mail catcher), side by side
//! with the same SMTP server fed directly (the baseline: what SMTP alone
//! costs on this machine).
//!
//! 1. A fresh database, the sandbox gateway and a release region core
//!    (`REGION_SMTP_URL` at a mail catcher started for the run).
//! 2. `--bookings` real purchases by buyers whose ids are e-mail
//!    addresses; their confirmations go out through the whole path
//!    (outbox, stream, notifier, queue, mailer).
//! 3. Baseline: `--messages` copies of one of those messages sent
//!    straight to the catcher with `--workers` SMTP clients at once.
//! 4. The mailer: `--messages` confirmations queued at once (new event
//!    ids, the bookings' own events' bodies), then timed until every one
//!    is marked sent; each message is composed from the database, sent,
//!    and recorded, as in production.
//!
//! The catcher's files are then counted: every queued message arrived
//! once (`duplicates`, distinct Message-IDs).

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;
use shared::api::{CreateHold, Hold, SaleMode};
use shared::token::Role;
use sqlx::postgres::PgPoolOptions;
use testkit::api::{Api, Minter};
use testkit::db::FreshDatabase;
use testkit::mail::MailCatcher;
use uuid::Uuid;

use crate::purchase::{self, Paid, Patience};
use crate::seed::BenchCatalog;
use crate::server::{RegionCoreConfig, Service, WorldArgs};

/// Options of `loadgen mail`.
#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// Print exactly one JSON line on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Messages in each phase.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,

    /// Real purchases made first (their confirmations are the messages
    /// the queue is filled with).
    #[arg(long, default_value_t = 10)]
    pub bookings: usize,

    /// Senders at once: the region core's `REGION_MAIL_WORKERS`, and the
    /// baseline's SMTP clients.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,

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
pub struct MailReport {
    bench: &'static str,
    messages: usize,
    workers: usize,
    bookings: usize,
    /// The mailer: queued → all marked sent.
    mailer_msgs_per_s: f64,
    mailer_elapsed_s: f64,
    /// The same SMTP server fed directly.
    baseline_smtp_msgs_per_s: f64,
    baseline_elapsed_s: f64,
    ratio_vs_smtp: f64,
    /// Messages the catcher holds from the mailer (bookings + queued).
    delivered: usize,
    /// Message-IDs seen more than once among them.
    duplicates: usize,
    bytes_per_message: usize,
}

impl MailReport {
    fn summary(&self) -> String {
        format!(
            "mail: {} messages, {} workers: mailer {:.1} msg/s, SMTP alone {:.1} msg/s ({:.2}×); delivered {}, duplicates {}",
            self.messages,
            self.workers,
            self.mailer_msgs_per_s,
            self.baseline_smtp_msgs_per_s,
            self.ratio_vs_smtp,
            self.delivered,
            self.duplicates
        )
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(args: MailArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.messages >= 1, "--messages must be at least 1");
    anyhow::ensure!(
        (1..=50).contains(&args.bookings),
        "--bookings must be within 1..=50"
    );
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    let (admin_url, _own_postgres) = args.world.postgres()?;
    let db = FreshDatabase::create(&admin_url, "loadgen")
        .await
        .context("creating the run's database (LOADGEN_ADMIN_DATABASE_URL)")?;
    eprintln!("loadgen: fresh database {}", db.name());
    let catcher = MailCatcher::start().await?;
    eprintln!(
        "loadgen: mail catcher at {} (messages in {})",
        catcher.smtp_url(),
        catcher.dir().display()
    );
    let result = with_world(&args, &db, &catcher).await;
    let dir = catcher.dir().to_owned();
    catcher.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = db.drop_now().await {
        eprintln!("loadgen: warning: could not drop the fresh database: {e:#}");
    }
    let report = result?;
    let ok = report.duplicates == 0 && report.delivered == args.messages + args.bookings;
    crate::report::emit(&report, args.json, &report.summary(), ok)
}

async fn with_world(
    args: &MailArgs,
    db: &FreshDatabase,
    catcher: &MailCatcher,
) -> anyhow::Result<MailReport> {
    let config = RegionCoreConfig::new(&db.url, &args.world.redis_url, &args.signing)
        .set("REGION_SMTP_URL", catcher.smtp_url())
        .set("REGION_MAIL_WORKERS", args.workers)
        .set("REGION_MAIL_POLL_MS", 20);
    Service::with_charging_core(
        config,
        args.server_threads,
        &args.world.redis_url,
        |url, tag| async move { bench(args, &url, &db.url, catcher, &tag).await },
    )
    .await
}

async fn bench(
    args: &MailArgs,
    url: &str,
    db_url: &str,
    catcher: &MailCatcher,
    tag: &str,
) -> anyhow::Result<MailReport> {
    let api = Api::new(url)?;
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("loadgen-operator", Role::Operator)?;
    let mut catalog = BenchCatalog::create(&api, &op, 1, 50, tag).await?;
    let show = catalog.new_show(&api, &op, SaleMode::Open).await?;
    eprintln!("loadgen: {} purchases", args.bookings);
    for i in 0..args.bookings {
        let bearer = minter.bearer(&format!("mail-buyer-{i}@bench.example"), Role::User)?;
        let hold: Hold = api
            .post(
                &format!("/v1/shows/{}/holds", show.id),
                &bearer,
                &CreateHold {
                    seats: vec![format!("A{}", i + 1)],
                },
            )
            .await?;
        let paid = purchase::pay(&api, &bearer, hold.hold_id, "mail", Patience::default()).await;
        anyhow::ensure!(
            matches!(paid.outcome, Paid::Booked { .. }),
            "purchase {i} did not book"
        );
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(db_url)
        .await?;
    let sent = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outgoing_mail WHERE state = 'sent'")
            .fetch_one(&pool)
            .await
    };
    wait_until(Duration::from_secs(60), || async {
        sent().await.is_ok_and(|n| n as usize >= args.bookings)
    })
    .await
    .context("the purchases' confirmations were not sent within 60 s")?;
    let sample = catcher.messages()?.pop().context("no message arrived")?;

    eprintln!(
        "loadgen: baseline: {} messages straight to SMTP",
        args.messages
    );
    let baseline_s = baseline(args, catcher, &sample).await?;

    eprintln!(
        "loadgen: the mailer: {} messages queued at once",
        args.messages
    );
    let queued = sqlx::query(
        "INSERT INTO outgoing_mail (event_id, kind, recipient, body)
         SELECT gen_random_uuid(), m.kind, m.recipient, m.body
           FROM generate_series(1, $1) AS g(i)
           JOIN (SELECT kind, recipient, body, row_number() OVER () - 1 AS k
                   FROM outgoing_mail WHERE kind = 'booking.confirmed') m
             ON m.k = g.i % $2",
    )
    .bind(i32::try_from(args.messages)?)
    .bind(i64::try_from(args.bookings)?)
    .execute(&pool)
    .await?
    .rows_affected() as usize;
    anyhow::ensure!(
        queued == args.messages,
        "queued {queued} of {}",
        args.messages
    );
    let started = Instant::now();
    let target = args.bookings + args.messages;
    wait_until(Duration::from_secs(600), || async {
        sent().await.is_ok_and(|n| n as usize >= target)
    })
    .await
    .context("the mailer did not send every queued message within 10 minutes")?;
    let mailer_s = started.elapsed().as_secs_f64();

    // What arrived from the mailer: everything but the baseline's copies.
    let mut ids = HashSet::new();
    let (mut delivered, mut duplicates) = (0, 0);
    for raw in catcher.messages()? {
        let Some(id) = message_id(&raw) else { continue };
        if id.starts_with("<baseline-") {
            continue;
        }
        delivered += 1;
        if !ids.insert(id) {
            duplicates += 1;
        }
    }
    let per_s = |s: f64| r1(args.messages as f64 / s);
    Ok(MailReport {
        bench: "mail",
        messages: args.messages,
        workers: args.workers,
        bookings: args.bookings,
        mailer_msgs_per_s: per_s(mailer_s),
        mailer_elapsed_s: r1(mailer_s),
        baseline_smtp_msgs_per_s: per_s(baseline_s),
        baseline_elapsed_s: r1(baseline_s),
        ratio_vs_smtp: (baseline_s / mailer_s * 100.0).round() / 100.0,
        delivered,
        duplicates,
        bytes_per_message: sample.len(),
    })
}

/// Sends `sample` (with a Message-ID of its own each time) to the
/// catcher `--messages` times over `--workers` pooled SMTP clients; the
/// seconds it took (any refused send fails the run).
async fn baseline(args: &MailArgs, catcher: &MailCatcher, sample: &[u8]) -> anyhow::Result<f64> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(catcher.port())
        .build();
    let envelope = Envelope::new(
        Some("bench@bench.example".parse()?),
        vec!["buyer@bench.example".parse()?],
    )?;
    // The sample without the catcher's own envelope headers and its
    // Message-ID (each copy gets one of its own).
    let text = String::from_utf8_lossy(sample);
    let body: String = text
        .split_inclusive("\r\n")
        .filter(|l| {
            !(l.starts_with("Return-Path:")
                || l.starts_with("X-Envelope-To:")
                || l.starts_with("Message-ID:"))
        })
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.workers {
        let (transport, envelope, body, next) = (
            transport.clone(),
            envelope.clone(),
            body.clone(),
            next.clone(),
        );
        let total = args.messages;
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let raw = format!(
                    "Message-ID: <baseline-{}@bench.example>\r\n{body}",
                    Uuid::new_v4()
                );
                transport.send_raw(&envelope, raw.as_bytes()).await?;
            }
            Ok::<(), lettre::transport::smtp::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The `Message-ID` header of a raw message.
fn message_id(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Message-ID:").map(|v| v.trim().to_owned()))
}

async fn wait_until<F, Fut>(limit: Duration, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("timed out")
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
