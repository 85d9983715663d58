//! `loadgen isolation --target mum=URL[,URL…] --target nyc=URL[,URL…]`:
//! the same two loads against a running deployment (a staging shard per
//! city, or `scripts/up.sh`'s) instead of shards of its own. Nothing is
//! killed there: `nyc` runs alone, then `mum`'s sale runs at capacity
//! beside it, and the report gives each city's figures and `nyc`'s p99
//! alone and during the sale. Given a city's database
//! (`--audit-database`), its holds are audited afterwards.

use super::report::{build_targets_report, TargetsMeasured};
use super::{nyc_request, prepare, start_buyers, IsolationArgs, Prepared, Sale, SaleEvent};
use crate::openloop;
use anyhow::Context;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::invariants::{self, Shows};

/// `CITY=URL[,URL…]`: a city and its replicas' URLs (or its database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CityUrls {
    /// The city code.
    pub city: String,
    /// One URL or more, in order.
    pub urls: Vec<String>,
}

impl FromStr for CityUrls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (city, urls) = s
            .split_once('=')
            .ok_or_else(|| format!("expected CITY=URL[,URL…], got {s:?}"))?;
        let city = city.trim().to_ascii_lowercase();
        if city.is_empty() || !city.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(format!("{city:?} is not a city code (letters only)"));
        }
        let urls: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(format!("no URL for {city}"));
        }
        Ok(Self { city, urls })
    }
}

/// The URLs given for `city`.
fn urls_of<'a>(list: &'a [CityUrls], city: &str) -> Option<&'a [String]> {
    list.iter().find(|t| t.city == city).map(|t| &t.urls[..])
}

/// Entry point of the targets mode.
pub(super) async fn run(args: &IsolationArgs) -> anyhow::Result<ExitCode> {
    let mum = urls_of(&args.targets, "mum").context("--target mum=URL[,URL…] is missing")?;
    let nyc = urls_of(&args.targets, "nyc").context("--target nyc=URL[,URL…] is missing")?;
    if let Some(other) = args
        .targets
        .iter()
        .find(|t| t.city != "mum" && t.city != "nyc")
    {
        anyhow::bail!(
            "--target {}: this bench runs mum's sale beside nyc's steady load",
            other.city
        );
    }
    let nyc_secs = args.alone_secs + args.sale_secs;
    let Prepared {
        minter,
        mum_show,
        nyc_load,
        schedule,
    } = prepare(args, mum, nyc, nyc_secs).await?;
    let sale = Arc::new(Sale {
        route: super::route::CityRoute::new(mum.to_vec(), args.buyers)?,
        hold_path: format!("/v1/shows/{mum_show}/holds"),
        rows: nyc_load.rows.clone(),
        start: Instant::now(),
        stop: AtomicBool::new(false),
    });
    let start = sale.start;
    let load = nyc_load.clone();
    let nyc_run = tokio::spawn(openloop::run(schedule.lasting(nyc_secs), move |i| {
        nyc_request(load.clone(), i)
    }));
    eprintln!(
        "loadgen: nyc alone at {:.0}/s for {}s ({})",
        args.nyc_rate,
        args.alone_secs,
        nyc.join(",")
    );
    tokio::time::sleep_until((start + Duration::from_secs(args.alone_secs)).into()).await;
    let sale_start = start.elapsed();
    eprintln!(
        "loadgen: mum's sale: {} buyers on one show for {}s ({})",
        args.buyers,
        args.sale_secs,
        mum.join(",")
    );
    let buyers = start_buyers(&minter, &sale, args.buyers, mum.len())?;
    tokio::time::sleep_until((start + Duration::from_secs(nyc_secs)).into()).await;
    sale.stop.store(true, Ordering::Relaxed);
    let mut events: Vec<SaleEvent> = Vec::new();
    for b in buyers {
        events.extend(b.await.context("a buyer panicked")?);
    }
    let sale_end = start.elapsed();
    let nyc_run = nyc_run.await.context("nyc's load panicked")?;
    let audit = audit(args).await?;
    let report = build_targets_report(
        args,
        mum,
        nyc,
        TargetsMeasured {
            sale_start,
            sale_end,
            events,
            nyc_run,
            audit,
            load_avg: crate::checkout_bench::load_avg_1m().await,
        },
    );
    let ok = report.double_booked.unwrap_or(0) == 0 && report.partial_holds.unwrap_or(0) == 0;
    crate::report::emit(&report, args.json, &report.summary(), ok)
}

/// Seats in two live holds and partial holds per audited city.
pub(super) struct TargetsAudit {
    /// Cities whose database was audited.
    pub(super) cities: Vec<String>,
    pub(super) double_booked: i64,
    pub(super) partial_holds: i64,
}

async fn audit(args: &IsolationArgs) -> anyhow::Result<TargetsAudit> {
    let mut out = TargetsAudit {
        cities: Vec::new(),
        double_booked: 0,
        partial_holds: 0,
    };
    for db in &args.audit_databases {
        eprintln!("loadgen: auditing {}'s holds", db.city);
        let pool = connect_patiently(&db.urls[0])
            .await
            .with_context(|| format!("connecting to {}'s database", db.city))?;
        let report = invariants::check_postgres(&pool, Shows::All).await;
        pool.close().await;
        let report = report?;
        out.double_booked += report.double_held();
        out.partial_holds += report.partial_holds;
        out.cities.push(db.city.clone());
    }
    Ok(out)
}

/// Connects for the audit, trying for up to 30 s: right after a sale a
/// shared Postgres may have no connection to spare until the shard's pools
/// give their idle ones back.
async fn connect_patiently(url: &str) -> anyhow::Result<sqlx::PgPool> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match invariants::connect(url).await {
            Ok(pool) => return Ok(pool),
            Err(e) if Instant::now() < until => {
                eprintln!("loadgen: the database is busy ({e:#}); trying again in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_city_target_is_a_code_and_its_replicas() {
        let t: CityUrls = "mum=http://127.0.0.1:8080/, http://127.0.0.1:8081"
            .parse()
            .expect("parses");
        assert_eq!(t.city, "mum");
        assert_eq!(t.urls, ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]);
        for bad in ["mum", "mum=", "=http://x", "m1=http://x"] {
            assert!(bad.parse::<CityUrls>().is_err(), "{bad}");
        }
    }
}
