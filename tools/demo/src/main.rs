//! `demo`: the README's walk-through (the last step of `scripts/up.sh`), every buyer request through
//! the edge Worker (`--edge`) in front of a running region core
//! (`--target`).
//!
//! 1. seeds two cities through the edge's operator routes (Mumbai in
//!    Asia/Kolkata, New York in America/New_York), each with a venue, a
//!    500-seat screen, movies and shows tomorrow (local date), and lists
//!    them with local start times (cached reads at the edge);
//! 2. a flash sale through the edge's waiting room: a fresh `flash_sale`
//!    show, its sale set at the edge, simulated users (default 600) join
//!    before it opens, are admitted in the drawn order at the configured
//!    rate with signed passes, and hold 1-4 adjacent seats with their pass
//!    and pay (a few keep their holds for steps 5 and 6);
//! 3. checks: the seed matches the commitment shown before opening, every
//!    place is the committed draw's, nobody was admitted before someone
//!    ahead, no seat was sold twice, and the region core's seat map agrees;
//! 4. attempts to get round the queue while the sale was on (straight at
//!    the region core, and through the edge with no pass, a forged one and
//!    another user's), every one refused;
//! 5. releases one hold (availability goes up by its seats) and extends
//!    another (once: the second extension is refused with 409);
//! 6. walks one winner through a purchase (`walkthrough`): pay with an
//!    Idempotency-Key, the confirmed booking, a replay that charges
//!    nothing, the cancellation quote, the cancellation, the refund landing
//!    at the payment gateway, and the notifications sent;
//! 7. with `--outage-command`, sells in both cities through the edge while
//!    that command kills part of the first city's shard (`outage`): mum
//!    keeps selling, nyc does not notice, no seat is held twice.
//!
//! The region core's own answers (seat map, availability) are read from it
//! directly, as an auditor would: the edge caches them for a second or two.
//! It needs the edge, the region core, and the payment gateway that core
//! charges through (`--gateway-url`, whose ledger it reads).
//!
//! Re-runs are safe: existing cities, venues and screens are reused,
//! tomorrow's regular shows are created only if missing, and each run gets
//! a new flash-sale show with a waiting room of its own. Exits non-zero if
//! any check fails.

mod flash_sale;
mod outage;
mod prove_city;
mod walkthrough;

use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Parser;
use loadgen::edge;
use reqwest::StatusCode;
use shared::api::{Availability, Hold, SaleMode, SeatMap, Show};
use shared::token::Role;
use shared::{CityCode, SeatState, ShowId};
use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use testkit::api::{failure, Api, Minter};
use testkit::gateway::Gateway;
use testkit::seed::{self, grid, Place};

/// Options of `demo`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "demo",
    about = "Seed two demo cities through the edge, run a small flash sale through its waiting \
             room against a running region core, check that no seat was sold twice and the queue \
             cannot be bypassed, then walk one buyer through a purchase, a replay, a cancellation \
             and its refund"
)]
pub struct DemoArgs {
    /// The edge Worker every buyer goes through (scripts/up.sh serves it on
    /// 127.0.0.1:8787).
    #[arg(long, env = "DEMO_EDGE_URL", default_value = "http://127.0.0.1:8787")]
    pub edge: String,

    /// The region core behind the edge for the first city (mum), read
    /// directly for the checks and tried directly by the intruder.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,

    /// A region core of the second city's shard (nyc), read directly in
    /// the outage step.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub other_target: String,

    /// Instead of the walk-through: create this city through the edge
    /// (on whatever shard the directory routes it to) and sell its first
    /// ticket (`scripts/add-city.sh`).
    #[arg(long)]
    pub prove_city: Option<String>,

    /// With --prove-city: the city's name.
    #[arg(long, default_value = "New City")]
    pub city_name: String,

    /// With --prove-city: its IANA time zone.
    #[arg(long, default_value = "UTC")]
    pub city_time_zone: String,

    /// With --prove-city: its currency.
    #[arg(long, default_value = "USD")]
    pub city_currency: String,

    /// Step 7: a shell command that kills part of the first city's shard
    /// while both cities sell (up.sh: `bash scripts/shard-chaos.sh kill
    /// mum`). Unset: the step is skipped.
    #[arg(long)]
    pub outage_command: Option<String>,

    /// Key that operator and user tokens are signed with (the region
    /// core's REGION_JWT_SECRET, the edge's JWT_SECRET).
    #[command(flatten)]
    pub signing: service_kit::SigningKey,

    /// Simulated buyers in the flash sale.
    #[arg(long, default_value_t = 600)]
    pub users: usize,

    /// Requests in flight at most.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Seat groups an admitted buyer tries (a buyer whose seats were taken
    /// picks others).
    #[arg(long, default_value_t = 3)]
    pub attempts_per_user: usize,

    /// Admissions per second the sale is set to.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// The sale opens this long after everyone joined, seconds.
    #[arg(long, default_value_t = 3)]
    pub open_delay_secs: u64,

    /// How long to wait for the edge and the region core, seconds.
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

    /// The local mail catcher's directory (`scripts/up.sh` passes
    /// `.run/mail`): the buyer's e-mails are read back from it. Unset:
    /// not checked.
    #[arg(long, env = "DEMO_MAIL_DIR")]
    pub mail_dir: Option<std::path::PathBuf>,

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
            // Also in Mumbai: one title of the global catalog, one id.
            ("Monsoon Heist", 152, "hi", "21:30"),
        ],
    },
];

/// The demo screen: 20 rows of 25 seats; rows A-D are PREMIUM.
const ROWS: usize = 20;
const PER_ROW: u16 = 25;
/// Local start of the flash-sale show (Mumbai, tomorrow).
const FLASH_TIME: &str = "22:00";
const FLASH_TITLE: &str = "Monsoon Heist: Premiere Night";

fn main() -> ExitCode {
    let args = DemoArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// About 85 lines: the README's six steps in order, each a call, with
// the headings a reader of the demo's output sees.
/// The walk-through, step by step; the exit code says whether every check
/// passed.
async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.users >= 3 && args.concurrency >= 1,
        "--users must be at least 3 and --concurrency positive"
    );
    if let Some(code) = &args.prove_city {
        let edge_api = Api::edge(&args.edge, code)?;
        edge::wait_healthy(&edge_api, Duration::from_secs(args.wait_ready_secs)).await?;
        let city = prove_city::NewCity {
            code,
            name: &args.city_name,
            time_zone: &args.city_time_zone,
            currency: &args.city_currency,
        };
        return prove_city::run(&args.edge, &args.signing.jwt_secret, city).await;
    }
    let region = Api::new(&args.target)?;
    let edge_api = Api::edge(&args.edge, CITIES[0].code)?;
    let wait = Duration::from_secs(args.wait_ready_secs);
    wait_ready(&region, wait).await?;
    edge::wait_healthy(&edge_api, wait).await?;
    let minter = Minter::new(&args.signing.jwt_secret);
    let op = minter.bearer("demo-operator", Role::Operator)?;

    println!(
        "== 1. Catalog through the edge ({}): two cities, shows tomorrow (local time) ==",
        args.edge
    );
    let flash = seed_catalog(&edge_api, &op).await?;

    println!();
    println!(
        "== 2. Flash sale through the edge's waiting room: {} buyers, {} admissions/s ==",
        args.users, args.rate
    );
    println!(
        "   show {} — {} at {} (sale mode: flash_sale; {} seats)",
        flash.id,
        flash.movie_title,
        local_time(&flash),
        flash.seat_count
    );
    let sale = flash_sale::run(&args, &edge_api, &region, &minter, &op, &flash).await?;

    println!();
    println!("== 3. Checks ==");
    let mut checks = Checks::default();
    flash_sale::check_order(&sale, &mut checks);
    check_seats(&region, &flash, &sale, &mut checks).await?;
    search_step(&args.edge, &mut checks).await?;

    println!();
    println!("== 4. Getting round the queue (tried while the sale was on) ==");
    flash_sale::report_bypass(&sale, &mut checks);

    println!();
    println!("== 5. Release and extend (through the edge) ==");
    let mut kept = sale.kept.iter();
    match kept.next() {
        Some(h) => release_one(&region, &flash, h, &mut checks).await?,
        None => checks.record("a hold to release", false, "no hold was kept".into()),
    }
    match kept.next() {
        Some(h) => extend_one(h, &mut checks).await?,
        None => checks.record(
            "a hold to extend",
            false,
            "fewer than two holds were kept".into(),
        ),
    }

    println!();
    println!("== 6. A purchase, step by step (through the edge) ==");
    // The first two kept holds were released and extended above.
    let purchase = purchase_step(&args, &flash, kept.next(), &mut checks).await?;

    let outage = match &args.outage_command {
        Some(command) => {
            println!();
            println!(
                "== 7. A shard outage during a sale (mum's Redis and one mum replica killed) =="
            );
            let other = Api::new(&args.other_target)?;
            let o = outage::run(
                &edge_api,
                [&region, &other],
                &op,
                &minter,
                command,
                &mut checks,
            )
            .await?;
            format!(
                "; outage: mum held {} seat pairs with its Redis and a replica down, nyc {} with {} errors, {} seats held twice",
                o.mum_during, o.nyc_during, o.nyc_errors, o.double_held
            )
        }
        None => String::new(),
    };

    println!();
    let summary = format!(
        "{} joined, {} admitted in order ({} out of order), {}/{} seats sold to {} buyers, {} double-booked; {}/{} bypass attempts refused; {purchase}{outage}",
        sale.joined,
        sale.admitted(),
        sale.order_violations,
        sale.seats_sold(),
        flash.seat_count,
        sale.buyers(),
        sale.double_booked(),
        sale.bypass.len() - sale.bypass_accepted(),
        sale.bypass.len(),
    );
    if checks.failed.is_empty() {
        println!("RESULT: OK: {summary}");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("RESULT: FAILED ({}): {summary}", checks.failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

/// Step 6: one kept hold bought, replayed, cancelled and refunded; its
/// one-line summary for the RESULT line.
async fn purchase_step(
    args: &DemoArgs,
    flash: &Show,
    hold: Option<&WonHold>,
    checks: &mut Checks,
) -> anyhow::Result<String> {
    Ok(match hold {
        Some(h) => {
            let gateway = Gateway::new(&args.gateway_url, &args.gateway_api_key)?;
            let wait = Duration::from_secs(args.settle_wait_secs);
            let mail_dir = args.mail_dir.as_deref();
            let staff = Minter::new(&args.signing.jwt_secret).bearer("demo-door", Role::Staff)?;
            match walkthrough::buy_and_cancel(&gateway, flash, h, checks, wait, mail_dir, &staff)
                .await
            {
                Ok(p) => format!(
                    "purchase {}: paid {}, replay charged nothing, cancelled, {} refunded at the gateway, {} notifications{}",
                    p.number,
                    p.paid,
                    p.refunded,
                    p.notifications,
                    p.emails
                        .map(|n| format!(", {n} e-mails"))
                        .unwrap_or_default()
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
                "fewer than three holds were kept".into(),
            );
            "no purchase".to_owned()
        }
    })
}

/// A buyer's search across cities through the edge, misspelt: the title
/// both cities show is found once (one global id), with both cities.
async fn search_step(edge: &str, checks: &mut Checks) -> anyhow::Result<()> {
    let query = "monson heist";
    let found: shared::api::SearchResults = Api::new(edge)?
        .get(&format!("/v1/search?q={}", query.replace(' ', "+")), None)
        .await?;
    let top = found.hits.first();
    if let Some(hit) = top {
        println!(
            "   search {query:?} through the edge: {:?} (movie {}) in {}",
            hit.movie.title,
            hit.movie.id,
            hit.cities.join(", ")
        );
    }
    let ok = top.is_some_and(|h| {
        h.movie.title == "Monsoon Heist"
            && h.cities.iter().any(|c| c == "mum")
            && h.cities.iter().any(|c| c == "nyc")
    });
    checks.record(
        "a misspelt search finds the title both cities show, once",
        ok,
        format!(
            "hits: {:?}",
            found
                .hits
                .iter()
                .map(|h| (&h.movie.title, &h.cities))
                .collect::<Vec<_>>()
        ),
    );
    Ok(())
}

/// Seeds both cities through the edge (each through its own city's route),
/// opens a fresh flash-sale show in the first one (Mumbai), lists each
/// city's shows through the edge, and returns the flash-sale show.
async fn seed_catalog(edge_api: &Api, op: &str) -> anyhow::Result<Show> {
    let mut places = Vec::with_capacity(CITIES.len());
    for spec in &CITIES {
        places.push(seed_city(&edge_api.for_city(spec.code), op, spec).await?);
    }
    let (spec, (_main_screen, tomorrow)) = (&CITIES[0], places[0]);
    let api = edge_api.for_city(spec.code);
    let tz: Tz = spec.time_zone.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let movie = seed::create_movie(&api, op, FLASH_TITLE, 152, "hi").await?;
    // A fresh show every run: each demo's sale starts with every seat free
    // and a waiting room of its own. It gets a screen of its own too (a
    // screen plays one show at a time, and an earlier run's premiere
    // holds the main screen at that hour).
    let flash = show_on_own_screen(
        &api,
        op,
        spec,
        "Premiere Hall",
        movie,
        local_to_utc(tz, tomorrow, FLASH_TIME)?,
        SaleMode::FlashSale,
    )
    .await?;
    for spec in &CITIES {
        list_city(edge_api, spec, &flash).await?;
    }
    // The city list twice: the edge answers the second from its cache.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = edge_api
            .send(
                testkit::api::Method::GET,
                "/v1/cities",
                None,
                None,
                None::<&()>,
            )
            .await?;
        seen.push(r.header("X-Edge-Cache").unwrap_or("-").to_owned());
    }
    println!();
    println!(
        "   GET /v1/cities through the edge: X-Edge-Cache {}, then {}",
        seen[0], seen[1]
    );
    Ok(flash)
}

/// A new show on a screen of its own in `spec`'s city (a screen plays one
/// show at a time, and an earlier run's show holds the main screen at
/// that hour), so every run starts with every seat free. The screen is
/// named `hall` with a tag of this run.
async fn show_on_own_screen(
    api: &Api,
    op: &str,
    spec: &CitySpec,
    hall: &str,
    movie: uuid::Uuid,
    starts_at: DateTime<Utc>,
    mode: SaleMode,
) -> anyhow::Result<Show> {
    let screen = format!("{hall} {}", loadgen::seed::short_tag());
    let (_, place) = demo_screen(api, op, spec, &screen).await?;
    seed::create_show_in(
        api,
        op,
        seed::NewShow {
            screen_id: place.screen_id,
            movie_id: movie,
            starts_at,
            prices: &spec.prices,
            currency: spec.currency,
        },
        mode,
    )
    .await
}

/// The seat checks, against the region core's own seat map: no seat in
/// two bookings or holds, and the map agrees seat by seat with what the
/// buyers were given.
async fn check_seats(
    region: &Api,
    show: &Show,
    sale: &flash_sale::SaleOutcome,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let map: SeatMap = region
        .get(&format!("/v1/shows/{}/seats", show.id), None)
        .await?;
    println!(
        "   region core's seat map: {} available, {} held, {} booked (of {})",
        map.available, map.held, map.booked, show.seat_count
    );
    let double = sale.double_booked();
    checks.record(
        "every seat is in at most one booking or live hold",
        double == 0,
        format!("{double} seats given to two buyers"),
    );
    let on_map = |state: SeatState| -> HashSet<&str> {
        map.seats
            .iter()
            .filter(|s| s.status == state)
            .map(|s| s.label.as_str())
            .collect()
    };
    let booked: HashSet<&str> = sale.booked_seats().collect();
    let held: HashSet<&str> = sale.held_seats().collect();
    checks.record(
        "the seat map shows exactly the seats the buyers paid for as booked",
        on_map(SeatState::Booked) == booked,
        format!("{} booked on the map, {} bought", map.booked, booked.len()),
    );
    checks.record(
        "the seat map shows exactly the kept holds' seats as held",
        on_map(SeatState::Held) == held,
        format!("{} held on the map, {} in kept holds", map.held, held.len()),
    );
    checks.record(
        "available + held + booked = seats",
        map.available + map.held + map.booked == show.seat_count,
        format!(
            "{} + {} + {} != {}",
            map.available, map.held, map.booked, show.seat_count
        ),
    );
    let (odd, total) = sale.unexpected_answers();
    checks.record(
        "every request through the edge was answered as expected (at most 1% 429, 5xx or no answer)",
        odd * 100 <= total,
        format!("{odd} of {total}"),
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

/// The city, its venue and a screen of the demo's layout named `screen`
/// (each created if missing).
async fn demo_screen(
    api: &Api,
    op: &str,
    spec: &CitySpec,
    screen: &str,
) -> anyhow::Result<(CityCode, Place)> {
    let city = seed::ensure_city(api, op, spec.code, spec.name).await?;
    let layout = grid(
        ROWS,
        PER_ROW,
        |r| if r < 4 { "PREMIUM" } else { "STANDARD" },
    );
    let place =
        seed::ensure_place(api, op, &city, spec.venue, spec.time_zone, screen, &layout).await?;
    Ok((city, place))
}

/// Seeds one city: venue, screen, and tomorrow's shows if missing.
async fn seed_city(api: &Api, op: &str, spec: &CitySpec) -> anyhow::Result<(Place, NaiveDate)> {
    let tz: Tz = spec.time_zone.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (city, place) = demo_screen(api, op, spec, spec.screen).await?;
    let tomorrow = tomorrow_in(tz);
    let existing = seed::shows_on(api, &city, &[tomorrow]).await?;
    // Titles are asked of the catalog, not taken from listed shows: a
    // shard from before the global catalog lists titles it alone knows.
    let mut movies: HashMap<&str, uuid::Uuid> = HashMap::new();
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

/// A hold a flash-sale winner kept (did not pay for in the sale).
struct WonHold {
    user: String,
    bearer: String,
    /// The edge, as this buyer.
    api: Api,
    hold: Hold,
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

/// Releases `h` through the edge and checks, at the region core, that its
/// seats become available at once.
async fn release_one(
    region: &Api,
    show: &Show,
    h: &WonHold,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let before = availability(region, show.id).await?;
    let released: Hold = h
        .api
        .delete(&format!("/v1/holds/{}", h.hold.hold_id), &h.bearer)
        .await?;
    let after = availability(region, show.id).await?;
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

/// Extends `h` once (accepted) and twice (refused with 409), through the
/// edge.
async fn extend_one(h: &WonHold, checks: &mut Checks) -> anyhow::Result<()> {
    let path = format!("/v1/holds/{}/extend", h.hold.hold_id);
    let first: Hold = h.api.post_empty(&path, &h.bearer).await?;
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
    let second = h.api.post_empty::<Hold>(&path, &h.bearer).await;
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
    fn money_is_readable() {
        assert_eq!(money(45_000, "INR"), "₹450");
        assert_eq!(money(1_600, "USD"), "$16.00");
    }
}
