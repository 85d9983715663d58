//! The fault suite (issue 9): the real processes — a `region-core` binary,
//! a `sandbox-gateway` binary, a fresh Postgres database, a private
//! `redis-server` — under concurrent buyers, while faults are injected:
//! Redis killed (SIGKILL) and restarted empty, the region core killed
//! (SIGKILL) and restarted, the gateway frozen (SIGSTOP) and resumed.
//!
//! Afterwards, once reconciliation and refunds have settled, it checks
//! from the database and the gateway's own ledger: no seat sold twice;
//! every booking a buyer saw confirmed still exists, confirmed; every
//! charge ends as a booking or a refund (money lost 0); no hold outlives
//! its TTL; no 500 was returned; every 503 carried `Retry-After`; no
//! request found the region core gone outside the kill window (a crash of
//! its own). Each check is a pure function of the evidence, and each has a
//! negative control: the same check applied to deliberately corrupted evidence
//! must fail. The run prints one `CHAOS:` JSON line with its figures
//! (docs/BENCHMARKS.md).

use e2e::redis_server::RedisServer;
use e2e::region_process::{region_core_spec, ShardParts};
use e2e::sandbox_process::SandboxProcess;
use e2e::{fresh_database, token, user};
use rand::seq::SliceRandom;
use region_core::auth::Role;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::process::{free_port, ServiceProcess};
use testkit::seed::row_label;

const BUYERS: usize = 16;
// Enough seats that the show is still selling when the last fault hits.
const ROWS: usize = 40;
const PER_ROW: usize = 50;
const HOLD_TTL_S: u64 = 20;
/// How long the region core may take to answer /readyz (it migrates its
/// database first; a restart after SIGKILL recovers in-flight work).
const REGION_READY: Duration = Duration::from_secs(20);

// ------------------------------------------------------------ evidence

/// What one run left behind, read from the database, the gateway's ledger
/// and the buyers' own notes.
#[derive(Debug, Clone, Default)]
struct Evidence {
    /// (show, seat) of every active booked seat, once per booking seat row.
    sold_seats: Vec<(String, String)>,
    /// Booking ids the buyers were answered 201 for.
    seen_confirmed: Vec<String>,
    /// Booking ids confirmed in the database.
    confirmed: HashSet<String>,
    /// Succeeded charges at the gateway: (reference = payment id, amount,
    /// amount refunded).
    charges: Vec<(String, i64, i64)>,
    /// Payment id -> amount of its confirmed booking.
    booked: HashMap<String, i64>,
    /// Active holds past their expiry (plus the sweeper's slack).
    overdue_holds: i64,
    /// Every answer: (status, carried Retry-After).
    answers: Vec<(u16, bool)>,
    /// Requests that found no server while the test had not killed it (a
    /// crash of its own would show here, not as a 500).
    unexpected_disconnects: u64,
}

fn no_seat_sold_twice(e: &Evidence) -> Result<(), String> {
    let mut seen = HashSet::new();
    let twice: Vec<_> = e.sold_seats.iter().filter(|s| !seen.insert(*s)).collect();
    if twice.is_empty() {
        Ok(())
    } else {
        Err(format!("seats sold twice: {twice:?}"))
    }
}

fn seen_bookings_survive(e: &Evidence) -> Result<(), String> {
    let lost: Vec<_> = e
        .seen_confirmed
        .iter()
        .filter(|b| !e.confirmed.contains(*b))
        .collect();
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!("bookings confirmed to a buyer but gone: {lost:?}"))
    }
}

fn no_money_lost(e: &Evidence) -> Result<(), String> {
    let lost: Vec<_> = e
        .charges
        .iter()
        .filter(|(reference, amount, refunded)| {
            let booked = e.booked.get(reference).copied().unwrap_or(0);
            // Kept money must be exactly a confirmed booking's amount.
            amount - refunded != booked
        })
        .collect();
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!("charges neither booked nor refunded: {lost:?}"))
    }
}

fn no_hold_outlives_its_ttl(e: &Evidence) -> Result<(), String> {
    if e.overdue_holds == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} active holds past their expiry",
            e.overdue_holds
        ))
    }
}

fn no_500(e: &Evidence) -> Result<(), String> {
    let n = e
        .answers
        .iter()
        .filter(|(s, _)| *s >= 500 && *s != 503)
        .count();
    if n == 0 {
        Ok(())
    } else {
        Err(format!("{n} answers were 5xx other than 503"))
    }
}

fn every_503_says_when(e: &Evidence) -> Result<(), String> {
    let n = e.answers.iter().filter(|(s, r)| *s == 503 && !r).count();
    if n == 0 {
        Ok(())
    } else {
        Err(format!("{n} 503s without Retry-After"))
    }
}

fn no_crash_of_its_own(e: &Evidence) -> Result<(), String> {
    if e.unexpected_disconnects == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} requests found no region core outside the kill window",
            e.unexpected_disconnects
        ))
    }
}

type Check = fn(&Evidence) -> Result<(), String>;

const CHECKS: [(&str, Check); 7] = [
    ("no crash of its own", no_crash_of_its_own),
    ("no seat sold twice", no_seat_sold_twice),
    ("seen bookings survive", seen_bookings_survive),
    ("no money lost", no_money_lost),
    ("no hold outlives its TTL", no_hold_outlives_its_ttl),
    ("no 500", no_500),
    ("every 503 says when", every_503_says_when),
];

/// The negative controls: for each check, evidence corrupted so that it
/// must fail.
fn corrupted(e: &Evidence, check: &str) -> Evidence {
    let mut bad = e.clone();
    match check {
        "no seat sold twice" => {
            let seat = bad
                .sold_seats
                .first()
                .cloned()
                .unwrap_or(("show".into(), "seat".into()));
            bad.sold_seats.push(seat.clone());
            bad.sold_seats.push(seat);
        }
        "seen bookings survive" => bad.seen_confirmed.push("a-booking-that-vanished".into()),
        "no money lost" => bad.charges.push(("an-unbooked-charge".into(), 1000, 0)),
        "no hold outlives its TTL" => bad.overdue_holds += 1,
        "no 500" => bad.answers.push((500, false)),
        "every 503 says when" => bad.answers.push((503, false)),
        "no crash of its own" => bad.unexpected_disconnects += 1,
        other => panic!("no negative control for {other}"),
    }
    bad
}

// ------------------------------------------------------------ processes

// ------------------------------------------------------------ buyers

#[derive(Default)]
struct Notes {
    answers: Vec<(u16, bool)>,
    confirmed: Vec<String>,
    transport_errors: u64,
    unexpected_disconnects: u64,
    holds: u64,
    checkouts: u64,
}

async fn send(
    http: &reqwest::Client,
    req: reqwest::RequestBuilder,
    notes: &Mutex<Notes>,
    killed: &AtomicBool,
) -> Option<(u16, Value, Option<u64>)> {
    let _ = http;
    match req.timeout(Duration::from_secs(10)).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = resp.json::<Value>().await.unwrap_or(Value::Null);
            notes
                .lock()
                .expect("notes")
                .answers
                .push((status, retry.is_some()));
            Some((status, body, retry))
        }
        Err(_) => {
            // No answer: expected only while the test has the region core
            // killed; otherwise it crashed (or hung) by itself.
            let mut n = notes.lock().expect("notes");
            n.transport_errors += 1;
            if !killed.load(Ordering::SeqCst) {
                n.unexpected_disconnects += 1;
            }
            None
        }
    }
}

async fn buyer(
    n: usize,
    url: String,
    show: String,
    labels: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    notes: Arc<Mutex<Notes>>,
) {
    let http = reqwest::Client::new();
    let me = user(&format!("chaos-buyer-{n}"));
    let mut attempt = 0u64;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        // A buyer's pace: a purchase every few hundred milliseconds.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let seats: Vec<String> = {
            let mut rng = rand::thread_rng();
            let k = 1 + (attempt as usize % 3);
            labels.choose_multiple(&mut rng, k).cloned().collect()
        };
        let hold_key = format!("hold-{n}-{attempt}");
        let held = send(
            &http,
            http.post(format!("{url}/v1/shows/{show}/holds"))
                .bearer_auth(&me)
                .header("Idempotency-Key", &hold_key)
                .json(&json!({ "seats": seats })),
            &notes,
            &killed,
        )
        .await;
        let Some((201, hold, _)) = held else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        notes.lock().expect("notes").holds += 1;
        let hold_id = hold["hold_id"].as_str().unwrap_or_default().to_owned();
        let key = format!("pay-{n}-{attempt}");
        // Retry the same key through 503s and outages, as a client should.
        for _ in 0..40 {
            let answer = send(
                &http,
                http.post(format!("{url}/v1/holds/{hold_id}/checkout"))
                    .bearer_auth(&me)
                    .header("Idempotency-Key", &key)
                    .json(&json!({ "payment_method": "pm_card_ok" })),
                &notes,
                &killed,
            )
            .await;
            match answer {
                Some((201, booking, _)) => {
                    let mut n = notes.lock().expect("notes");
                    n.checkouts += 1;
                    if let Some(id) = booking["id"].as_str() {
                        n.confirmed.push(id.to_owned());
                    }
                    break;
                }
                Some((503 | 409, _, retry)) => {
                    let wait = retry.unwrap_or(1).min(2);
                    tokio::time::sleep(Duration::from_millis(250 * wait)).await;
                }
                Some(_) => break, // a final answer (402, 410, …)
                None => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

// ------------------------------------------------------------ the run

async fn operator_post(http: &reqwest::Client, url: &str, path: &str, body: Value) -> Value {
    let resp = http
        .post(format!("{url}{path}"))
        .bearer_auth(token("chaos-operator", Role::Operator))
        .json(&body)
        .send()
        .await
        .expect("operator request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.expect("json")
}

async fn seed(http: &reqwest::Client, url: &str) -> String {
    operator_post(
        http,
        url,
        "/v1/operator/cities",
        json!({"code": "chs", "name": "Chaos City"}),
    )
    .await;
    let venue = operator_post(
        http,
        url,
        "/v1/operator/venues",
        json!({"city": "chs", "name": "Chaos Arena", "time_zone": "Europe/London"}),
    )
    .await;
    let rows: Vec<Value> = (0..ROWS)
        .map(|r| json!({"row": row_label(r), "seats": PER_ROW, "category": "GA"}))
        .collect();
    let screen = operator_post(
        http,
        url,
        "/v1/operator/screens",
        json!({"venue_id": venue["id"], "name": "Main", "rows": rows}),
    )
    .await;
    let movie = operator_post(
        http,
        url,
        "/v1/operator/movies",
        json!({"title": "Chaos", "duration_minutes": 120}),
    )
    .await;
    let show = operator_post(
        http,
        url,
        "/v1/operator/shows",
        json!({
            "screen_id": screen["id"], "movie_id": movie["id"],
            "starts_at": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(),
            "prices": {"GA": 5000}, "currency": "GBP"
        }),
    )
    .await;
    show["id"].as_str().expect("show id").to_owned()
}

async fn gather(db: &sqlx::PgPool, gw: &SandboxProcess, notes: &Notes) -> Evidence {
    let sold_seats: Vec<(String, String)> =
        sqlx::query_as("SELECT show_id::text, seat_id::text FROM booking_seats WHERE active")
            .fetch_all(db)
            .await
            .expect("seats");
    let confirmed: Vec<(String,)> =
        sqlx::query_as("SELECT id::text FROM bookings WHERE status = 'CONFIRMED'")
            .fetch_all(db)
            .await
            .expect("bookings");
    let booked: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payment_id::text, amount_minor FROM bookings WHERE status = 'CONFIRMED'",
    )
    .fetch_all(db)
    .await
    .expect("booked");
    let overdue_holds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM holds WHERE state = 'ACTIVE' AND expires_at < now() - interval '5 seconds'",
    )
    .fetch_one(db)
    .await
    .expect("holds");
    let ledger = gw.ledger().await.expect("ledger");
    let charges = ledger["intents"]
        .as_array()
        .expect("intents")
        .iter()
        .filter(|i| i["status"] == "succeeded")
        .map(|i| {
            (
                i["reference"].as_str().unwrap_or_default().to_owned(),
                i["amount"].as_i64().unwrap_or_default(),
                i["amount_refunded"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    Evidence {
        sold_seats,
        seen_confirmed: notes.confirmed.clone(),
        confirmed: confirmed.into_iter().map(|c| c.0).collect(),
        charges,
        booked: booked.into_iter().collect(),
        overdue_holds,
        answers: notes.answers.clone(),
        unexpected_disconnects: notes.unexpected_disconnects,
    }
}

/// Settled: no payment in flight or unsettled, no refund pending.
async fn settled(db: &sqlx::PgPool) -> bool {
    let open: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM payments
                  WHERE status = 'CREATED' OR (status = 'SUCCEEDED' AND settled IS NULL))
              + (SELECT count(*) FROM refunds WHERE status <> 'SUCCEEDED')",
    )
    .fetch_one(db)
    .await
    .unwrap_or(1);
    open == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_keeps_its_invariants_through_redis_region_and_gateway_faults() {
    let started = Instant::now();
    let http = reqwest::Client::new();
    let mut redis = RedisServer::start().expect("private redis");
    let database_url = fresh_database().await.expect("database");
    let port = free_port().expect("port");
    let region_url = format!("http://127.0.0.1:{port}");
    let gw = SandboxProcess::start(None).await.expect("sandbox");
    let shard = ShardParts {
        database_url: &database_url,
        redis_url: &redis.url(),
        gateway_url: &gw.url,
        shard_code: "CHS",
    };
    let extra = [
        ("REGION_GATEWAY_TIMEOUT_MS", "1500".to_owned()),
        ("REGION_IDEMPOTENCY_LOCK_SECS", "2".into()),
        ("REGION_HOLD_TTL_SECS", HOLD_TTL_S.to_string()),
        ("REGION_RECONCILE_INTERVAL_SECS", "2".into()),
        ("REGION_RECONCILE_GRACE_SECS", "3".into()),
        ("REGION_REFUND_POLL_MS", "200".into()),
        ("REGION_REDIS_TIMEOUT_MS", "500".into()),
    ];
    let spec = region_core_spec(port, &shard, &extra).expect("region-core binary");
    let mut region = ServiceProcess::start(spec, REGION_READY)
        .await
        .expect("region core");
    let show = seed(&http, &region_url).await;
    let labels: Arc<Vec<String>> = Arc::new(
        (0..ROWS)
            .flat_map(|r| (1..=PER_ROW).map(move |s| format!("{}{s}", row_label(r))))
            .collect(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    // True from just before the region core is killed until it is ready
    // again: the only time a request may find no server.
    let killed = Arc::new(AtomicBool::new(false));
    let notes = Arc::new(Mutex::new(Notes::default()));
    let buyers: Vec<_> = (0..BUYERS)
        .map(|n| {
            tokio::spawn(buyer(
                n,
                region_url.clone(),
                show.clone(),
                labels.clone(),
                stop.clone(),
                killed.clone(),
                notes.clone(),
            ))
        })
        .collect();

    // The faults, one after another, with buying in between.
    let mut faults = Vec::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.kill();
    faults.push("redis killed (SIGKILL)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart().expect("redis restart");
    faults.push("redis restarted empty");
    tokio::time::sleep(Duration::from_secs(3)).await;
    killed.store(true, Ordering::SeqCst);
    region.kill().await;
    faults.push("region core killed (SIGKILL)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    region
        .restart(REGION_READY)
        .await
        .expect("region core restart");
    // Requests already on their way to the dead process may still fail.
    tokio::time::sleep(Duration::from_millis(500)).await;
    killed.store(false, Ordering::SeqCst);
    faults.push("region core restarted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    gw.freeze();
    faults.push("gateway frozen (SIGSTOP)");
    tokio::time::sleep(Duration::from_secs(4)).await;
    gw.resume();
    faults.push("gateway resumed (SIGCONT)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        let _ = b.await;
    }

    // Let reconciliation and refunds finish, and the holds expire.
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .expect("db");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !settled(&db).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        settled(&db).await,
        "payments and refunds settle within a minute"
    );
    tokio::time::sleep(Duration::from_secs(HOLD_TTL_S + 2)).await;

    let notes = Arc::try_unwrap(notes)
        .ok()
        .expect("buyers are done")
        .into_inner()
        .expect("notes");
    let evidence = gather(&db, &gw, &notes).await;
    let mut status_counts: HashMap<u16, u64> = HashMap::new();
    for (s, _) in &evidence.answers {
        *status_counts.entry(*s).or_default() += 1;
    }
    println!(
        "CHAOS: {}",
        json!({
            "buyers": BUYERS,
            "faults": faults,
            "requests": evidence.answers.len() as u64 + notes.transport_errors,
            "answers_by_status": status_counts,
            "transport_errors_while_down": notes.transport_errors,
            "unexpected_disconnects": notes.unexpected_disconnects,
            "holds": notes.holds,
            "bookings_seen": notes.confirmed.len(),
            "bookings_confirmed": evidence.confirmed.len(),
            "charges": evidence.charges.len(),
            "refunded_charges": evidence.charges.iter().filter(|c| c.2 > 0).count(),
            "seconds": started.elapsed().as_secs(),
        })
    );

    assert!(notes.checkouts > 0, "the buyers bought something");
    for (name, check) in CHECKS {
        check(&evidence).unwrap_or_else(|why| panic!("{name}: {why}"));
        assert!(
            check(&corrupted(&evidence, name)).is_err(),
            "negative control: {name} must catch corrupted evidence"
        );
    }
    region.kill().await;
    db.close().await;
}
