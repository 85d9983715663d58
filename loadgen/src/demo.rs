//! `loadgen demo`: the README's walk-through against a running region core.
//!
//! 1. seeds two cities (Mumbai in Asia/Kolkata, New York in
//!    America/New_York), each with a venue, a 500-seat screen, movies and
//!    shows tomorrow (local date), and lists them with local start times;
//! 2. opens a fresh flash-sale show and lets simulated users (default
//!    2,000, 200 at a time) each try up to three times to hold 1-4
//!    adjacent seats;
//! 3. checks the result: no seat in two successful holds, and the live
//!    seat map agrees seat by seat with the holds that succeeded;
//! 4. releases one hold (availability goes up by its seats) and extends
//!    another (once: the second extension is refused with 409);
//! 5. walks one winner through a purchase (`walkthrough`): pay with an
//!    Idempotency-Key, the confirmed booking, a replay that charges
//!    nothing, the cancellation quote, the cancellation, the refund
//!    landing at the payment gateway, and the notifications sent.
//!
//! It needs a running region core and the payment gateway that core
//! charges through (`--gateway-url`, whose ledger it reads).
//!
//! Re-runs are safe: existing cities, venues and screens are reused,
//! tomorrow's regular shows are created only if missing, and each run gets
//! a new flash-sale show. Exits non-zero if any check fails.

mod walkthrough;

use crate::api::{failure, Api, Minter};
use crate::gateway::Gateway;
use crate::seed::{self, grid, row_label, Place};
use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Args;
use futures::StreamExt;
use rand::Rng;
use region_core::auth::Role;
use reqwest::StatusCode;
use shared::api::{Availability, CreateHold, Hold, SeatMap, Show};
use shared::{CityCode, SeatState, ShowId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `loadgen demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The region core to run against.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,

    /// Key that operator and user tokens are signed with.
    #[command(flatten)]
    pub signing: region_core::auth::SigningKey,

    /// Simulated buyers in the flash sale.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,

    /// Buyers trying at the same moment.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,

    /// Tries per buyer (a buyer whose seats were taken picks others).
    #[arg(long, default_value_t = 3)]
    pub attempts_per_user: usize,

    /// How long to wait for the target's /readyz, seconds.
    #[arg(long, default_value_t = 30)]
    pub wait_ready_secs: u64,

    /// The payment gateway the region core charges through (the demo
    /// reads its ledger to show where the money went).
    #[arg(
        long,
        env = "REGION_GATEWAY_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub gateway_url: String,

    /// The gateway's API key.
    #[arg(
        long,
        env = "REGION_GATEWAY_API_KEY",
        default_value = sandbox_gateway::DEFAULT_API_KEY
    )]
    pub gateway_api_key: String,

    /// Longest wait for the refund to land and the notifications to
    /// arrive, seconds.
    #[arg(long, default_value_t = 30)]
    pub settle_wait_secs: u64,
}

/// A demo city and what it gets.
struct CitySpec {
    code: &'static str,
    name: &'static str,
    time_zone: &'static str,
    venue: &'static str,
    screen: &'static str,
    currency: &'static str,
    /// (category, price in minor units)
    prices: [(&'static str, i64); 2],
    /// (title, minutes, language, local start "HH:MM")
    shows: [(&'static str, u16, &'static str, &'static str); 3],
}

const CITIES: [CitySpec; 2] = [
    CitySpec {
        code: "mum",
        name: "Mumbai",
        time_zone: "Asia/Kolkata",
        venue: "Harbour Lights Multiplex",
        screen: "Audi 1",
        currency: "INR",
        prices: [("PREMIUM", 45_000), ("STANDARD", 25_000)],
        shows: [
            ("Monsoon Heist", 152, "hi", "10:00"),
            ("Monsoon Heist", 152, "hi", "14:30"),
            ("The Last Local", 128, "mr", "19:45"),
        ],
    },
    CitySpec {
        code: "nyc",
        name: "New York",
        time_zone: "America/New_York",
        venue: "Hudson Street Cinemas",
        screen: "Screen 1",
        currency: "USD",
        prices: [("PREMIUM", 2_200), ("STANDARD", 1_600)],
        shows: [
            ("Brooklyn Bridges", 118, "en", "11:15"),
            ("Brooklyn Bridges", 118, "en", "16:00"),
            ("Midnight on Mercer", 134, "en", "21:30"),
        ],
    },
];

/// The demo screen: 20 rows of 25 seats; rows A-D are PREMIUM.
const ROWS: usize = 20;
const PER_ROW: u16 = 25;
/// Local start of the flash-sale show (Mumbai, tomorrow).
const FLASH_TIME: &str = "22:00";
const FLASH_TITLE: &str = "Monsoon Heist: Premiere Night";

/// Entry point of `loadgen demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.users >= 1 && args.concurrency >= 1,
        "--users and --concurrency must be positive"
    );
    let api = Api::new(&args.target)?;
    wait_ready(&api, Duration::from_secs(args.wait_ready_secs)).await?;
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("demo-operator", Role::Operator)?;

    println!("== 1. Catalog: two cities, shows tomorrow (local time) ==");
    let flash = seed_catalog(&api, &op).await?;

    println!();
    println!(
        "== 2. Flash sale: {} buyers, {} at a time, up to {} tries each, 1-4 adjacent seats ==",
        args.users, args.concurrency, args.attempts_per_user
    );
    println!(
        "   show {} — {} at {}",
        flash.id,
        flash.movie_title,
        local_time(&flash)
    );
    let sale = flash_sale(&api, &minter, &flash, &args).await?;
    sale.print(flash.seat_count);

    println!();
    println!("== 3. Checks ==");
    let mut checks = Checks::default();
    check_sale(&api, &flash, &sale, &mut checks).await?;

    println!();
    println!("== 4. Release and extend ==");
    let mut won = sale.holds.iter();
    match won.next() {
        Some(h) => release_one(&api, &flash, h, &mut checks).await?,
        None => checks.record("a hold to release", false, "no hold succeeded".into()),
    }
    match won.next() {
        Some(h) => extend_one(&api, h, &mut checks).await?,
        None => checks.record(
            "a hold to extend",
            false,
            "fewer than two holds succeeded".into(),
        ),
    }

    println!();
    println!("== 5. A purchase, step by step ==");
    // The first two winners' holds were released and extended above.
    let purchase = match won.next() {
        Some(h) => {
            let gateway = Gateway::new(&args.gateway_url, &args.gateway_api_key)?;
            let wait = Duration::from_secs(args.settle_wait_secs);
            match walkthrough::buy_and_cancel(&api, &gateway, &flash, h, &mut checks, wait).await
            {
                Ok(p) => format!(
                    "purchase {}: paid {}, replay charged nothing, cancelled, {} refunded at the gateway, {} notifications",
                    p.number, p.paid, p.refunded, p.notifications
                ),
                Err(e) => {
                    checks.record("the purchase walk-through", false, format!("{e:#}"));
                    "purchase FAILED".to_owned()
                }
            }
        }
        None => {
            checks.record(
                "a hold to pay for",
                false,
                "fewer than three holds succeeded".into(),
            );
            "no purchase".to_owned()
        }
    };

    println!();
    let users_holding: HashSet<&str> = sale.holds.iter().map(|h| h.user.as_str()).collect();
    let summary = format!(
        "{} double-booked seats; {}/{} seats held by {} users ({} attempts from {} buyers); {purchase}",
        sale.double_booked(),
        sale.seats_held(),
        flash.seat_count,
        users_holding.len(),
        sale.attempts,
        args.users
    );
    if checks.failed.is_empty() {
        println!("RESULT: OK: {summary}");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("RESULT: FAILED ({}): {summary}", checks.failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

/// Seeds both cities, opens a fresh flash-sale show in the first one
/// (Mumbai), lists each city's shows, and returns the flash-sale show.
async fn seed_catalog(api: &Api, op: &str) -> anyhow::Result<Show> {
    let mut places = Vec::with_capacity(CITIES.len());
    for spec in &CITIES {
        places.push(seed_city(api, op, spec).await?);
    }
    let (spec, (place, tomorrow)) = (&CITIES[0], places[0]);
    let tz: Tz = spec.time_zone.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let movie = seed::create_movie(api, op, FLASH_TITLE, 152, "hi").await?;
    // A fresh show every run: each demo's sale starts with every seat free.
    let flash = seed::create_show(
        api,
        op,
        place.screen_id,
        movie,
        local_to_utc(tz, tomorrow, FLASH_TIME)?,
        &spec.prices,
        spec.currency,
    )
    .await?;
    for spec in &CITIES {
        list_city(api, spec, &flash).await?;
    }
    Ok(flash)
}

/// The invariant checks: no seat in two holds, and the live seat map
/// agrees with the holds that succeeded, seat by seat.
async fn check_sale(
    api: &Api,
    show: &Show,
    sale: &Sale,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let map: SeatMap = api
        .get(&format!("/v1/shows/{}/seats", show.id), None)
        .await?;
    println!(
        "   seat map: {} available, {} held, {} booked (of {})",
        map.available, map.held, map.booked, show.seat_count
    );
    let double = sale.double_booked();
    checks.record(
        "every seat is in at most one successful hold",
        double == 0,
        format!("{double} seats in two holds"),
    );
    checks.record(
        "seat map held count equals seats held",
        u64::from(map.held) == sale.seats_held(),
        format!("map says {}, holds say {}", map.held, sale.seats_held()),
    );
    let held_on_map: HashSet<&str> = map
        .seats
        .iter()
        .filter(|s| s.status == SeatState::Held)
        .map(|s| s.label.as_str())
        .collect();
    let held_by_holds: HashSet<&str> = sale
        .holds
        .iter()
        .flat_map(|h| h.hold.seats.iter().map(String::as_str))
        .collect();
    checks.record(
        "seat map shows exactly the seats of the successful holds",
        held_on_map == held_by_holds,
        format!(
            "{} held on the map but in no hold, {} in a hold but not held on the map",
            held_on_map.difference(&held_by_holds).count(),
            held_by_holds.difference(&held_on_map).count()
        ),
    );
    checks.record(
        "available + held + booked = seats",
        map.available + map.held + map.booked == show.seat_count,
        format!(
            "{} + {} + {} != {}",
            map.available, map.held, map.booked, show.seat_count
        ),
    );
    let errors: u64 = sale.errors.values().sum();
    checks.record(
        "every attempt answered 201 or 409 (at most 1% other errors)",
        errors * 100 <= sale.attempts,
        format!("{errors} of {} attempts failed otherwise", sale.attempts),
    );
    Ok(())
}

/// Polls `/readyz` until it answers 200 or `wait` passes.
async fn wait_ready(api: &Api, wait: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + wait;
    loop {
        match api.get::<serde_json::Value>("/readyz", None).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= until => {
                return Err(e.context(format!("{} did not become ready", api.base())));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// `HH:MM` on `date` in `tz`, as UTC.
fn local_to_utc(tz: Tz, date: NaiveDate, hhmm: &str) -> anyhow::Result<DateTime<Utc>> {
    let t = NaiveTime::parse_from_str(hhmm, "%H:%M")?;
    tz.from_local_datetime(&date.and_time(t))
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .with_context(|| format!("{hhmm} does not exist on {date} in {tz}"))
}

/// Tomorrow's date in `tz`.
fn tomorrow_in(tz: Tz) -> NaiveDate {
    Utc::now().with_timezone(&tz).date_naive() + ChronoDuration::days(1)
}

/// A show's start in its venue's time zone, e.g. `19:45 IST`.
fn local_time(show: &Show) -> String {
    match show.time_zone.parse::<Tz>() {
        Ok(tz) => show
            .starts_at
            .with_timezone(&tz)
            .format("%a %d %b %H:%M %Z")
            .to_string(),
        Err(_) => show.starts_at_local.clone(),
    }
}

/// `₹250`, `$16.00`.
fn money(minor: i64, currency: &str) -> String {
    match currency {
        "INR" => format!("₹{}", minor / 100),
        "USD" => format!("${}.{:02}", minor / 100, minor % 100),
        other => format!("{} {other}", minor as f64 / 100.0),
    }
}

/// Seeds one city: venue, screen, and tomorrow's shows if missing.
async fn seed_city(api: &Api, op: &str, spec: &CitySpec) -> anyhow::Result<(Place, NaiveDate)> {
    let tz: Tz = spec.time_zone.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let city = seed::ensure_city(api, op, spec.code, spec.name).await?;
    let layout = grid(
        ROWS,
        PER_ROW,
        |r| if r < 4 { "PREMIUM" } else { "STANDARD" },
    );
    let place = seed::ensure_place(
        api,
        op,
        &city,
        spec.venue,
        spec.time_zone,
        spec.screen,
        &layout,
    )
    .await?;
    let tomorrow = tomorrow_in(tz);
    let existing = seed::shows_on(api, &city, &[tomorrow]).await?;
    let mut movies: HashMap<&str, uuid::Uuid> = existing
        .iter()
        .filter(|s| s.screen_id == place.screen_id)
        .map(|s| (title_key(&s.movie_title, spec), s.movie_id))
        .filter_map(|(k, id)| k.map(|k| (k, id)))
        .collect();
    let mut created = 0;
    for (title, minutes, language, hhmm) in spec.shows {
        let starts = local_to_utc(tz, tomorrow, hhmm)?;
        let exists = existing.iter().any(|s| {
            s.screen_id == place.screen_id && s.starts_at == starts && s.movie_title == title
        });
        if exists {
            continue;
        }
        let movie = match movies.get(title) {
            Some(id) => *id,
            None => {
                let id = seed::create_movie(api, op, title, minutes, language).await?;
                movies.insert(title, id);
                id
            }
        };
        seed::create_show(
            api,
            op,
            place.screen_id,
            movie,
            starts,
            &spec.prices,
            spec.currency,
        )
        .await?;
        created += 1;
    }
    println!(
        "   {} ({}): venue {:?}, {} seats on {:?}; {} new show(s) for {}",
        spec.name,
        spec.code,
        spec.venue,
        ROWS * usize::from(PER_ROW),
        spec.screen,
        created,
        tomorrow
    );
    Ok((place, tomorrow))
}

/// The spec's title a listed movie title is, if any.
fn title_key(title: &str, spec: &CitySpec) -> Option<&'static str> {
    spec.shows.iter().map(|s| s.0).find(|t| *t == title)
}

/// Prints the city's shows on tomorrow's local date.
async fn list_city(api: &Api, spec: &CitySpec, flash: &Show) -> anyhow::Result<()> {
    let tz: Tz = spec.time_zone.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let city = CityCode::parse(spec.code)?;
    let date = tomorrow_in(tz);
    let shows = seed::shows_on(api, &city, &[date]).await?;
    println!();
    println!("   {} — shows on {date} ({}):", spec.name, spec.time_zone);
    // Past flash-sale shows of earlier demo runs are folded into one line.
    let mut earlier_flash = 0;
    for s in &shows {
        if s.movie_title == FLASH_TITLE && s.id != flash.id {
            earlier_flash += 1;
            continue;
        }
        let from = s.prices.values().min().copied().unwrap_or(0);
        let marker = if s.id == flash.id {
            "  <- flash sale"
        } else {
            ""
        };
        println!(
            "     {}  {:<32} {} / {}  from {}{marker}",
            local_time(s),
            s.movie_title,
            s.venue_name,
            s.screen_name,
            money(from, &s.currency)
        );
    }
    if earlier_flash > 0 {
        println!("     (+ {earlier_flash} flash-sale show(s) from earlier demo runs)");
    }
    Ok(())
}

/// A hold that succeeded in the sale.
struct WonHold {
    user: String,
    bearer: String,
    hold: Hold,
}

/// What the sale produced.
#[derive(Default)]
struct Sale {
    attempts: u64,
    conflicts: u64,
    errors: BTreeMap<String, u64>,
    buyers_without_seats: u64,
    holds: Vec<WonHold>,
    elapsed: Duration,
}

impl Sale {
    fn seats_held(&self) -> u64 {
        self.holds.iter().map(|h| h.hold.seats.len() as u64).sum()
    }

    /// Seats that appear in more than one successful hold.
    fn double_booked(&self) -> u64 {
        let mut seen = HashSet::new();
        let mut twice = HashSet::new();
        for s in self.holds.iter().flat_map(|h| h.hold.seats.iter()) {
            if !seen.insert(s) {
                twice.insert(s);
            }
        }
        twice.len() as u64
    }

    fn print(&self, seats: u32) {
        let errors: u64 = self.errors.values().sum();
        println!(
            "   {} attempts in {:.2}s: {} holds succeeded, {} conflicts (409 seats_unavailable), {} other errors",
            self.attempts,
            self.elapsed.as_secs_f64(),
            self.holds.len(),
            self.conflicts,
            errors
        );
        for (kind, n) in &self.errors {
            println!("     error {kind}: {n}");
        }
        println!(
            "   {} of {seats} seats held; {} buyers went home without seats",
            self.seats_held(),
            self.buyers_without_seats
        );
    }
}

/// Runs the sale: every buyer tries up to `attempts_per_user` random
/// groups of adjacent seats and stops at the first success.
async fn flash_sale(
    api: &Api,
    minter: &Minter,
    show: &Show,
    args: &DemoArgs,
) -> anyhow::Result<Sale> {
    let sale = Arc::new(Mutex::new(Sale::default()));
    let path = format!("/v1/shows/{}/holds", show.id);
    let rows: Vec<String> = (0..ROWS).map(row_label).collect();
    let buyers = (0..args.users)
        .map(|i| {
            let user = format!("demo-buyer-{i:04}");
            let bearer = minter.bearer(&user, Role::User)?;
            Ok((user, bearer))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    futures::stream::iter(buyers)
        .for_each_concurrent(args.concurrency, |(user, bearer)| {
            let (sale, path, rows) = (sale.clone(), &path, &rows);
            async move {
                for _ in 0..args.attempts_per_user.max(1) {
                    let body = CreateHold {
                        seats: random_group(rows),
                    };
                    let res = api.post::<_, Hold>(path, &bearer, &body).await;
                    let mut s = sale.lock().unwrap_or_else(|p| p.into_inner());
                    s.attempts += 1;
                    match res {
                        Ok(hold) => {
                            s.holds.push(WonHold {
                                user: user.clone(),
                                bearer: bearer.clone(),
                                hold,
                            });
                            return;
                        }
                        Err(e) => match failure(&e) {
                            Some(f)
                                if f.status == StatusCode::CONFLICT
                                    && f.code == "seats_unavailable" =>
                            {
                                s.conflicts += 1;
                            }
                            Some(f) => {
                                *s.errors
                                    .entry(format!("{} {}", f.status.as_u16(), f.code))
                                    .or_default() += 1
                            }
                            None => *s.errors.entry("transport".into()).or_default() += 1,
                        },
                    }
                }
                sale.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .buyers_without_seats += 1;
            }
        })
        .await;
    let mut sale = std::mem::take(&mut *sale.lock().unwrap_or_else(|p| p.into_inner()));
    sale.elapsed = started.elapsed();
    Ok(sale)
}

/// 1-4 adjacent seats in a random row.
fn random_group(rows: &[String]) -> Vec<String> {
    let mut rng = rand::thread_rng();
    let row = &rows[rng.gen_range(0..rows.len())];
    let n = rng.gen_range(1..=4u16);
    let first = rng.gen_range(1..=PER_ROW - n + 1);
    (first..first + n).map(|k| format!("{row}{k}")).collect()
}

/// Named checks; failures are collected for the verdict.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn record(&mut self, what: &str, ok: bool, why_not: String) {
        if ok {
            println!("   [ok]   {what}");
        } else {
            println!("   [FAIL] {what}: {why_not}");
            self.failed.push(what.to_owned());
        }
    }
}

async fn availability(api: &Api, show: ShowId) -> anyhow::Result<u32> {
    Ok(api
        .get::<Availability>(&format!("/v1/shows/{show}/availability"), None)
        .await?
        .available)
}

/// Releases `h` and checks that its seats become available at once.
async fn release_one(
    api: &Api,
    show: &Show,
    h: &WonHold,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let before = availability(api, show.id).await?;
    let released: Hold = api
        .delete(&format!("/v1/holds/{}", h.hold.hold_id), &h.bearer)
        .await?;
    let after = availability(api, show.id).await?;
    println!(
        "   {} releases hold {} ({}): availability {before} -> {after}",
        h.user,
        h.hold.hold_id,
        h.hold.seats.join(", ")
    );
    checks.record(
        "released seats are available again at once",
        after == before + h.hold.seats.len() as u32
            && released.state == shared::api::HoldState::Released,
        format!(
            "expected {} available and state RELEASED, got {after} and {:?}",
            before + h.hold.seats.len() as u32,
            released.state
        ),
    );
    Ok(())
}

/// Extends `h` once (accepted) and twice (refused with 409).
async fn extend_one(api: &Api, h: &WonHold, checks: &mut Checks) -> anyhow::Result<()> {
    let path = format!("/v1/holds/{}/extend", h.hold.hold_id);
    let first: Hold = api.post_empty(&path, &h.bearer).await?;
    println!(
        "   {} extends hold {}: expires {} -> {}",
        h.user,
        h.hold.hold_id,
        h.hold.expires_at.format("%H:%M:%S UTC"),
        first.expires_at.format("%H:%M:%S UTC")
    );
    checks.record(
        "first extension accepted and moves the expiry later",
        first.extended && first.expires_at > h.hold.expires_at,
        format!(
            "extended={}, expires_at={}",
            first.extended, first.expires_at
        ),
    );
    let second = api.post_empty::<Hold>(&path, &h.bearer).await;
    let refused = match &second {
        Ok(_) => "accepted".to_owned(),
        Err(e) => failure(e).map_or_else(
            || format!("{e:#}"),
            |f| format!("{} {}", f.status.as_u16(), f.code),
        ),
    };
    println!("   second extension: {refused}");
    checks.record(
        "second extension refused with 409",
        second
            .as_ref()
            .err()
            .and_then(failure)
            .is_some_and(|f| f.status == StatusCode::CONFLICT),
        format!("got {refused}"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_convert_to_utc() {
        let tz: Tz = "Asia/Kolkata".parse().expect("known zone");
        let date = NaiveDate::from_ymd_opt(2030, 1, 15).expect("valid date");
        let utc = local_to_utc(tz, date, "19:45").expect("exists");
        assert_eq!(utc.to_rfc3339(), "2030-01-15T14:15:00+00:00");
    }

    #[test]
    fn groups_are_adjacent_in_one_row() {
        let rows: Vec<String> = (0..ROWS).map(row_label).collect();
        for _ in 0..1000 {
            let g = random_group(&rows);
            assert!((1..=4).contains(&g.len()));
            let row: String = g[0]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let nums: Vec<u16> = g
                .iter()
                .map(|s| s[row.len()..].parse().expect("number"))
                .collect();
            assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
            assert!(*nums.last().expect("non-empty") <= PER_ROW);
        }
    }

    #[test]
    fn money_is_readable() {
        assert_eq!(money(45_000, "INR"), "₹450");
        assert_eq!(money(1_600, "USD"), "$16.00");
    }
}
