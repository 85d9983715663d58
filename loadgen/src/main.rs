//! `loadgen`: the flash-sale simulator operators run before a sale.
//!
//! - `loadgen holds` benchmarks seat holds over HTTP (open model, latency
//!   from the scheduled send time) and measures, in the same invocation,
//!   what Redis and Postgres alone can do for the same work;
//! - `loadgen demo` seeds two cities and runs a small, readable flash sale
//!   against a running region core, checking that no seat is sold twice.
//!
//! Module map: `api` (HTTP client and tokens), `seed` (catalog through the
//! operator API), `server` (fresh database + in-process region core),
//! `openloop` (the open-model scheduler), `holds_bench` (the benchmark),
//! `baselines` (redis-benchmark and pgbench), `checks` (Postgres and Redis
//! inspection and cleanup), `report` (the JSON line), `demo`.

mod api;
mod baselines;
mod checks;
mod demo;
mod holds_bench;
mod openloop;
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
    /// Seed two demo cities and run a small flash sale against a running
    /// region core, then check that no seat was held twice.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The client runtime is built by hand: `holds` sizes it with
    // --client-threads so the load generator does not take every core from
    // the server it measures (the in-process server has its own runtime).
    let threads = match &cli.command {
        Command::Holds(a) => a.client_threads,
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
