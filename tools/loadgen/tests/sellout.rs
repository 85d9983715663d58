//! The sell-out benchmark's short form, run by CI: a 1,000-seat show sold
//! out to 500 buyers, once straight at the region core and once through
//! the edge's waiting room in workerd, with 2 % gateway faults, the
//! admission rate calibrated from the region's measured capacity. The
//! invariants are checked here; the figures are the benchmark's
//! (`loadgen sellout`, docs/BENCHMARKS.md), never asserted.
//!
//! Needs what scripts/test.sh provides: Postgres and Redis (TEST_* URLs),
//! the workspace's binaries next to the test's (`cargo build --bins`) and
//! the built Worker (scripts/build-edge.sh).

use clap::Parser;
use loadgen::sellout::{measure, phase::Figures, SelloutArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SelloutArgs,
}

fn check(name: &str, f: &Figures) {
    assert_eq!(f.oversold, 0, "{name}: seats sold beyond the show's");
    assert_eq!(f.double_booked, 0, "{name}: seats sold twice");
    assert_eq!(
        f.money_lost, 0,
        "{name}: charges with neither booking nor refund"
    );
    assert_eq!(f.unsold_at_end, 0, "{name}: seats left unsold: {f:?}");
    assert!(f.sold_out && f.seats == 1000, "{name}: {f:?}");
    // Every buyer's sale ended in a known way.
    assert_eq!(f.outcomes.get("failed"), None, "{name}: {:?}", f.outcomes);
    assert!(
        f.admitted > 0 && f.queue_wait_p99_s.is_some() && f.seconds_to_sell_out.is_some(),
        "{name}: {f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_seat_show_sells_out_once_with_and_without_the_edge() {
    let db = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let cli = Cli::try_parse_from([
        "sellout",
        "--admin-database-url",
        &db,
        "--redis-url",
        &redis,
        "--seats",
        "1000",
        "--buyers",
        "500",
        "--calibration-steps",
        "1,4",
        "--calibration-secs",
        "2",
        "--hold-ttl-secs",
        "30",
        "--max-sale-secs",
        "300",
    ])
    .expect("the short form's arguments parse");
    let report = measure(cli.args).await.expect("the sell-out runs");
    eprintln!("{}", report.summary());
    check("without the edge", &report.direct);
    check("through the edge", &report.edge);
    for f in [&report.direct, &report.edge] {
        assert!(
            f.admission_rate_per_s > 0.0
                && !f.calibration.is_empty()
                && !f.calibration_trials.is_empty(),
            "the rates were calibrated: {f:?}"
        );
    }
    assert!(report.invariants_ok);
}
