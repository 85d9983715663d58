//! Invariants 1 and 2 under contention: hundreds of concurrent holds over
//! overlapping multi-seat sets never put a seat in two live holds, each
//! hold is all or nothing, and Redis agrees with Postgres afterwards.
//! The negative control switches the protection off and shows the same
//! checks catch the double holds.

use e2e::{test_settings, user, TestApp};
use futures::future::join_all;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use testkit::invariants::{check, check_postgres, Shows};
use testkit::seed::row_label;

const ATTEMPTS: usize = 600;
const SHOWS: usize = 3;
const ROWS: usize = 3;
const PER_ROW: u16 = 10;

/// A successful hold as the client saw it.
#[derive(Debug)]
struct Won {
    show: String,
    hold_id: String,
    seats: Vec<String>,
    token: String,
}

/// Fires `ATTEMPTS` concurrent holds of 1-4 random seats on small shows
/// (30 seats each, so sets overlap heavily). Returns the wins and the
/// status counts.
async fn storm(app: &TestApp, shows: &[String]) -> (Vec<Won>, HashMap<u16, usize>) {
    let labels: Vec<String> = (0..ROWS)
        .flat_map(|r| (1..=PER_ROW).map(move |n| format!("{}{n}", row_label(r))))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let plans: Vec<(String, Vec<String>, String)> = (0..ATTEMPTS)
        .map(|i| {
            let show = shows[rng.gen_range(0..shows.len())].clone();
            let n = rng.gen_range(1..=4);
            let seats: Vec<String> = labels.choose_multiple(&mut rng, n).cloned().collect();
            (show, seats, user(&format!("user-{i}")))
        })
        .collect();
    let results = join_all(plans.into_iter().map(|(show, seats, token)| async move {
        let refs: Vec<&str> = seats.iter().map(String::as_str).collect();
        let (status, body) = app.hold(&token, &show, &refs).await.expect("request");
        (status, body, show, seats, token)
    }))
    .await;
    let mut statuses = HashMap::new();
    let mut won = Vec::new();
    for (status, body, show, seats, token) in results {
        *statuses.entry(status).or_insert(0) += 1;
        if status == 201 {
            let mut got: Vec<String> = body["seats"]
                .as_array()
                .expect("seats")
                .iter()
                .map(|s| s.as_str().expect("label").to_owned())
                .collect();
            let mut asked = seats.clone();
            got.sort();
            asked.sort();
            assert_eq!(got, asked, "a hold must take exactly the seats asked for");
            won.push(Won {
                show,
                hold_id: body["hold_id"].as_str().expect("hold id").to_owned(),
                seats,
                token,
            });
        }
    }
    (won, statuses)
}

/// Seats that two successful holds of the same show both claim.
fn client_side_double_holds(won: &[Won]) -> usize {
    let mut seen = HashSet::new();
    won.iter()
        .flat_map(|w| w.seats.iter().map(move |s| (w.show.clone(), s.clone())))
        .filter(|k| !seen.insert(k.clone()))
        .count()
}

async fn seed(app: &TestApp) -> Vec<String> {
    let mut shows = Vec::new();
    for _ in 0..SHOWS {
        shows.push(
            app.seed_show(ROWS, PER_ROW, chrono::Duration::days(3))
                .await
                .expect("seed"),
        );
    }
    shows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_overlapping_holds_never_double_hold() {
    let app = TestApp::default().await.expect("app");
    let shows = seed(&app).await;
    let (won, statuses) = storm(&app, &shows).await;

    // Only wins and conflicts: no 5xx, nothing else.
    let unexpected: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| **s != 201 && **s != 409)
        .collect();
    assert!(unexpected.is_empty(), "unexpected statuses: {statuses:?}");
    assert!(
        statuses.get(&409).copied().unwrap_or(0) > 100,
        "the test must create contention: {statuses:?}"
    );
    assert!(won.len() >= 10, "some holds must win: {statuses:?}");

    assert_eq!(
        client_side_double_holds(&won),
        0,
        "two successful holds share a seat"
    );

    // All or nothing, as Postgres records it: every winner owns all its
    // seats; losers left nothing behind.
    let live_seats: i64 = app
        .count("SELECT count(*) FROM hold_seats WHERE live")
        .await;
    let won_seats: usize = won.iter().map(|w| w.seats.len()).sum();
    assert_eq!(
        live_seats as usize, won_seats,
        "live seats = seats of winning holds"
    );
    let holds: i64 = app.count("SELECT count(*) FROM holds").await;
    assert_eq!(
        holds as usize,
        won.len(),
        "a losing hold must not be recorded"
    );

    // Under load a Redis call may time out and a hold take the
    // Postgres-only path; once the breaker is closed Redis must agree.
    assert!(app.wait_for_fast_path().await, "fast path must be back");
    let report = check(&app.db, &app.redis_url, &shows).await.expect("check");
    assert_eq!(report, Default::default(), "invariants after the storm");

    // The seat maps agree with what was won.
    for show in &shows {
        let (_, map) = app
            .get(&format!("/v1/shows/{show}/seats"))
            .await
            .expect("map");
        let expected: usize = won
            .iter()
            .filter(|w| &w.show == show)
            .map(|w| w.seats.len())
            .sum();
        assert_eq!(
            map["held"].as_u64(),
            Some(expected as u64),
            "seat map of {show}"
        );
    }

    // Each winner can read its hold back with all its seats.
    let w = &won[0];
    let (s, h) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/holds/{}", w.hold_id),
            Some(&w.token),
            None,
        )
        .await
        .expect("get");
    assert_eq!(s, 200);
    assert_eq!(h["seats"].as_array().map(Vec::len), Some(w.seats.len()));
    app.stop().await;
}

/// Negative control: with the Redis lock, the Postgres checks and the
/// last-line unique index all switched off, the very same storm and
/// checks must report double holds — proof the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_without_protection_the_checks_see_double_holds() {
    let mut settings = test_settings().await.expect("settings");
    settings.unsafe_disable_seat_protection = true;
    let app = TestApp::spawn(settings).await.expect("app");
    sqlx::query("DROP INDEX hold_seats_one_live_hold_per_seat")
        .execute(&app.db)
        .await
        .expect("drop the last line of defence");
    let shows = seed(&app).await;
    let (won, _) = storm(&app, &shows).await;

    assert!(
        client_side_double_holds(&won) > 0,
        "client-side check must see doubles"
    );
    let report = check_postgres(&app.db, Shows::All).await.expect("check");
    assert!(
        report.double_live_holds > 0,
        "checker must see doubles: {report:?}"
    );
    assert!(!report.postgres_ok());
    app.stop().await;
}

/// Postgres is the last line even when Redis lies: a seat whose Redis key
/// vanished (but is held in Postgres) is still refused, and the refused
/// hold's Redis keys are given back.
#[tokio::test]
async fn postgres_refuses_a_seat_redis_forgot() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 5, chrono::Duration::days(2))
        .await
        .expect("seed");
    let (s, _) = app
        .hold(&user("alice"), &show, &["A1", "A2"])
        .await
        .expect("hold");
    assert_eq!(s, 201);
    let mut r = app.redis().await.expect("redis");
    let _: () = redis::cmd("DEL")
        .arg(format!("seat:{{{show}}}:A1"))
        .query_async(&mut r)
        .await
        .expect("del");

    let (s, body) = app
        .hold(&user("bob"), &show, &["A1", "A3"])
        .await
        .expect("hold");
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "seats_unavailable");
    assert_eq!(body["error"]["details"], serde_json::json!(["A1"]));
    // Bob's lock on A3 was released, so A3 is still free for anyone.
    let a3 = app.lock_owner(&show, "A3").await;
    assert_eq!(a3, None);
    let (s, _) = app
        .hold(&user("carol"), &show, &["A3"])
        .await
        .expect("hold");
    assert_eq!(s, 201);
    assert!(check_postgres(&app.db, Shows::All)
        .await
        .expect("check")
        .postgres_ok());
    app.stop().await;
}
