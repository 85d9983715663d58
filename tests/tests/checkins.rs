//! Signed tickets and entry scanning (issue 15), against the real region
//! core, Postgres and Redis:
//!
//! - a bought seat's ticket checks in once (200, then 409 with when and
//!   where); forged, foreign-key, other-show and cancelled codes are
//!   refused with 422, 404 and 410; bad input changes nothing;
//! - one ticket scanned at two gates at once is admitted once, every time
//!   (with a negative control: the naive read-then-write check would let
//!   both in);
//! - offline gates verify by signature alone and upload later; a ticket
//!   admitted at two offline gates is reported as a conflict, not lost,
//!   and a re-sent upload changes nothing.

use chrono::{Duration as Span, Utc};
use e2e::{token, user, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use shared::ticket::{KeyRing, OfflineScanner, OfflineVerdict, PublicKey, TicketSigner};
use shared::token::Role;
use uuid::Uuid;

/// The booking's ticket codes, by seat label.
async fn codes(app: &TestApp, who: &str, booking: &str) -> Vec<(String, String)> {
    let (s, t) = app
        .send(
            Method::GET,
            &format!("/v1/bookings/{booking}/tickets"),
            Some(&user(who)),
            None,
        )
        .await
        .expect("tickets");
    assert_eq!(s, 200, "{t}");
    t["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .map(|t| {
            (
                t["label"].as_str().expect("label").to_owned(),
                t["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect()
}

async fn scan(app: &TestApp, show: &str, code: &str, gate: &str) -> (u16, Value) {
    app.send(
        Method::POST,
        &format!("/v1/shows/{show}/checkins"),
        Some(&token("door-1", Role::Staff)),
        Some(json!({ "code": code, "gate": gate })),
    )
    .await
    .expect("scan")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_checks_in_once_and_bad_codes_are_refused() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("seed");
    let other = app.seed_show(1, 5, Span::days(4)).await.expect("seed");
    let booking = app.buy("ann", &show, &["A1", "A2"]).await;
    let id = booking["id"].as_str().expect("id").to_owned();
    let tickets = codes(&app, "ann", &id).await;
    assert_eq!(
        tickets.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["A1", "A2"]
    );
    let (a1, a2) = (&tickets[0].1, &tickets[1].1);
    // Someone else cannot read them.
    let (s, _) = app
        .send(
            Method::GET,
            &format!("/v1/bookings/{id}/tickets"),
            Some(&user("mallory")),
            None,
        )
        .await
        .expect("tickets");
    assert_eq!(s, 404);

    // The published keys verify the code offline.
    let (s, keys) = app.get("/v1/tickets/keys").await.expect("keys");
    assert_eq!(s, 200);
    let keys: Vec<PublicKey> = serde_json::from_value(keys["keys"].clone()).expect("keys");
    let ticket = KeyRing::new(&keys)
        .expect("ring")
        .verify(a1)
        .expect("genuine");
    assert_eq!(ticket.show_id.to_string(), show);

    // First scan 200, then 409 with when and where.
    let (s, first) = scan(&app, &show, a1, "north").await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(
        (first["seat"].as_str(), first["gate"].as_str()),
        (Some("A1"), Some("north"))
    );
    let (s, again) = scan(&app, &show, a1, "south").await;
    assert_eq!(s, 409, "{again}");
    assert_eq!(again["error"]["code"], "already_checked_in", "{again}");
    assert_eq!(again["error"]["details"]["gate"], "north");
    assert_eq!(
        again["error"]["details"]["checked_in_at"],
        first["checked_in_at"]
    );

    // Forged: one character changed; or signed with a key not the shard's.
    let mut forged = a2.clone().into_bytes();
    forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let (s, e) = scan(&app, &show, &forged, "north").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("ticket_invalid")),
        "{e}"
    );
    let impostor = TicketSigner::from_seed(1, &[7; 32]).sign(
        ticket.show_id,
        ticket.booking_id,
        ticket.seat_id,
    );
    let (s, e) = scan(&app, &show, &impostor, "north").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("ticket_invalid")),
        "{e}"
    );

    // A genuine ticket of another show.
    let elsewhere = app.buy("bob", &other, &["A1"]).await;
    let theirs = codes(&app, "bob", elsewhere["id"].as_str().expect("id")).await;
    let (s, e) = scan(&app, &show, &theirs[0].1, "north").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("ticket_not_for_this_show")),
        "{e}"
    );

    // A buyer's token cannot scan; bad input changes nothing.
    let before = app.count("SELECT count(*) FROM checkins").await;
    let (s, _) = app
        .send(
            Method::POST,
            &format!("/v1/shows/{show}/checkins"),
            Some(&user("ann")),
            Some(json!({ "code": a2 })),
        )
        .await
        .expect("scan");
    assert_eq!(s, 403);
    for body in [
        json!({}),
        json!({ "code": a2, "gate": "north\u{7}" }),
        json!({ "code": a2, "extra": 1 }),
    ] {
        let (s, e) = app
            .send(
                Method::POST,
                &format!("/v1/shows/{show}/checkins"),
                Some(&token("door-1", Role::Staff)),
                Some(body.clone()),
            )
            .await
            .expect("scan");
        assert!((400..500).contains(&s), "{body}: {s} {e}");
        assert!(e["error"]["code"].is_string(), "{e}");
    }
    assert_eq!(app.count("SELECT count(*) FROM checkins").await, before);

    // Cancelled: 410, and the booking has no tickets any more.
    let (s, c) = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{id}/cancel"),
            Some(&user("ann")),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{c}");
    let (s, e) = scan(&app, &show, a2, "north").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (410, Some("booking_cancelled")),
        "{e}"
    );
    assert!(codes(&app, "ann", &id).await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_at_two_gates_at_once_is_admitted_once() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 20, Span::days(3)).await.expect("seed");
    let seats: Vec<String> = (1..=20).map(|n| format!("A{n}")).collect();
    let refs: Vec<&str> = seats.iter().map(String::as_str).collect();
    let booking = app.buy("ann", &show, &refs[..10]).await;
    let more = app.buy("ann", &show, &refs[10..]).await;
    let mut tickets = codes(&app, "ann", booking["id"].as_str().expect("id")).await;
    tickets.extend(codes(&app, "ann", more["id"].as_str().expect("id")).await);
    assert_eq!(tickets.len(), 20);
    for (label, code) in &tickets {
        let (a, b) = tokio::join!(
            scan(&app, &show, code, "north"),
            scan(&app, &show, code, "south")
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "{label}: {a:?} {b:?}");
    }
    assert_eq!(app.count("SELECT count(*) FROM checkins").await, 20);

    // Negative control: what a read-then-write check would see. Two
    // transactions that both look before either writes both find the
    // ticket unused, so both gates would let the holder in; only the
    // insert keyed by the ticket id (what the region core does) decides.
    let ticket = Uuid::new_v4();
    let look = "SELECT count(*) FROM checkins WHERE ticket_id = $1";
    let mut t1 = app.db.begin().await.expect("tx");
    let mut t2 = app.db.begin().await.expect("tx");
    let seen1: i64 = sqlx::query_scalar(look)
        .bind(ticket)
        .fetch_one(&mut *t1)
        .await
        .expect("look");
    let seen2: i64 = sqlx::query_scalar(look)
        .bind(ticket)
        .fetch_one(&mut *t2)
        .await
        .expect("look");
    assert_eq!((seen1, seen2), (0, 0), "both naive checks pass");
    t1.rollback().await.expect("rollback");
    t2.rollback().await.expect("rollback");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_gates_upload_later_and_conflicts_are_reported() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("seed");
    let booking = app.buy("ann", &show, &["A1", "A2"]).await;
    let tickets = codes(&app, "ann", booking["id"].as_str().expect("id")).await;
    let (_, keys) = app.get("/v1/tickets/keys").await.expect("keys");
    let keys: Vec<PublicKey> = serde_json::from_value(keys["keys"].clone()).expect("keys");
    let ring = KeyRing::new(&keys).expect("ring");
    let show_id = Uuid::parse_str(&show).expect("uuid");
    // Two gates lose the network; the same ticket is shown at both.
    let mut north = OfflineScanner::new(show_id, "north", ring.clone());
    let mut south = OfflineScanner::new(show_id, "south", ring);
    let t0 = Utc::now() - Span::minutes(10);
    let a1 = &tickets[0].1;
    assert!(matches!(north.scan(a1, t0), OfflineVerdict::Admit(_)));
    assert!(matches!(
        south.scan(a1, t0 + Span::minutes(2)),
        OfflineVerdict::Admit(_)
    ));
    assert!(matches!(
        north.scan(&tickets[1].1, t0 + Span::minutes(1)),
        OfflineVerdict::Admit(_)
    ));
    let upload = |scans: Vec<shared::ticket::OfflineScan>| {
        let app = &app;
        let show = show.clone();
        async move {
            app.send(
                Method::POST,
                &format!("/v1/shows/{show}/checkins/offline"),
                Some(&token("door-2", Role::Staff)),
                Some(json!({ "scans": scans })),
            )
            .await
            .expect("upload")
        }
    };
    let north_scans = north.take_uploads();
    let (s, r) = upload(north_scans.clone()).await;
    assert_eq!(s, 200, "{r}");
    let outcomes = |r: &Value| -> Vec<String> {
        r["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|x| x["outcome"].as_str().expect("outcome").to_owned())
            .collect()
    };
    assert_eq!(outcomes(&r), ["checked_in", "checked_in"]);
    // South's scan of the same ticket: a conflict, reported with the
    // check-in that stands, and kept.
    let (s, r) = upload(south.take_uploads()).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(outcomes(&r), ["conflict"]);
    assert_eq!(r["conflicts"], 1);
    assert_eq!(r["results"][0]["gate"], "north");
    assert_eq!(app.count("SELECT count(*) FROM checkin_conflicts").await, 1);
    // North's upload sent again (its answer was lost): nothing changes.
    let (s, r) = upload(north_scans).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(outcomes(&r), ["already_recorded", "already_recorded"]);
    assert_eq!(app.count("SELECT count(*) FROM checkins").await, 2);
    assert_eq!(app.count("SELECT count(*) FROM checkin_conflicts").await, 1);
    // Online, the ticket is already in.
    let (s, _) = scan(&app, &show, a1, "east").await;
    assert_eq!(s, 409);
    app.stop().await;
}
