//! Step 7: a shard outage during a sale. Buyers hold seats in both
//! cities through the edge; part-way through, the outage command (up.sh:
//! `scripts/shard-chaos.sh kill mum`) kills mum's Redis and one of mum's
//! two replicas. Mum must keep selling (the edge fails over to the live
//! replica; the shard switches to the Postgres-only path), New York must
//! not notice, and no seat may be held twice, checked against each
//! shard's own seat map.

use super::{
    local_to_utc, show_on_own_screen, tomorrow_in, Checks, CitySpec, CITIES, PER_ROW, ROWS,
};
use chrono_tz::Tz;
use loadgen::edge;
use rand::{Rng, SeedableRng};
use shared::api::{Hold, SaleMode, SeatMap};
use shared::token::Role;
use shared::SeatState;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::api::{Api, Method, Minter};
use testkit::seed::{self, row_label};
use uuid::Uuid;

/// Buyers per city.
const BUYERS: usize = 6;
/// Each buyer's pause between holds (keeps every buyer under the edge's
/// per-user hold limit).
const PAUSE: Duration = Duration::from_millis(300);
/// Selling before the outage, and during it.
const BEFORE: Duration = Duration::from_secs(3);
const DURING: Duration = Duration::from_secs(8);

/// Answers of one city, by phase and status.
#[derive(Default)]
struct Tally {
    by: BTreeMap<(&'static str, u16), usize>,
    /// Seat label -> holds granted on it.
    granted: HashMap<String, usize>,
}

impl Tally {
    fn count(&self, phase: &str, status: u16) -> usize {
        self.by
            .get(&(phase_key(phase), status))
            .copied()
            .unwrap_or(0)
    }

    fn other_than(&self, ok: &[u16]) -> usize {
        self.by
            .iter()
            .filter(|((_, s), _)| !ok.contains(s))
            .map(|(_, n)| n)
            .sum()
    }
}

fn phase_key(phase: &str) -> &'static str {
    if phase == "before" {
        "before"
    } else {
        "during"
    }
}

/// What the step saw, for the RESULT line.
pub(super) struct Outage {
    pub mum_during: usize,
    pub nyc_during: usize,
    pub nyc_errors: usize,
    pub double_held: usize,
}

/// Runs the step; `command` is the shell command that causes the outage.
pub(super) async fn run(
    edge_api: &Api,
    regions: [&Api; 2],
    op: &str,
    minter: &Minter,
    command: &str,
    checks: &mut Checks,
) -> anyhow::Result<Outage> {
    let mut shows = Vec::new();
    for spec in &CITIES {
        shows.push(fresh_open_show(edge_api, op, spec).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let phase: Arc<Mutex<&'static str>> = Arc::new(Mutex::new("before"));
    let tallies: Vec<Arc<Mutex<Tally>>> = CITIES.iter().map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (c, spec) in CITIES.iter().enumerate() {
        for b in 0..BUYERS {
            let n = c * BUYERS + b;
            let api = edge_api
                .for_city(spec.code)
                .at_ip(&edge::client_ip(800_000 + n));
            let bearer = minter.bearer(&format!("outage-buyer-{n}@demo.example"), Role::User)?;
            let (show, stop, phase, tally) = (
                shows[c].clone(),
                stop.clone(),
                phase.clone(),
                tallies[c].clone(),
            );
            tasks.push(tokio::spawn(async move {
                buyer(n as u64, api, bearer, show, stop, phase, tally).await
            }));
        }
    }
    tokio::time::sleep(BEFORE).await;
    println!("   selling in both cities; now: {command}");
    *phase.lock().expect("phase") = "during";
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .await?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("     {line}");
    }
    anyhow::ensure!(
        out.status.success(),
        "the outage command failed: {}",
        out.status
    );
    tokio::time::sleep(DURING).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }

    let mut double_held = 0;
    for (c, spec) in CITIES.iter().enumerate() {
        let map: SeatMap = regions[c]
            .get(&format!("/v1/shows/{}/seats", shows[c]), None)
            .await?;
        let path = lock_path(regions[c]).await;
        let tally = tallies[c].lock().expect("tally");
        let twice = tally.granted.values().filter(|n| **n > 1).count();
        double_held += twice;
        let on_map: std::collections::HashSet<&str> = map
            .seats
            .iter()
            .filter(|s| s.status == SeatState::Held)
            .map(|s| s.label.as_str())
            .collect();
        let missing = tally
            .granted
            .keys()
            .filter(|l| !on_map.contains(l.as_str()))
            .count();
        // A hold the shard wrote whose answer died with the killed replica
        // is on the map but was never granted to a buyer: it expires with
        // its hold. Any other difference is a fault.
        let unanswered = on_map.len() + missing - tally.granted.len();
        println!(
            "   {}: before {} held / {} refused (409), during {} held / {} refused / {} 503; \
             seat map {} held ({unanswered} of them for requests whose answer was lost); \
             hold path now {path}",
            spec.code,
            tally.count("before", 201),
            tally.count("before", 409),
            tally.count("during", 201),
            tally.count("during", 409),
            tally.count("during", 503),
            map.held,
        );
        checks.record(
            &format!(
                "{}: no seat held twice, and every seat granted is held on the shard's map",
                spec.code
            ),
            twice == 0 && missing == 0 && map.held as usize == on_map.len(),
            format!("{twice} seats granted twice; {missing} granted seats not held on the map"),
        );
    }
    let mum = tallies[0].lock().expect("tally");
    let nyc = tallies[1].lock().expect("tally");
    let outage = Outage {
        mum_during: mum.count("during", 201),
        nyc_during: nyc.count("during", 201),
        nyc_errors: nyc.other_than(&[201, 409]),
        double_held,
    };
    checks.record(
        "mum keeps selling with its Redis and a replica down",
        outage.mum_during > 0,
        "no hold was granted in mum during the outage".into(),
    );
    checks.record(
        "mum's answers are holds, conflicts or 503 with Retry-After only",
        mum.other_than(&[201, 409, 503]) == 0,
        format!("{} other answers", mum.other_than(&[201, 409, 503])),
    );
    checks.record(
        "nyc does not notice mum's outage",
        outage.nyc_errors == 0 && outage.nyc_during > 0,
        format!(
            "{} errors, {} holds during the outage",
            outage.nyc_errors, outage.nyc_during
        ),
    );
    Ok(outage)
}

/// One buyer: holds a random pair of adjacent seats, again and again,
/// with an Idempotency-Key (so a write the edge could not deliver to a
/// dead replica is sent to the live one), and notes what it got.
async fn buyer(
    seed: u64,
    api: Api,
    bearer: String,
    show: String,
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<&'static str>>,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let path = format!("/v1/shows/{show}/holds");
    while !stop.load(Ordering::Relaxed) {
        let row = row_label(rng.gen_range(0..ROWS));
        let n = rng.gen_range(1..PER_ROW);
        let seats = vec![format!("{row}{n}"), format!("{row}{}", n + 1)];
        let key = Uuid::now_v7().to_string();
        let body = serde_json::json!({ "seats": seats });
        let answer = api
            .send(Method::POST, &path, Some(&bearer), Some(&key), Some(&body))
            .await;
        let now = *phase.lock().expect("phase");
        let status = answer.as_ref().map_or(0, |r| r.status.as_u16());
        {
            let mut t = tally.lock().expect("tally");
            *t.by.entry((now, status)).or_insert(0) += 1;
            if let Ok(r) = &answer {
                if status == 201 {
                    let hold: Hold = r.json()?;
                    for s in hold.seats {
                        *t.granted.entry(s).or_insert(0) += 1;
                    }
                }
            }
        }
        let wait = match &answer {
            Ok(r) if status == 503 => r
                .header("Retry-After")
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(PAUSE, |s| Duration::from_secs(s.min(2))),
            _ => PAUSE,
        };
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

/// A new open show tomorrow night in `spec`'s city, on a screen of its
/// own, so every run starts empty.
async fn fresh_open_show(edge_api: &Api, op: &str, spec: &CitySpec) -> anyhow::Result<String> {
    let api = edge_api.for_city(spec.code);
    let tz: Tz = spec.time_zone.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tomorrow = tomorrow_in(tz);
    let (title, minutes, language, _) = spec.shows[2];
    let movie = seed::create_movie(&api, op, title, minutes, language).await?;
    let starts_at = local_to_utc(tz, tomorrow, "23:30")?;
    let show = show_on_own_screen(
        &api,
        op,
        spec,
        "Late Show Hall",
        movie,
        starts_at,
        SaleMode::Open,
    )
    .await?;
    Ok(show.id.to_string())
}

/// The shard's hold path as one replica reports it (`/healthz`).
async fn lock_path(region: &Api) -> String {
    match region
        .send(Method::GET, "/healthz", None, None, None::<&()>)
        .await
    {
        Ok(r) => r
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v["lock_path"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into()),
        Err(_) => "unreachable".into(),
    }
}
