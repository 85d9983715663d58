//! `loadgen`: the flash-sale simulator operators run before a sale.
//!
//! - `loadgen holds` benchmarks seat holds over HTTP (open model, latency
//!   from the scheduled send time) and measures, in the same invocation,
//!   what Redis and Postgres alone can do for the same work;
//! - `loadgen checkout` benchmarks whole purchases (hold, pay through a
//!   faulty sandbox gateway, cancel) and then audits the money: every
//!   charge is a booking or a refund, nothing is charged or sold twice;
//! - `loadgen flash-sale --through-edge` runs a bounded flash sale through
//!   the edge Worker in workerd (waiting room, passes, holds, checkout) and
//!   measures admission rate and order, bypass attempts, edge latency and
//!   Redis calls per edge decision;
//! - `loadgen isolation` runs two shards side by side: a flash sale at
//!   capacity in `mum` (which loses a replica, then its Redis master
//!   through Sentinel) while `nyc` serves steady traffic, and reports
//!   `nyc`'s p99 alone and during the sale, the failover times and a
//!   double-booking audit of both databases;
//! - `seatmap`, `sellout`, `mail` and `checkins`: see their doc comments
//!   below;
//!
//! Each benchmark spawns the release binaries it measures (the region
//! core, the sandbox gateway, the Upstash gateway: `cargo build --release`
//! first) against a fresh database. The demo is its own binary
//! (`tools/demo`).

use clap::{Parser, Subcommand};
use loadgen::{
    checkins_bench, checkout_bench, flash_bench, holds_bench, isolation, mail_bench, seatmap_bench,
    sellout,
};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Flash-sale simulator and benchmark driver for a region core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark seat holds (HTTP, open model) against same-run Redis and
    /// Postgres baselines; prints one JSON line with --json.
    Holds(holds_bench::HoldsArgs),
    /// Benchmark purchases (hold, checkout through a faulty sandbox
    /// gateway, cancel) and audit the money afterwards; prints one JSON
    /// line with --json.
    Checkout(checkout_bench::CheckoutArgs),
    /// A bounded flash sale through the edge Worker in workerd: users join
    /// the waiting room before it opens, are admitted at the configured
    /// rate, buy with their passes; intruders try to get round the queue.
    /// Prints one JSON line with --json.
    FlashSale(flash_bench::FlashSaleArgs),
    /// Many viewers of one show's live seat map (WebSocket), then the same
    /// viewers polling `?since=N`, then naive full-map polling, while
    /// buyers hold and release seats. Prints one JSON line with --json.
    Seatmap(seatmap_bench::SeatmapArgs),
    /// A flash sale from the queue to the last seat: the admission rate
    /// calibrated from the region's measured capacity, then a show sold
    /// out to thousands of buyers straight at the region core and again
    /// through the edge's waiting room. Prints one JSON line with --json.
    Sellout(sellout::SelloutArgs),
    /// E-mails a second from the region core's mailer into a real SMTP
    /// server (the local mail catcher), against the same server fed
    /// directly. Prints one JSON line with --json.
    Mail(mail_bench::MailArgs),
    /// Door scanning: tickets sold, then checked in by concurrent gates,
    /// then scanned again (each a 409), against the signature check
    /// alone. Prints one JSON line with --json.
    Checkins(checkins_bench::CheckinsArgs),
    /// Load across shards: a flash sale at capacity in `mum` (a replica
    /// killed, then its Redis master failed over through Sentinel) while
    /// `nyc` serves steady traffic; nyc's p99 alone and during the sale,
    /// the failover times, double bookings. Prints one JSON line with
    /// --json.
    Isolation(isolation::IsolationArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The in-process Upstash gateway logs through `tracing`; with RUST_LOG
    // set its logs go to stderr (next to the progress lines), without it
    // they are dropped and stdout stays one JSON line. The spawned
    // binaries log to their own files (named in the progress lines), at
    // RUST_LOG's level when it is set, else warn.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // The client runtime is built by hand: `holds` sizes it with
    // --client-threads so the load generator does not take every core from
    // the server it measures (a separate process, sized with
    // --server-threads).
    let threads = match &cli.command {
        Command::Holds(a) => a.client_threads,
        Command::Checkout(a) => a.client_threads,
        Command::FlashSale(a) => a.run.client_threads,
        Command::Seatmap(a) => a.client_threads,
        Command::Sellout(a) => a.run.client_threads,
        Command::Mail(a) => a.client_threads,
        Command::Checkins(a) => a.client_threads,
        Command::Isolation(a) => a.client_threads,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("loadgen-client")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Holds(args) => holds_bench::run(args).await,
            Command::Checkout(args) => checkout_bench::run(args).await,
            Command::FlashSale(args) => flash_bench::run(args).await,
            Command::Seatmap(args) => seatmap_bench::run(args).await,
            Command::Sellout(args) => sellout::run(args).await,
            Command::Mail(args) => mail_bench::run(args).await,
            Command::Checkins(args) => checkins_bench::run(args).await,
            Command::Isolation(args) => isolation::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
