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
//! - `loadgen demo` seeds two cities through the edge and runs a small,
//!   readable flash sale through its waiting room, checking that users are
//!   admitted in order and no seat is sold twice, shows the queue cannot
//!   be bypassed, then walks one buyer through a purchase, a replay and a
//!   refund.
//!
//! Module map: `api` (HTTP client and tokens, directly or through the
//! edge), `seed` (catalog through the operator API), `server` (fresh
//! database + in-process region core, sandbox gateway and Upstash
//! gateway), `edge` (the Worker in workerd, its waiting room's JSON,
//! forged passes), `openloop` (the open-model scheduler), `holds_bench`,
//! `checkout_bench` and `flash_bench` (the benchmarks), `crowd` (simulated
//! buyers in a flash sale through the edge), `purchase` (how a
//! buyer's client pays: idempotency keys and retries), `gateway` (the sandbox gateway's
//! ledger and controls), `money` (the ledger-vs-Postgres audit),
//! `baselines` (redis-benchmark and pgbench), `checks` (Postgres and Redis
//! inspection and cleanup), `report` (the JSON lines), `demo`.

mod api;
mod baselines;
mod checkout_bench;
mod checks;
mod crowd;
mod demo;
mod edge;
mod flash_bench;
mod gateway;
mod holds_bench;
mod money;
mod openloop;
mod purchase;
mod report;
mod seed;
mod server;

use clap::{Parser, Subcommand};
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
    /// Seed two demo cities and run a small flash sale against a running
    /// region core, check that no seat was held twice, then walk one buyer
    /// through a purchase, a replay, a cancellation and its refund.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The in-process region core and sandbox gateway log through
    // `tracing`; with RUST_LOG set their logs go to stderr (next to the
    // progress lines), without it they are dropped and stdout stays one
    // JSON line.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // The client runtime is built by hand: `holds` sizes it with
    // --client-threads so the load generator does not take every core from
    // the server it measures (the in-process server has its own runtime).
    let threads = match &cli.command {
        Command::Holds(a) => a.client_threads,
        Command::Checkout(a) => a.client_threads,
        Command::FlashSale(a) => a.client_threads,
        Command::Demo(_) => 2,
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
            Command::Demo(args) => demo::run(args).await,
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
