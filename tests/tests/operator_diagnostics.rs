//! Operator diagnostics (issue 16, "no runbook step needs SQL") end to
//! end, against real Postgres, Redis, the sandbox gateway and a real SMTP
//! server. Each endpoint that replaced a runbook SQL recipe is shown the
//! condition it reports, made for real:
//!
//! - the shard's status: the path switch's lease, the fast path, this
//!   replica's link, an outbox backlog (the relay off), an expired hold
//!   the sweeper never freed (the sweeper stopped), unsettled payments;
//! - shows kept overlapping (rows made as the overlap migration left
//!   them, in SQL: the API refuses overlaps);
//! - the seat consistency checks, and Redis against Postgres for a show:
//!   the negative controls corrupt rows and keys behind the API and the
//!   checks must find exactly that;
//! - a check-in conflict from two offline gates;
//! - charges in flight (a lost gateway answer, webhooks off) until
//!   reconciliation settles them;
//! - a refund backing off for minutes, sent now;
//! - e-mail the SMTP server refused, listed and re-sent once it takes
//!   mail again, and a booking's confirmation sent again as a new message.
//!
//! Every endpoint also refuses another city's token (403), a token
//! without the scope (403) and bad input (4xx), changing nothing.

use chrono::Duration as Span;
use e2e::money::{self, set_gateway_faults, set_webhooks};
use e2e::{eventually, operator_token, test_settings, token, user, TestApp};
use region_core::auth::Scope;
use reqwest::Method;
use serde_json::{json, Value};
use shared::token::Role;
use std::time::Duration;
use testkit::mail::MailCatcher;
use uuid::Uuid;

const SOON: Duration = Duration::from_secs(20);

fn platform() -> String {
    token("operator-1", Role::Operator)
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    tok: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.send(method, path, Some(tok), body)
        .await
        .expect("request")
}

async fn get(app: &TestApp, path: &str, tok: &str) -> (u16, Value) {
    call(app, Method::GET, path, tok, None).await
}

async fn post(app: &TestApp, path: &str, tok: &str, body: Option<Value>) -> (u16, Value) {
    call(app, Method::POST, path, tok, body).await
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn list<'a>(v: &'a Value, field: &str) -> &'a Vec<Value> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// A city of its own with no shows (so the shard has another city).
async fn other_city(app: &TestApp) -> String {
    let city: String = Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(6)
        .collect::<String>()
        + "yy";
    let (s, v) = app
        .operator_post(
            "/v1/operator/cities",
            json!({"code": city, "name": "Elsewhere"}),
        )
        .await
        .expect("city");
    assert_eq!(s, 201, "{v}");
    city
}

/// The `seat_id` of `label` in `show`.
async fn seat_id(app: &TestApp, show: &str, label: &str) -> Uuid {
    sqlx::query_scalar(
        "SELECT ss.seat_id FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
          WHERE ss.show_id = $1 AND s.label = $2",
    )
    .bind(Uuid::parse_str(show).expect("uuid"))
    .bind(label)
    .fetch_one(&app.db)
    .await
    .expect("seat")
}

/// A request that must be refused: method, path, token, body, and the
/// status and error code it gets.
type Refusal<'a> = (Method, String, &'a str, Option<Value>, u16, &'a str);

/// Each of `cases` is refused with its status and code.
async fn refused(app: &TestApp, cases: &[Refusal<'_>]) {
    for (method, path, tok, body, status, want) in cases {
        let (s, v) = call(app, method.clone(), path, tok, body.clone()).await;
        assert_eq!((s, code(&v)), (*status, *want), "{method} {path}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_status_shows_leases_paths_links_and_backlogs() {
    // The outbox relay off: the booking's events wait, a real backlog.
    let mut settings = test_settings().await.expect("settings");
    settings.outbox_relay = false;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let city = app.show_city(&show).await;
    app.buy("ann", &show, &["A1"]).await;
    // The sweeper stopped (it runs once at start, then hourly) and holds
    // of one second: a hold that ends is never freed.
    let app = app
        .restart(|s| {
            s.outbox_relay = false;
            s.sweep_interval_ms = 3_600_000;
            s.hold_ttl_secs = 1;
        })
        .await
        .expect("restart");
    app.hold_id("bob", &show, &["A2"]).await;
    let reader = operator_token("reader", &[&city], &[Scope::Read]);
    let status = || async { get(&app, "/v1/operator/shard", &reader).await };

    // The path switch's lease is taken at start, by the replica answering.
    assert!(
        eventually(SOON, || async {
            let (_, v) = status().await;
            list(&v, "leases")
                .iter()
                .any(|l| l["job"] == "redis-path" && l["live"] == true)
                && list(&v, "replicas").iter().any(|r| r["ok"] == true)
                && v["sweeper"]["expired_held_seats"] == 1
        })
        .await,
        "{}",
        status().await.1
    );
    let (s, v) = status().await;
    assert_eq!(s, 200, "{v}");
    let me = str_of(&v["answered_by"], "replica");
    assert_eq!(v["answered_by"]["fast_path"], true, "{v}");
    let lease = list(&v, "leases")
        .iter()
        .find(|l| l["job"] == "redis-path")
        .expect("lease");
    assert_eq!(lease["holder"], me, "{v}");
    assert!(lease["epoch"].as_i64() >= Some(1), "{v}");
    assert_eq!(v["redis_path"]["fast"], true, "{v}");
    assert_eq!(
        v["redis_path"]["generation"].as_i64().map(|g| g % 2),
        Some(0)
    );
    let link = list(&v, "replicas")
        .iter()
        .find(|r| r["replica"] == me)
        .expect("this replica's link");
    assert_eq!(
        (link["ok"].clone(), link["counted"].clone()),
        (json!(true), json!(true))
    );
    // The outbox: exactly what is unpublished.
    let unpublished = app
        .count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .await;
    assert!(unpublished >= 1);
    assert_eq!(v["outbox"]["unpublished"], unpublished, "{v}");
    assert!(v["outbox"]["oldest_seconds"].as_f64() >= Some(0.0), "{v}");
    // Money and mail: nothing waits.
    assert_eq!(
        v["money"],
        json!({"payments_unsettled": 0, "oldest_unsettled_seconds": null,
               "refunds_pending": 0, "refunds_failed": 0}),
        "{v}"
    );
    assert_eq!(v["mail"]["pending"], 0, "{v}");
    assert_eq!(v["sweeper"]["overdue_after_seconds"], 10.0, "{v}");
    // Ten seconds after the hold ended, its seat is overdue.
    assert!(
        eventually(Duration::from_secs(20), || async {
            status().await.1["sweeper"]["overdue_seats"] == 1
        })
        .await,
        "{}",
        status().await.1
    );
    let (_, v) = status().await;
    assert!(v["sweeper"]["oldest_expired_at"].is_string(), "{v}");
    assert_eq!(
        app.count("SELECT count(*) FROM show_seats WHERE status = 'HELD'")
            .await,
        1,
        "the sweeper really is stopped"
    );

    // It describes the whole shard: a token for one of two cities is
    // refused; one for both is not.
    let elsewhere = other_city(&app).await;
    let one = operator_token("one", &[&city], &Scope::ALL);
    let both = operator_token("both", &[&city, &elsewhere], &[Scope::Read]);
    let (s, v) = get(&app, "/v1/operator/shard", &both).await;
    assert_eq!(s, 200, "{v}");
    refused(
        &app,
        &[
            (
                Method::GET,
                "/v1/operator/shard".into(),
                &one,
                None,
                403,
                "city_forbidden",
            ),
            (
                Method::GET,
                "/v1/operator/shard".into(),
                &user("ann"),
                None,
                403,
                "forbidden",
            ),
            (
                Method::GET,
                "/v1/operator/shard?verbose=1".into(),
                &both,
                None,
                400,
                "bad_query",
            ),
        ],
    )
    .await;
    let (s, _) = app.get("/v1/operator/shard").await.expect("request");
    assert_eq!(s, 401);
    app.stop().await;
}

#[tokio::test]
async fn shows_kept_overlapping_are_listed_in_the_tokens_cities() {
    let app = TestApp::default().await.expect("app");
    let first = app.seed_show(1, 4, Span::days(3)).await.expect("show");
    let city = app.show_city(&first).await;
    // A second show on the same screen, after the first ends (120 min).
    let (screen, movie, starts_at): (Uuid, Uuid, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT screen_id, movie_id, starts_at FROM shows WHERE id = $1")
            .bind(Uuid::parse_str(&first).expect("uuid"))
            .fetch_one(&app.db)
            .await
            .expect("show row");
    let api = testkit::api::Api::with_client(&app.url, app.http.clone());
    let second = testkit::seed::create_show_in(
        &api,
        &format!("Bearer {}", platform()),
        testkit::seed::NewShow {
            screen_id: screen,
            movie_id: movie,
            starts_at: starts_at + Span::hours(3),
            prices: &[("REGULAR", 25_000)],
            currency: "INR",
        },
        shared::api::SaleMode::Open,
    )
    .await
    .expect("second show")
    .id
    .to_string();
    // None yet.
    let (s, v) = get(&app, "/v1/operator/shows/overlaps", &platform()).await;
    assert_eq!((s, v.clone()), (200, json!({"shows": []})), "{v}");
    // As the overlap migration left shows that overlapped already: both
    // unchecked, one an hour into the other. (The API refuses this.)
    let third = app.seed_show(1, 4, Span::days(4)).await.expect("show");
    let other = app.show_city(&third).await;
    sqlx::query(
        "UPDATE shows SET overlap_checked = false,
                starts_at = CASE WHEN id = $2 THEN starts_at - interval '2 hours' ELSE starts_at END
          WHERE id = ANY($1)",
    )
    .bind(vec![
        Uuid::parse_str(&first).expect("uuid"),
        Uuid::parse_str(&second).expect("uuid"),
        Uuid::parse_str(&third).expect("uuid"),
    ])
    .bind(Uuid::parse_str(&second).expect("uuid"))
    .execute(&app.db)
    .await
    .expect("legacy rows");

    let mine = operator_token("mine", &[&city], &[Scope::Read]);
    let (s, v) = get(&app, "/v1/operator/shows/overlaps", &mine).await;
    assert_eq!(s, 200, "{v}");
    let shows: Vec<(&str, Value)> = list(&v, "shows")
        .iter()
        .map(|s| (str_of(s, "show_id"), s["overlaps_with"].clone()))
        .collect();
    assert_eq!(
        shows,
        [
            (first.as_str(), json!([second])),
            (second.as_str(), json!([first])),
        ],
        "{v}"
    );
    let row = &list(&v, "shows")[0];
    assert_eq!(row["city"], city.as_str());
    assert_eq!(row["screen_id"], screen.to_string());
    assert_eq!(row["status"], "SCHEDULED");
    assert!(
        row["title"].is_string() && row["ends_at"].is_string(),
        "{row}"
    );
    // The platform sees the other city's too (alone on its screen).
    let (_, all) = get(&app, "/v1/operator/shows/overlaps", &platform()).await;
    let third_row = list(&all, "shows")
        .iter()
        .find(|s| s["show_id"] == third.as_str())
        .expect("the other city's show");
    assert_eq!(
        (
            third_row["city"].clone(),
            third_row["overlaps_with"].clone()
        ),
        (json!(other), json!([]))
    );
    refused(
        &app,
        &[
            (
                Method::GET,
                "/v1/operator/shows/overlaps".into(),
                &user("ann"),
                None,
                403,
                "forbidden",
            ),
            (
                Method::GET,
                "/v1/operator/shows/overlaps?city=x".into(),
                &mine,
                None,
                400,
                "bad_query",
            ),
        ],
    )
    .await;

    // Resolved through the API: a move onto the other kept show is
    // refused (the constraint alone would not see it); a move clear of it
    // brings both under the constraint and off the list.
    let patch = |at: chrono::DateTime<chrono::Utc>| {
        let (app, second) = (&app, second.clone());
        async move {
            app.http
                .patch(format!("{}/v1/operator/shows/{second}", app.url))
                .bearer_auth(platform())
                .json(&json!({ "starts_at": at }))
                .send()
                .await
                .expect("patch")
        }
    };
    let r = patch(starts_at + Span::minutes(30)).await;
    assert_eq!(r.status(), 409, "onto the kept show");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "show_overlaps", "{body}");
    let (_, v) = get(&app, "/v1/operator/shows/overlaps", &mine).await;
    assert_eq!(
        list(&v, "shows").len(),
        2,
        "a refused move changes nothing: {v}"
    );
    let r = patch(starts_at + Span::hours(3)).await;
    assert_eq!(r.status(), 200, "clear of it");
    let (_, v) = get(&app, "/v1/operator/shows/overlaps", &mine).await;
    assert_eq!(v, json!({"shows": []}), "both resolved: {v}");
    let checked: Vec<bool> =
        sqlx::query_scalar("SELECT overlap_checked FROM shows WHERE id = ANY($1) ORDER BY id")
            .bind(vec![
                Uuid::parse_str(&first).expect("uuid"),
                Uuid::parse_str(&second).expect("uuid"),
            ])
            .fetch_all(&app.db)
            .await
            .expect("flags");
    assert_eq!(checked, [true, true]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consistency_checks_find_what_was_corrupted() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(2, 5, Span::days(3)).await.expect("show");
    let city = app.show_city(&show).await;
    let elsewhere = other_city(&app).await;
    let ann = app.hold_id("ann", &show, &["A1", "A2"]).await;
    let bob = app.hold_id("bob", &show, &["A3"]).await;
    let carol = app.buy("carol", &show, &["B1"]).await;
    let reader = operator_token("reader", &[&city], &[Scope::Read]);
    let outsider = operator_token("outsider", &[&elsewhere], &[Scope::Read]);
    let one_show = format!("/v1/operator/integrity?show_id={show}");
    let clean = |v: &Value| {
        [
            "double_holds",
            "holder_mismatches",
            "partial_holds",
            "booking_mismatches",
        ]
        .iter()
        .all(|f| list(v, f).is_empty())
    };

    // All is well, shard-wide and for the show, Redis included.
    let (s, v) = get(&app, "/v1/operator/integrity", &reader).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["ok"] == true && clean(&v) && v["redis"].is_null(), "{v}");
    assert_eq!(v["cities"], json!([city]));
    let (s, v) = get(&app, &one_show, &reader).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        (
            v["redis"]["checked"].clone(),
            v["redis"]["seats"].clone(),
            v["redis"]["mismatches"].clone()
        ),
        (json!(true), json!(10), json!([])),
        "{v}"
    );

    // Negative control, Redis: bob's seat key deleted, a stale key on a
    // free seat. Postgres is still consistent; Redis is not.
    let mut redis = app.redis().await.expect("redis");
    let key = |label: &str| {
        region_core::redis_path::seat_key(
            shared::ShowId(Uuid::parse_str(&show).expect("uuid")),
            label,
        )
    };
    let _: i64 = redis::cmd("DEL")
        .arg(key("A3"))
        .query_async(&mut redis)
        .await
        .expect("del");
    let stale = Uuid::new_v4().to_string();
    let _: () = redis::cmd("SET")
        .arg(key("B5"))
        .arg(&stale)
        .arg("PX")
        .arg(600_000)
        .query_async(&mut redis)
        .await
        .expect("set");
    let (_, v) = get(&app, &one_show, &reader).await;
    assert!(v["ok"] == false && clean(&v), "{v}");
    assert_eq!(
        v["redis"]["mismatches"],
        json!([
            {"seat": "A3", "postgres": format!("held by {bob}"), "redis": null},
            {"seat": "B5", "postgres": "free", "redis": stale},
        ]),
        "{v}"
    );
    // Put right: clean again.
    let _: () = redis::cmd("SET")
        .arg(key("A3"))
        .arg(&bob)
        .arg("PX")
        .arg(600_000)
        .query_async(&mut redis)
        .await
        .expect("set");
    let _: i64 = redis::cmd("DEL")
        .arg(key("B5"))
        .query_async(&mut redis)
        .await
        .expect("del");
    let (_, v) = get(&app, &one_show, &reader).await;
    assert_eq!(v["ok"], true, "{v}");

    // Negative control, Postgres, behind the API:
    // 1. a second ACTIVE hold names A1 (its row not live: the unique index
    //    guards live rows), and owns none of its one seat;
    // 2. A2's row names that hold while ann's live row says ann;
    // 3. carol's booked B1 made AVAILABLE.
    let mallory = Uuid::new_v4();
    let show_id = Uuid::parse_str(&show).expect("uuid");
    sqlx::query(
        "INSERT INTO holds (id, show_id, user_id, seat_count, expires_at)
         VALUES ($1, $2, 'mallory', 1, now() + interval '10 minutes')",
    )
    .bind(mallory)
    .bind(show_id)
    .execute(&app.db)
    .await
    .expect("hold");
    sqlx::query(
        "INSERT INTO hold_seats (hold_id, show_id, seat_id, live) VALUES ($1, $2, $3, false)",
    )
    .bind(mallory)
    .bind(show_id)
    .bind(seat_id(&app, &show, "A1").await)
    .execute(&app.db)
    .await
    .expect("hold seat");
    sqlx::query("UPDATE show_seats SET hold_id = $1 WHERE show_id = $2 AND seat_id = $3")
        .bind(mallory)
        .bind(show_id)
        .bind(seat_id(&app, &show, "A2").await)
        .execute(&app.db)
        .await
        .expect("holder");
    sqlx::query(
        "UPDATE show_seats SET status = 'AVAILABLE', booking_id = NULL
          WHERE show_id = $1 AND seat_id = $2",
    )
    .bind(show_id)
    .bind(seat_id(&app, &show, "B1").await)
    .execute(&app.db)
    .await
    .expect("unbook");

    for path in ["/v1/operator/integrity".to_owned(), one_show.clone()] {
        let (s, v) = get(&app, &path, &reader).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(
            v["double_holds"],
            json!([{"show_id": show, "seat": "A1", "holds": [ann, mallory.to_string()]}]),
            "{v}"
        );
        assert_eq!(
            v["holder_mismatches"],
            json!([{"show_id": show, "seat": "A2", "status": "HELD",
                    "show_seats_says": mallory.to_string(), "hold_seats_says": ann}]),
            "{v}"
        );
        assert_eq!(
            v["partial_holds"],
            json!([{"hold_id": mallory.to_string(), "show_id": show, "state": "ACTIVE",
                    "seat_count": 1, "live_seats": 0}]),
            "{v}"
        );
        assert_eq!(
            v["booking_mismatches"],
            json!([{"show_id": show, "seat": "B1", "problem": "booking_seat_not_booked",
                    "status": "AVAILABLE", "show_seats_says": null,
                    "bookings_say": [carol["id"]]}]),
            "{v}"
        );
        assert_eq!(v["truncated"], false);
    }
    // Redis now disagrees with the corrupted rows, seat by seat.
    let (_, v) = get(&app, &one_show, &reader).await;
    let seats: Vec<&str> = list(&v["redis"], "mismatches")
        .iter()
        .map(|m| str_of(m, "seat"))
        .collect();
    assert_eq!(seats, ["A2", "B1"], "{v}");

    // Another city's token: its shard-wide check holds only its cities
    // (clean); the show is not its to check.
    let (s, v) = get(&app, "/v1/operator/integrity", &outsider).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["ok"] == true && clean(&v), "{v}");
    let unknown = Uuid::new_v4();
    refused(
        &app,
        &[
            (
                Method::GET,
                one_show.clone(),
                &outsider,
                None,
                403,
                "city_forbidden",
            ),
            (
                Method::GET,
                one_show.clone(),
                &user("ann"),
                None,
                403,
                "forbidden",
            ),
            (
                Method::GET,
                "/v1/operator/integrity?show_id=xyz".into(),
                &reader,
                None,
                400,
                "invalid_show_id",
            ),
            (
                Method::GET,
                format!("/v1/operator/integrity?show_id={unknown}"),
                &reader,
                None,
                404,
                "unknown_show",
            ),
            (
                Method::GET,
                "/v1/operator/integrity?show=1".into(),
                &reader,
                None,
                400,
                "bad_query",
            ),
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_in_conflicts_of_a_show_are_listed() {
    use shared::ticket::{KeyRing, OfflineScanner, OfflineVerdict, PublicKey};
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let city = app.show_city(&show).await;
    let elsewhere = other_city(&app).await;
    let booking = app.buy("ann", &show, &["A1", "A2"]).await;
    let (s, t) = get(
        &app,
        &format!("/v1/bookings/{}/tickets", str_of(&booking, "id")),
        &user("ann"),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let codes: Vec<String> = list(&t, "tickets")
        .iter()
        .map(|t| str_of(t, "code").to_owned())
        .collect();
    let (_, keys) = app.get("/v1/tickets/keys").await.expect("keys");
    let keys: Vec<PublicKey> = serde_json::from_value(keys["keys"].clone()).expect("keys");
    let ring = KeyRing::new(&keys).expect("ring");
    let show_id = Uuid::parse_str(&show).expect("uuid");
    // Two gates without network admit both tickets each.
    // Whole seconds: the scans' times come back as Postgres stores them.
    let t0 = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now() - Span::minutes(10), 0);
    let mut north = OfflineScanner::new(show_id, "north", ring.clone());
    let mut south = OfflineScanner::new(show_id, "south", ring);
    for (i, code) in codes.iter().enumerate() {
        let i = i as i64;
        assert!(matches!(
            north.scan(code, t0 + Span::minutes(i)),
            OfflineVerdict::Admit(_)
        ));
        assert!(matches!(
            south.scan(code, t0 + Span::minutes(2 + i)),
            OfflineVerdict::Admit(_)
        ));
    }
    for scans in [north.take_uploads(), south.take_uploads()] {
        let (s, r) = post(
            &app,
            &format!("/v1/shows/{show}/checkins/offline"),
            &token("door-2", Role::Staff),
            Some(json!({ "scans": scans })),
        )
        .await;
        assert_eq!(s, 200, "{r}");
    }

    let reader = operator_token("reader", &[&city], &[Scope::Read]);
    let path = format!("/v1/operator/shows/{show}/checkin-conflicts");
    let (s, v) = get(&app, &path, &reader).await;
    assert_eq!(s, 200, "{v}");
    let seen: Vec<(&str, &str, &str, &str)> = list(&v, "conflicts")
        .iter()
        .map(|c| {
            (
                str_of(c, "seat"),
                str_of(c, "first_gate"),
                str_of(c, "gate"),
                str_of(c, "first_source"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("A1", "north", "south", "offline"),
            ("A2", "north", "south", "offline")
        ],
        "{v}"
    );
    let first = &list(&v, "conflicts")[0];
    assert_eq!(first["booking_number"], booking["number"]);
    assert_eq!(first["staff_id"], "door-2");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(str_of(first, "scanned_at")).expect("time"),
        t0 + Span::minutes(2)
    );
    assert_eq!(v["next_after"], Value::Null);
    // Two pages of one.
    let (_, p1) = get(&app, &format!("{path}?limit=1"), &reader).await;
    assert_eq!(list(&p1, "conflicts").len(), 1);
    let after = p1["next_after"].as_i64().expect("next_after");
    let (_, p2) = get(&app, &format!("{path}?limit=1&after={after}"), &reader).await;
    assert_eq!(list(&p2, "conflicts")[0]["seat"], "A2", "{p2}");
    assert_eq!(p2["next_after"], Value::Null, "{p2}");

    let outsider = operator_token("outsider", &[&elsewhere], &[Scope::Read]);
    let unknown = Uuid::new_v4();
    refused(
        &app,
        &[
            (
                Method::GET,
                path.clone(),
                &outsider,
                None,
                403,
                "city_forbidden",
            ),
            (
                Method::GET,
                path.clone(),
                &token("door-2", Role::Staff),
                None,
                403,
                "forbidden",
            ),
            (
                Method::GET,
                format!("{path}?limit=0"),
                &reader,
                None,
                422,
                "invalid_limit",
            ),
            (
                Method::GET,
                format!("{path}?after=x"),
                &reader,
                None,
                400,
                "bad_query",
            ),
            (
                Method::GET,
                "/v1/operator/shows/xyz/checkin-conflicts".into(),
                &reader,
                None,
                400,
                "invalid_show_id",
            ),
            (
                Method::GET,
                format!("/v1/operator/shows/{unknown}/checkin-conflicts"),
                &reader,
                None,
                404,
                "unknown_show",
            ),
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_in_flight_are_listed_until_reconciliation_settles_them() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let city = app.show_city(&show).await;
    let elsewhere = other_city(&app).await;
    // The gateway charges but its answer is lost, and no webhook comes.
    set_webhooks(&app, false).await.expect("webhooks off");
    let mut payments = Vec::new();
    for (who, seat) in [("ann", "A1"), ("bob", "A2")] {
        let hold = app.hold_id(who, &show, &[seat]).await;
        let a = money::checkout(
            &app,
            &user(who),
            &hold,
            &format!("k-{who}"),
            "pm_fault_lost_success",
        )
        .await
        .expect("checkout");
        assert_eq!(
            (a.status, a.code()),
            (503, "payment_pending"),
            "{:?}",
            a.json
        );
        let id: Uuid = sqlx::query_scalar("SELECT id FROM payments WHERE hold_id = $1")
            .bind(Uuid::parse_str(&hold).expect("uuid"))
            .fetch_one(&app.db)
            .await
            .expect("payment");
        payments.push(id.to_string());
    }
    let reader = operator_token("reader", &[&city], &[Scope::Read]);
    let (s, v) = get(&app, "/v1/operator/payments?state=unsettled", &reader).await;
    assert_eq!(s, 200, "{v}");
    let listed: Vec<(&str, &str, &str)> = list(&v, "payments")
        .iter()
        .map(|p| (str_of(p, "id"), str_of(p, "status"), str_of(p, "user_id")))
        .collect();
    assert_eq!(
        listed,
        [
            (payments[0].as_str(), "CREATED", "ann"),
            (payments[1].as_str(), "CREATED", "bob"),
        ],
        "{v}"
    );
    let first = &list(&v, "payments")[0];
    assert_eq!(
        (
            first["amount_minor"].clone(),
            first["currency"].clone(),
            first["city"].clone()
        ),
        (json!(25_000), json!("INR"), json!(city))
    );
    assert!(first["age_seconds"].as_i64() >= Some(0));
    // Pages of one.
    let (_, p1) = get(&app, "/v1/operator/payments?limit=1", &reader).await;
    assert_eq!(p1["next_after"], payments[0].as_str(), "{p1}");
    let (_, p2) = get(
        &app,
        &format!("/v1/operator/payments?limit=1&after={}", payments[0]),
        &reader,
    )
    .await;
    assert_eq!(list(&p2, "payments")[0]["id"], payments[1].as_str(), "{p2}");
    assert_eq!(p2["next_after"], Value::Null, "{p2}");
    // Another city's token sees none of them; the status counts them.
    let outsider = operator_token("outsider", &[&elsewhere], &[Scope::Read]);
    let (s, v) = get(&app, "/v1/operator/payments", &outsider).await;
    assert_eq!((s, v["payments"].clone()), (200, json!([])), "{v}");
    let (_, status) = get(&app, "/v1/operator/shard", &platform()).await;
    assert_eq!(status["money"]["payments_unsettled"], 2, "{status}");

    let before = money::footprint(&app).await.expect("footprint");
    let unknown = Uuid::new_v4();
    refused(
        &app,
        &[
            (
                Method::GET,
                "/v1/operator/payments?state=paid".into(),
                &reader,
                None,
                422,
                "invalid_state",
            ),
            (
                Method::GET,
                "/v1/operator/payments?limit=0".into(),
                &reader,
                None,
                422,
                "invalid_limit",
            ),
            (
                Method::GET,
                "/v1/operator/payments?after=zzz".into(),
                &reader,
                None,
                400,
                "invalid_cursor",
            ),
            (
                Method::GET,
                format!("/v1/operator/payments?after={unknown}"),
                &reader,
                None,
                422,
                "invalid_cursor",
            ),
            (
                Method::GET,
                "/v1/operator/payments?status=CREATED".into(),
                &reader,
                None,
                400,
                "bad_query",
            ),
            (
                Method::GET,
                "/v1/operator/payments".into(),
                &user("ann"),
                None,
                403,
                "forbidden",
            ),
        ],
    )
    .await;
    assert_eq!(money::footprint(&app).await.expect("footprint"), before);

    // Reconciliation asks the gateway and books both: none left.
    money::reconcile(&app).await.expect("reconcile");
    let (_, v) = get(&app, "/v1/operator/payments", &reader).await;
    assert_eq!(v["payments"], json!([]), "{v}");
    assert_eq!(app.count("SELECT count(*) FROM bookings").await, 2);
    app.stop().await;
}

/// The refund of booking `number`, as the operator's lookup shows it.
async fn refund_of(app: &TestApp, number: &str) -> Value {
    let (s, b) = get(app, &format!("/v1/operator/bookings/{number}"), &platform()).await;
    assert_eq!(s, 200, "{b}");
    b["refund"].clone()
}

async fn cancel(app: &TestApp, who: &str, booking: &Value) {
    let (s, b) = post(
        app,
        &format!("/v1/bookings/{}/cancel", str_of(booking, "id")),
        &user(who),
        None,
    )
    .await;
    assert_eq!(s, 200, "cancel: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_backing_off_for_minutes_is_sent_now() {
    let mut settings = test_settings().await.expect("settings");
    // After one failure the worker waits 5 to 10 minutes.
    settings.refund_backoff_base_ms = 600_000;
    settings.refund_backoff_max_secs = 3600;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let city = app.show_city(&show).await;
    let elsewhere = other_city(&app).await;
    let ann = app.buy("ann", &show, &["A1"]).await;
    let bob = app.buy("bob", &show, &["A2"]).await;
    // Bob's refund is refused for good: FAILED.
    set_gateway_faults(&app, json!({"refunds_refuse_next": 1}))
        .await
        .expect("faults");
    cancel(&app, "bob", &bob).await;
    let bob_number = str_of(&bob, "number");
    assert!(
        eventually(SOON, || async {
            refund_of(&app, bob_number).await["status"] == "FAILED"
        })
        .await
    );
    // Ann's fails once (503) and backs off.
    set_gateway_faults(&app, json!({"refunds_fail_next": 1}))
        .await
        .expect("faults");
    cancel(&app, "ann", &ann).await;
    let number = str_of(&ann, "number");
    assert!(
        eventually(SOON, || async {
            refund_of(&app, number).await["attempts"] == 1
        })
        .await,
        "{}",
        refund_of(&app, number).await
    );
    let refund = refund_of(&app, number).await;
    assert_eq!(refund["status"], "PENDING", "{refund}");
    let due =
        chrono::DateTime::parse_from_rfc3339(str_of(&refund, "next_attempt_at")).expect("time");
    assert!(due > chrono::Utc::now() + Span::minutes(4), "{refund}");
    let id = str_of(&refund, "id").to_owned();
    let path = format!("/v1/operator/refunds/{id}/send-now");

    // Refused: nothing changes.
    let reader = operator_token("reader", &[&city], &[Scope::Read]);
    let outsider = operator_token("outsider", &[&elsewhere], &[Scope::Refunds]);
    let refunder = operator_token("refunder", &[&city], &[Scope::Refunds]);
    let bob_refund = str_of(&refund_of(&app, bob_number).await, "id").to_owned();
    refused(
        &app,
        &[
            (
                Method::POST,
                path.clone(),
                &reader,
                None,
                403,
                "scope_forbidden",
            ),
            (
                Method::POST,
                path.clone(),
                &outsider,
                None,
                403,
                "city_forbidden",
            ),
            (
                Method::POST,
                path.clone(),
                &user("ann"),
                None,
                403,
                "forbidden",
            ),
            (
                Method::POST,
                "/v1/operator/refunds/xyz/send-now".into(),
                &refunder,
                None,
                400,
                "invalid_refund_id",
            ),
            (
                Method::POST,
                format!("/v1/operator/refunds/{}/send-now", Uuid::new_v4()),
                &refunder,
                None,
                404,
                "unknown_refund",
            ),
            (
                Method::POST,
                format!("/v1/operator/refunds/{bob_refund}/send-now"),
                &refunder,
                None,
                409,
                "refund_not_pending",
            ),
        ],
    )
    .await;
    assert_eq!(
        refund_of(&app, number).await["next_attempt_at"],
        refund["next_attempt_at"]
    );
    assert_eq!(refund_of(&app, bob_number).await["status"], "FAILED");

    // Sent now: the worker sends it at once, and it lands.
    let (s, v) = post(&app, &path, &refunder, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], id.as_str());
    // (The answer is the refund as it stands: the worker, woken, may
    // already have claimed it. What send-now wrote is in the audit row.)
    assert!(
        eventually(SOON, || async {
            refund_of(&app, number).await["status"] == "SUCCEEDED"
        })
        .await,
        "{}",
        refund_of(&app, number).await
    );
    let (s, v) = post(&app, &path, &refunder, None).await;
    assert_eq!((s, code(&v)), (409, "refund_already_settled"), "{v}");
    // Audited once, with when it was due before.
    let (_, log) = get(&app, "/v1/operator/audit?target_kind=refund", &platform()).await;
    let sends: Vec<&Value> = list(&log, "entries")
        .iter()
        .filter(|e| e["action"] == "refund.send_now")
        .collect();
    assert_eq!(sends.len(), 1, "{log}");
    assert_eq!(sends[0]["actor"], "refunder");
    assert_eq!(sends[0]["target_id"], id.as_str());
    assert_eq!(sends[0]["city"], city.as_str());
    assert_eq!(
        sends[0]["before"]["next_attempt_at"],
        refund["next_attempt_at"]
    );
    let made_due =
        chrono::DateTime::parse_from_rfc3339(str_of(&sends[0]["after"], "next_attempt_at"))
            .expect("time");
    assert!(made_due < due, "due now, not in minutes: {}", sends[0]);
    app.stop().await;
}

/// Waits until the server holds `n` messages; returns them parsed as
/// (recipient, Message-ID, subject).
async fn delivered(catcher: &MailCatcher, n: usize) -> Vec<(String, String, String)> {
    let got = eventually(SOON, || async {
        catcher.messages().map(|m| m.len() >= n).unwrap_or(false)
    })
    .await;
    let messages = catcher.messages().expect("messages");
    assert!(got, "{n} messages expected, {} arrived", messages.len());
    messages
        .iter()
        .map(|raw| {
            let m = mail_parser::MessageParser::default()
                .parse(raw)
                .expect("a message");
            (
                m.to()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .unwrap_or_default()
                    .to_owned(),
                m.message_id().unwrap_or_default().to_owned(),
                m.subject().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The queue's rows: (event id, recipient, state), in queue order.
async fn queue(app: &TestApp) -> Vec<(Uuid, String, String)> {
    sqlx::query_as("SELECT event_id, recipient, state FROM outgoing_mail ORDER BY seq")
        .fetch_all(&app.db)
        .await
        .expect("queue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_mail_is_listed_and_resent_and_a_confirmation_goes_again() {
    // A server that refuses every message for good (554).
    let dir = std::env::temp_dir().join(format!("mail-{}", Uuid::new_v4().simple()));
    let refusing = MailCatcher::start_refusing_in(&dir, 0)
        .await
        .expect("server");
    let port = refusing.port();
    let mut settings = test_settings().await.expect("settings");
    settings.mail.smtp_url = Some(refusing.smtp_url());
    settings.mail.mail_poll_ms = 100;
    settings.mail.mail_backoff_base_ms = 100;
    settings.mail.mail_backoff_max_secs = 1;
    settings.mail.mail_max_permanent_failures = 1;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let city = app.show_city(&show).await;
    let elsewhere = other_city(&app).await;
    let ann = app.buy("ann@example.com", &show, &["A1"]).await;
    app.buy("bob@example.com", &show, &["A2"]).await;
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM outgoing_mail WHERE state = 'failed'")
                .await
                == 2
        })
        .await,
        "{:?}",
        queue(&app).await
    );
    let rows = queue(&app).await;
    let (ann_event, bob_event) = (rows[0].0, rows[1].0);
    assert_eq!(
        (rows[0].1.as_str(), rows[1].1.as_str()),
        ("ann@example.com", "bob@example.com")
    );

    // Listed, newest first, with the server's answer; filters and pages.
    let reader = operator_token("reader", &[&city], &[Scope::Read]);
    let (s, v) = get(&app, "/v1/operator/mail?state=failed", &reader).await;
    assert_eq!(s, 200, "{v}");
    let listed: Vec<&str> = list(&v, "messages")
        .iter()
        .map(|m| str_of(m, "event_id"))
        .collect();
    assert_eq!(
        listed,
        [bob_event.to_string(), ann_event.to_string()],
        "{v}"
    );
    let m = &list(&v, "messages")[1];
    assert_eq!(
        (
            m["kind"].clone(),
            m["recipient"].clone(),
            m["state"].clone(),
            m["booking_number"].clone(),
            m["city"].clone(),
            m["show_id"].clone()
        ),
        (
            json!("booking.confirmed"),
            json!("ann@example.com"),
            json!("failed"),
            ann["number"].clone(),
            json!(city),
            json!(show)
        ),
        "{m}"
    );
    assert!(str_of(m, "last_error").contains("554"), "{m}");
    let (_, v) = get(
        &app,
        &format!("/v1/operator/mail?kind=booking.confirmed&show_id={show}&limit=1"),
        &reader,
    )
    .await;
    assert_eq!(
        list(&v, "messages")[0]["event_id"],
        bob_event.to_string(),
        "{v}"
    );
    let (_, v) = get(
        &app,
        &format!(
            "/v1/operator/mail?limit=1&after={}",
            v["next_after"].as_str().expect("next")
        ),
        &reader,
    )
    .await;
    assert_eq!(
        list(&v, "messages")[0]["event_id"],
        ann_event.to_string(),
        "{v}"
    );
    assert_eq!(v["next_after"], Value::Null);
    let (_, v) = get(&app, "/v1/operator/mail?kind=booking.cancelled", &reader).await;
    assert_eq!(v["messages"], json!([]));
    let (_, v) = get(&app, "/v1/operator/mail?state=pending", &reader).await;
    assert_eq!(v["messages"], json!([]));
    let outsider = operator_token("outsider", &[&elsewhere], &Scope::ALL);
    let (_, v) = get(&app, "/v1/operator/mail", &outsider).await;
    assert_eq!(v["messages"], json!([]), "another city's token sees none");
    let (_, status) = get(&app, "/v1/operator/shard", &platform()).await;
    assert_eq!(
        (
            status["mail"]["failed"].clone(),
            status["mail"]["pending"].clone()
        ),
        (json!(2), json!(0)),
        "{status}"
    );

    // Bad input and the wrong token change nothing.
    let seller = operator_token("seller", &[&city], &[Scope::Sales]);
    let resend = "/v1/operator/mail/resend".to_owned();
    let one = json!({"event_ids": [ann_event]});
    let carl = app.buy("carl", &show, &["A3"]).await;
    let carl_again = format!(
        "/v1/operator/bookings/{}/resend-confirmation",
        str_of(&carl, "number")
    );
    refused(
        &app,
        &[
            (
                Method::GET,
                "/v1/operator/mail?state=sent".into(),
                &reader,
                None,
                422,
                "invalid_state",
            ),
            (
                Method::GET,
                "/v1/operator/mail?kind=booking.paid".into(),
                &reader,
                None,
                422,
                "invalid_kind",
            ),
            (
                Method::GET,
                "/v1/operator/mail?after=zzz".into(),
                &reader,
                None,
                400,
                "invalid_cursor",
            ),
            (
                Method::GET,
                format!("/v1/operator/mail?after={}", Uuid::new_v4()),
                &reader,
                None,
                422,
                "invalid_cursor",
            ),
            (
                Method::GET,
                "/v1/operator/mail?show_id=xyz".into(),
                &reader,
                None,
                400,
                "invalid_show_id",
            ),
            (
                Method::GET,
                "/v1/operator/mail?recipient=x".into(),
                &reader,
                None,
                400,
                "bad_query",
            ),
            (
                Method::GET,
                "/v1/operator/mail".into(),
                &user("ann@example.com"),
                None,
                403,
                "forbidden",
            ),
            (
                Method::POST,
                resend.clone(),
                &reader,
                Some(one.clone()),
                403,
                "scope_forbidden",
            ),
            (
                Method::POST,
                resend.clone(),
                &outsider,
                Some(one.clone()),
                403,
                "city_forbidden",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({})),
                422,
                "invalid_body",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"event_ids": [ann_event], "filter": {}})),
                422,
                "invalid_body",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"event_ids": []})),
                422,
                "invalid_event_ids",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"event_ids": ["x"]})),
                422,
                "invalid_event_ids",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"event_ids": [Uuid::new_v4()]})),
                404,
                "unknown_mail",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"filter": {"state": "sent"}})),
                422,
                "invalid_state",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"filter": {"kind": "x"}})),
                422,
                "invalid_kind",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"filter": {"show_id": Uuid::new_v4()}})),
                404,
                "unknown_show",
            ),
            (
                Method::POST,
                resend.clone(),
                &seller,
                Some(json!({"filter": {"when": 1}})),
                422,
                "invalid_body",
            ),
            (
                Method::POST,
                carl_again.clone(),
                &reader,
                None,
                403,
                "scope_forbidden",
            ),
            (
                Method::POST,
                carl_again.clone(),
                &outsider,
                None,
                403,
                "city_forbidden",
            ),
            (
                Method::POST,
                carl_again.clone(),
                &seller,
                None,
                409,
                "no_email_address",
            ),
            (
                Method::POST,
                "/v1/operator/bookings/nonsense/resend-confirmation".into(),
                &seller,
                None,
                400,
                "invalid_booking_id",
            ),
            (
                Method::POST,
                format!(
                    "/v1/operator/bookings/{}/resend-confirmation",
                    Uuid::new_v4()
                ),
                &seller,
                None,
                404,
                "unknown_booking",
            ),
        ],
    )
    .await;
    assert_eq!(
        queue(&app)
            .await
            .iter()
            .map(|r| r.2.as_str())
            .collect::<Vec<_>>(),
        ["failed", "failed"]
    );
    let (_, log) = get(&app, "/v1/operator/audit?target_kind=mail", &platform()).await;
    assert_eq!(log["entries"], json!([]), "refusals audit nothing");

    // The server goes away. Ann's confirmation is queued again: a new
    // message, waiting (the server is unreachable, so it is retried);
    // another one is refused while it waits.
    refusing.stop().await;
    let again = format!(
        "/v1/operator/bookings/{}/resend-confirmation",
        str_of(&ann, "number")
    );
    let (s, v) = post(&app, &again, &seller, None).await;
    assert_eq!(s, 202, "{v}");
    let resent_event = Uuid::parse_str(str_of(&v, "event_id")).expect("event id");
    assert_ne!(resent_event, ann_event);
    assert_eq!(
        (
            v["kind"].clone(),
            v["state"].clone(),
            v["recipient"].clone(),
            v["booking_id"].clone()
        ),
        (
            json!("booking.confirmed"),
            json!("pending"),
            json!("ann@example.com"),
            ann["id"].clone()
        ),
        "{v}"
    );
    let (s, v) = post(&app, &again, &seller, None).await;
    assert_eq!((s, code(&v)), (409, "confirmation_pending"), "{v}");
    assert_eq!(v["error"]["details"]["event_id"], resent_event.to_string());

    // The server takes mail again: the new confirmation goes out, the
    // failed ones stay failed until re-sent.
    let server = MailCatcher::start_in(&dir, port)
        .await
        .expect("server back");
    let got = delivered(&server, 1).await;
    assert_eq!(got[0].0, "ann@example.com");
    assert_eq!(
        got[0].1,
        format!("{resent_event}@localhost"),
        "a new Message-ID"
    );
    assert!(got[0].2.starts_with("Your tickets"), "{got:?}");
    // Ann's failed original, by id; then the rest by filter (bob's).
    let (s, v) = post(&app, &resend, &seller, Some(one.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"resent": 1, "event_ids": [ann_event], "more": false})
    );
    let got = delivered(&server, 2).await;
    assert_eq!(
        (got[1].0.as_str(), got[1].1.clone()),
        ("ann@example.com", format!("{ann_event}@localhost"))
    );
    let (s, v) = post(&app, &resend, &seller, Some(one)).await;
    assert_eq!((s, code(&v)), (409, "mail_not_failed"), "{v}");
    assert_eq!(v["error"]["details"][0]["state"], "sent", "{v}");
    let filter =
        json!({"filter": {"state": "failed", "kind": "booking.confirmed", "show_id": show}});
    let (s, v) = post(&app, &resend, &seller, Some(filter.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"resent": 1, "event_ids": [bob_event], "more": false})
    );
    let got = delivered(&server, 3).await;
    assert_eq!(
        (got[2].0.as_str(), got[2].1.clone()),
        ("bob@example.com", format!("{bob_event}@localhost"))
    );
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM outgoing_mail WHERE state <> 'sent'")
                .await
                == 0
        })
        .await
    );
    let (_, v) = post(&app, &resend, &seller, Some(filter)).await;
    assert_eq!(
        v,
        json!({"resent": 0, "event_ids": [], "more": false}),
        "nothing left"
    );

    // Each write is in the audit log under the operator.
    let (_, log) = get(&app, "/v1/operator/audit?actor=seller", &platform()).await;
    let acts: Vec<(&str, &str)> = list(&log, "entries")
        .iter()
        .map(|e| (str_of(e, "action"), str_of(e, "target_id")))
        .collect();
    let (ann_id, ann_event, bob_event) = (
        str_of(&ann, "id"),
        ann_event.to_string(),
        bob_event.to_string(),
    );
    assert_eq!(
        acts,
        [
            ("mail.resend", bob_event.as_str()),
            ("mail.resend", ann_event.as_str()),
            ("booking.resend_confirmation", ann_id),
        ],
        "{log}"
    );
    // A cancelled booking's confirmation is not sent again.
    cancel(&app, "carl", &carl).await;
    let (s, v) = post(&app, &carl_again, &seller, None).await;
    assert_eq!((s, code(&v)), (409, "booking_not_confirmed"), "{v}");
    app.stop().await;
    server.stop().await;
}
