//! Managing the catalog (issue 16) end to end, against real Postgres and
//! Redis: operator lists with filters and keyset pages (exact results),
//! edits read back, deletes refused while something refers to the row,
//! a price change that reaches new holds only (a hold taken before it
//! checks out at the old price), blocked seats refused on the Redis path
//! and on the Postgres-only path (and held again once unblocked), an edit
//! on one replica seen by another at once, the audit log's before/after,
//! the token's city and scope, bad input that changes nothing, and a
//! write sent to the region directly bumping the edge's catalog version.

use chrono::{DateTime, Duration as Span, Utc};
use e2e::{eventually, money, shared_redis_url, test_settings, user, TestApp, SECRET};
use region_core::auth::TokenKeys;
use reqwest::Method;
use serde_json::{json, Value};
use shared::token::{Grant, Scope};
use std::time::Duration;
use uuid::Uuid;

/// The seeded shows' price of a seat (REGULAR), minor units.
const PRICE: i64 = 25_000;

/// An operator token reaching `cities` with `scopes`.
fn operator_of(cities: &[&str], scopes: &[Scope]) -> String {
    let grant = Grant::new(
        cities.iter().map(|c| (*c).to_owned()).collect(),
        scopes.to_vec(),
    )
    .expect("grant");
    TokenKeys::new(SECRET)
        .mint_operator("catalog-op", &grant, Utc::now().timestamp(), 3600)
        .expect("token")
}

fn admin() -> String {
    operator_of(&["*"], &[Scope::Catalog])
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(app, &admin(), method, path, body).await
}

async fn call_as(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.send(method, path, Some(token), body)
        .await
        .expect("request")
}

/// POST as the admin operator; the new row's id (201 required).
async fn create(app: &TestApp, path: &str, body: Value) -> String {
    let (s, b) = call(app, Method::POST, path, Some(body)).await;
    assert_eq!(s, 201, "POST {path}: {b}");
    b["id"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| b["code"].as_str().map(str::to_owned))
        .expect("id")
}

/// A fresh city code of letters.
fn city_code() -> String {
    Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(6)
        .collect::<String>()
        + "zz"
}

async fn city(app: &TestApp) -> String {
    let code = city_code();
    create(
        app,
        "/v1/operator/cities",
        json!({"code": code, "name": "Catalog City"}),
    )
    .await
}

async fn venue(app: &TestApp, city: &str, name: &str) -> String {
    create(
        app,
        "/v1/operator/venues",
        json!({"city": city, "name": name, "time_zone": "Asia/Kolkata"}),
    )
    .await
}

async fn screen(app: &TestApp, venue: &str, name: &str) -> String {
    create(
        app,
        "/v1/operator/screens",
        json!({"venue_id": venue, "name": name,
               "rows": [{"row": "A", "seats": 5, "category": "REGULAR"}]}),
    )
    .await
}

async fn movie(app: &TestApp, title: &str) -> String {
    create(
        app,
        "/v1/operator/movies",
        json!({"title": title, "duration_minutes": 60, "language": "en"}),
    )
    .await
}

/// A show at exactly `at` (whole seconds, so it reads back equal).
async fn show(app: &TestApp, screen: &str, movie: &str, at: DateTime<Utc>) -> String {
    create(
        app,
        "/v1/operator/shows",
        json!({"screen_id": screen, "movie_id": movie, "starts_at": at,
               "prices": {"REGULAR": PRICE}, "currency": "INR"}),
    )
    .await
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {page}"))
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

/// A whole second `days` from now.
fn in_days(days: f64) -> DateTime<Utc> {
    let t = Utc::now() + Span::seconds((days * 86_400.0) as i64);
    DateTime::from_timestamp(t.timestamp(), 0).expect("time")
}

fn q(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn checkout_amount(app: &TestApp, who: &str, hold: &str) -> i64 {
    let a = money::checkout(
        app,
        &user(who),
        hold,
        &Uuid::new_v4().to_string(),
        "pm_card_ok",
    )
    .await
    .expect("checkout");
    assert_eq!(a.status, 201, "{}", a.json);
    a.json["amount_minor"].as_i64().expect("amount")
}

/// The newest audit row of `kind`/`id`.
async fn last_audit(app: &TestApp, kind: &str, id: &str) -> Value {
    let (s, log) = call(
        app,
        Method::GET,
        &format!("/v1/operator/audit?target_kind={kind}&target_id={id}&limit=1"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{log}");
    log["entries"][0].clone()
}

#[tokio::test]
async fn lists_filter_and_page_exactly() {
    let app = TestApp::default().await.expect("app");
    let c = city(&app).await;
    let v1 = venue(&app, &c, "Venue One").await;
    let v2 = venue(&app, &c, "Venue Two").await;
    let s1 = screen(&app, &v1, "Screen 1").await;
    let s2 = screen(&app, &v2, "Screen 1").await;
    let m = movie(&app, "Catalog Movie").await;
    let (t1, t2, t3) = (in_days(1.0), in_days(2.0), in_days(3.0));
    let a = show(&app, &s1, &m, t1).await;
    let b = show(&app, &s1, &m, t2).await;
    let c3 = show(&app, &s1, &m, t3).await;
    let d = show(&app, &s2, &m, t2 + Span::hours(1)).await;

    // By venue, by start: two pages of two, then one.
    let path = format!("/v1/operator/shows?venue_id={v1}&limit=2");
    let (s, p1) = call(&app, Method::GET, &path, None).await;
    assert_eq!(s, 200, "{p1}");
    assert_eq!(ids(&p1), [a.clone(), b.clone()]);
    let next = p1["next"].as_str().expect("a next page");
    let (s, p2) = call(&app, Method::GET, &format!("{path}&after={next}"), None).await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(ids(&p2), [c3.as_str()]);
    assert!(p2["next"].is_null(), "{p2}");

    // A range of start instants [from, to), across venues.
    let range = format!("/v1/operator/shows?city={c}&from={}&to={}", q(t2), q(t3));
    let (s, r) = call(&app, Method::GET, &range, None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(ids(&r), [b.clone(), d.clone()]);
    // By status.
    let (_, up) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows?city={c}&status=upcoming"),
        None,
    )
    .await;
    assert_eq!(ids(&up), [a.clone(), b.clone(), d.clone(), c3.clone()]);
    let (_, started) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows?city={c}&status=started"),
        None,
    )
    .await;
    assert_eq!(ids(&started), Vec::<String>::new());
    // By screen and by movie.
    let (_, on_s2) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows?screen_id={s2}"),
        None,
    )
    .await;
    assert_eq!(ids(&on_s2), [d.as_str()]);

    // Venues of the city, screens of a venue, titles: exact.
    let (_, vs) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/venues?city={c}"),
        None,
    )
    .await;
    assert_eq!(ids(&vs), [v1.clone(), v2.clone()]);
    let (_, vs1) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/venues?city={c}&limit=1"),
        None,
    )
    .await;
    assert_eq!(ids(&vs1), [v1.as_str()]);
    let after = vs1["next"].as_str().expect("next");
    let (_, vs2) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/venues?city={c}&limit=1&after={after}"),
        None,
    )
    .await;
    assert_eq!(ids(&vs2), [v2.as_str()]);
    let (_, ss) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/screens?venue_id={v1}"),
        None,
    )
    .await;
    assert_eq!(ids(&ss), [s1.as_str()]);
    assert_eq!(ss["items"][0]["seat_count"], 5);
    let (_, ms) = call(&app, Method::GET, "/v1/operator/movies", None).await;
    assert_eq!(ids(&ms), [m.as_str()]);
    let (s, one) = call(&app, Method::GET, &format!("/v1/operator/shows/{a}"), None).await;
    assert_eq!((s, one["id"].as_str()), (200, Some(a.as_str())), "{one}");
    assert_eq!(one["blocked_seats"], json!([]));

    // Bad input: a clear 4xx.
    for bad in [
        "/v1/operator/shows?limit=0".to_owned(),
        "/v1/operator/shows?limit=501".to_owned(),
        "/v1/operator/shows?after=garbage".to_owned(),
        "/v1/operator/shows?status=cancelled".to_owned(),
        "/v1/operator/shows?colour=red".to_owned(),
        format!("/v1/operator/shows?from={}&to={}", q(t3), q(t2)),
        "/v1/operator/venues?after=nope".to_owned(),
        "/v1/operator/shows/not-an-id".to_owned(),
    ] {
        let (s, b) = call(&app, Method::GET, &bad, None).await;
        assert!((400..500).contains(&s), "{bad}: {s} {b}");
        assert!(b["error"]["code"].is_string(), "{bad}: {b}");
    }
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows/{}", Uuid::now_v7()),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // A token of another city sees none of it, and is refused its rows.
    let other = operator_of(&["elsewhere"], &[Scope::Read]);
    let (s, none) = call_as(&app, &other, Method::GET, "/v1/operator/shows", None).await;
    assert_eq!((s, ids(&none)), (200, vec![]), "{none}");
    let (s, _) = call_as(
        &app,
        &other,
        Method::GET,
        &format!("/v1/operator/shows/{a}"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call_as(
        &app,
        &other,
        Method::GET,
        &format!("/v1/operator/venues?city={c}"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    app.stop().await;
}

#[tokio::test]
async fn edits_read_back_and_deletes_wait_until_nothing_refers() {
    let app = TestApp::default().await.expect("app");
    let c = city(&app).await;
    let v = venue(&app, &c, "Old Name").await;
    let sc = screen(&app, &v, "Screen 1").await;
    let m = movie(&app, "Old Title").await;
    let held = show(&app, &sc, &m, in_days(2.0)).await;
    let free = show(&app, &sc, &m, in_days(4.0)).await;
    app.hold_id("alice", &held, &["A1"]).await;

    // Venue: renamed and read back; its zone stays while shows are to come.
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/v1/operator/venues/{v}"),
        Some(json!({"name": "New Name"})),
    )
    .await;
    assert_eq!((s, &b["name"]), (200, &json!("New Name")), "{b}");
    let (_, b) = call(&app, Method::GET, &format!("/v1/operator/venues/{v}"), None).await;
    assert_eq!(b["name"], "New Name");
    let audit = last_audit(&app, "venue", &v).await;
    assert_eq!(audit["action"], "venue.update");
    assert_eq!(audit["before"]["name"], "Old Name");
    assert_eq!(audit["after"]["name"], "New Name");
    assert_eq!(audit["actor"], "catalog-op");
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/v1/operator/venues/{v}"),
        Some(json!({"time_zone": "Europe/London"})),
    )
    .await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (409, &json!("venue_has_future_shows")),
        "{b}"
    );

    // Screen and title.
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/v1/operator/screens/{sc}"),
        Some(json!({"name": "Audi 1"})),
    )
    .await;
    assert_eq!(
        (s, &b["name"], &b["seat_count"]),
        (200, &json!("Audi 1"), &json!(5)),
        "{b}"
    );
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/v1/operator/movies/{m}"),
        Some(json!({"title": "New Title"})),
    )
    .await;
    assert_eq!((s, &b["title"]), (200, &json!("New Title")), "{b}");
    let (_, b) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows/{free}"),
        None,
    )
    .await;
    assert_eq!(
        (&b["movie_title"], &b["screen_name"], &b["venue_name"]),
        (&json!("New Title"), &json!("Audi 1"), &json!("New Name"))
    );

    // A show's start moves while nobody holds a seat, not after.
    let moved = in_days(5.0);
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/v1/operator/shows/{free}"),
        Some(json!({"starts_at": moved})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = call(&app, Method::GET, &format!("/v1/shows/{free}"), None).await;
    assert_eq!(
        b["starts_at"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok()),
        Some(moved)
    );
    let audit = last_audit(&app, "show", &free).await;
    assert_eq!(audit["action"], "show.update");
    assert_ne!(audit["before"]["starts_at"], audit["after"]["starts_at"]);
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/v1/operator/shows/{held}"),
        Some(json!({"starts_at": in_days(6.0)})),
    )
    .await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (409, &json!("show_has_holds")),
        "{b}"
    );

    // Bad edits: 4xx, nothing changes.
    for (path, body) in [
        (format!("/v1/operator/venues/{v}"), json!({})),
        (
            format!("/v1/operator/venues/{v}"),
            json!({"name": "X", "city": "abc"}),
        ),
        (format!("/v1/operator/venues/{v}"), json!({"name": ""})),
        (
            format!("/v1/operator/venues/{v}"),
            json!({"time_zone": "Mars/Base"}),
        ),
        (format!("/v1/operator/screens/{sc}"), json!({"rows": []})),
        (
            format!("/v1/operator/movies/{m}"),
            json!({"duration_minutes": 90}),
        ),
        (
            format!("/v1/operator/shows/{free}"),
            json!({"starts_at": in_days(-1.0)}),
        ),
        (
            format!("/v1/operator/shows/{free}"),
            json!({"screen_id": sc}),
        ),
    ] {
        let (s, b) = call(&app, Method::PATCH, &path, Some(body.clone())).await;
        assert!((400..500).contains(&s), "{path} {body}: {s} {b}");
    }
    let (_, b) = call(&app, Method::GET, &format!("/v1/operator/venues/{v}"), None).await;
    assert_eq!(
        (&b["name"], &b["time_zone"]),
        (&json!("New Name"), &json!("Asia/Kolkata"))
    );

    // Another city's catalog token, and a read-only token: 403, unchanged.
    for token in [
        operator_of(&["elsewhere"], &[Scope::Catalog]),
        operator_of(&["*"], &[Scope::Read]),
    ] {
        let (s, b) = call_as(
            &app,
            &token,
            Method::PATCH,
            &format!("/v1/operator/venues/{v}"),
            Some(json!({"name": "Hijacked"})),
        )
        .await;
        assert_eq!(s, 403, "{b}");
        let (s, _) = call_as(
            &app,
            &token,
            Method::DELETE,
            &format!("/v1/operator/shows/{free}"),
            None,
        )
        .await;
        assert_eq!(s, 403);
    }
    let (_, b) = call(&app, Method::GET, &format!("/v1/operator/venues/{v}"), None).await;
    assert_eq!(b["name"], "New Name");

    // Deletes: refused while referenced, with a code saying by what.
    for (path, code) in [
        (format!("/v1/operator/venues/{v}"), "venue_has_screens"),
        (format!("/v1/operator/screens/{sc}"), "screen_has_shows"),
        (format!("/v1/operator/movies/{m}"), "movie_has_shows"),
        (format!("/v1/operator/shows/{held}"), "show_has_holds"),
    ] {
        let (s, b) = call(&app, Method::DELETE, &path, None).await;
        assert_eq!((s, &b["error"]["code"]), (409, &json!(code)), "{path}: {b}");
    }
    // ... and allowed once nothing refers to the row.
    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("/v1/operator/shows/{free}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows/{free}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let audit = last_audit(&app, "show", &free).await;
    assert_eq!(audit["action"], "show.delete");
    assert!(audit["after"].is_null());
    assert_eq!(audit["before"]["id"], json!(free));
    let v2 = venue(&app, &c, "Empty Venue").await;
    let sc2 = screen(&app, &v2, "Empty Screen").await;
    let m2 = movie(&app, "Unshown").await;
    for path in [
        format!("/v1/operator/screens/{sc2}"),
        format!("/v1/operator/venues/{v2}"),
        format!("/v1/operator/movies/{m2}"),
    ] {
        let (s, b) = call(&app, Method::DELETE, &path, None).await;
        assert_eq!(s, 204, "{path}: {b}");
        let (s, _) = call(&app, Method::GET, &path, None).await;
        assert_eq!(s, 404, "{path} gone");
    }
    // The first venue keeps its screen, so it stays.
    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("/v1/operator/venues/{v}"),
        None,
    )
    .await;
    assert_eq!(s, 409);
    app.stop().await;
}

#[tokio::test]
async fn a_price_change_reaches_new_holds_only() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(2, 5, Span::days(3)).await.expect("show");
    let before = app.hold_id("alice", &show, &["A1", "A2"]).await;
    let (s, b) = call(
        &app,
        Method::PUT,
        &format!("/v1/operator/shows/{show}/prices"),
        Some(json!({"prices": {"REGULAR": 40_000}})),
    )
    .await;
    assert_eq!((s, &b["prices"]["REGULAR"]), (200, &json!(40_000)), "{b}");
    let after = app.hold_id("bob", &show, &["B1"]).await;
    // Checked out after the change, each at the price its hold was taken at.
    assert_eq!(checkout_amount(&app, "alice", &before).await, 2 * PRICE);
    assert_eq!(checkout_amount(&app, "bob", &after).await, 40_000);
    let seat_prices: Vec<i64> = sqlx::query_scalar(
        "SELECT bs.price_minor FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
          ORDER BY b.user_id, bs.label",
    )
    .fetch_all(&app.db)
    .await
    .expect("booking seats");
    assert_eq!(seat_prices, [PRICE, PRICE, 40_000]);
    let audit = last_audit(&app, "show", &show).await;
    assert_eq!(audit["action"], "show.update_prices");
    assert_eq!(audit["before"], json!({"prices": {"REGULAR": PRICE}}));
    assert_eq!(audit["after"], json!({"prices": {"REGULAR": 40_000}}));

    // Bad prices: 4xx, the price stays.
    for body in [
        json!({"prices": {}}),
        json!({"prices": {"REGULAR": 1, "VIP": 2}}),
        json!({"prices": {"REGULAR": -1}}),
        json!({"prices": {"REGULAR": 1}, "currency": "USD"}),
        json!({"REGULAR": 1}),
    ] {
        let (s, b) = call(
            &app,
            Method::PUT,
            &format!("/v1/operator/shows/{show}/prices"),
            Some(body.clone()),
        )
        .await;
        assert!((400..500).contains(&s), "{body}: {s} {b}");
    }
    let read_only = operator_of(&["*"], &[Scope::Read]);
    let (s, _) = call_as(
        &app,
        &read_only,
        Method::PUT,
        &format!("/v1/operator/shows/{show}/prices"),
        Some(json!({"prices": {"REGULAR": 1}})),
    )
    .await;
    assert_eq!(s, 403);
    let (_, b) = call(&app, Method::GET, &format!("/v1/shows/{show}"), None).await;
    assert_eq!(b["prices"], json!({"REGULAR": 40_000}));
    app.stop().await;
}

/// Blocks `seats` of `show` (the answer).
async fn block(app: &TestApp, show: &str, seats: &[&str]) -> (u16, Value) {
    call(
        app,
        Method::POST,
        &format!("/v1/operator/shows/{show}/blocked-seats"),
        Some(json!({"seats": seats, "reason": "house seats"})),
    )
    .await
}

async fn unblock(app: &TestApp, show: &str, seats: &[&str]) -> (u16, Value) {
    call(
        app,
        Method::DELETE,
        &format!("/v1/operator/shows/{show}/blocked-seats"),
        Some(json!({"seats": seats})),
    )
    .await
}

fn seat_status(map: &Value, label: &str) -> String {
    map["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .find(|s| s["label"] == label)
        .and_then(|s| s["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn blocked_seats_cannot_be_held_on_the_redis_path() {
    let app = TestApp::default().await.expect("app");
    assert!(app.wait_for_fast_path().await);
    let show = app.seed_show(2, 5, Span::days(3)).await.expect("show");
    let (s, b) = block(&app, &show, &["A1", "A2"]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["blocked_seats"],
        json!([{"seat": "A1", "reason": "house seats"}, {"seat": "A2", "reason": "house seats"}])
    );
    let (s, b) = app
        .hold(&user("alice"), &show, &["A1"])
        .await
        .expect("hold");
    assert_eq!(
        (s, &b["error"]["code"]),
        (409, &json!("seats_unavailable")),
        "{b}"
    );
    // All or nothing: A3 is not kept by a refused hold.
    let (s, _) = app
        .hold(&user("alice"), &show, &["A2", "A3"])
        .await
        .expect("hold");
    assert_eq!(s, 409);
    assert_eq!(app.lock_owner(&show, "A3").await, None);
    // Unavailable on the seat map and counted in occupancy.
    let (_, map) = app
        .get(&format!("/v1/shows/{show}/seats"))
        .await
        .expect("map");
    assert_eq!(seat_status(&map, "A1"), "BOOKED", "{map}");
    assert_eq!(seat_status(&map, "A3"), "AVAILABLE");
    let (_, occ) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows/{show}/occupancy"),
        None,
    )
    .await;
    assert_eq!(
        ["total", "available", "held", "booked", "blocked"].map(|f| occ["totals"][f].as_i64()),
        [Some(10), Some(8), Some(0), Some(0), Some(2)],
        "{occ}"
    );

    // A held seat cannot be blocked: 409 naming it, nothing changes.
    app.hold_id("carol", &show, &["B1"]).await;
    let (s, b) = block(&app, &show, &["B1", "B2"]).await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (409, &json!("seats_not_blockable")),
        "{b}"
    );
    assert_eq!(b["error"]["details"], json!(["B1"]), "{b}");
    let (_, one) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows/{show}"),
        None,
    )
    .await;
    assert_eq!(
        one["blocked_seats"].as_array().map(Vec::len),
        Some(2),
        "{one}"
    );
    // Bad input: 4xx, nothing blocked.
    for body in [
        json!({"seats": ["Z9"], "reason": "x"}),
        json!({"seats": ["B3"]}),
        json!({"seats": [], "reason": "x"}),
        json!({"seats": ["B3"], "reason": "x", "until": "tomorrow"}),
        json!({"seats": ["B3"], "reason": ""}),
    ] {
        let (s, b) = call(
            &app,
            Method::POST,
            &format!("/v1/operator/shows/{show}/blocked-seats"),
            Some(body.clone()),
        )
        .await;
        assert!((400..500).contains(&s), "{body}: {s} {b}");
    }
    let (s, _) = call_as(
        &app,
        &operator_of(&["elsewhere"], &[Scope::Catalog]),
        Method::POST,
        &format!("/v1/operator/shows/{show}/blocked-seats"),
        Some(json!({"seats": ["B3"], "reason": "x"})),
    )
    .await;
    assert_eq!(s, 403);
    let (_, one) = call(
        &app,
        Method::GET,
        &format!("/v1/operator/shows/{show}"),
        None,
    )
    .await;
    assert_eq!(
        one["blocked_seats"].as_array().map(Vec::len),
        Some(2),
        "{one}"
    );
    let audit = last_audit(&app, "show", &show).await;
    assert_eq!(audit["action"], "show.block_seats");
    assert_eq!(audit["before"]["A1"]["status"], "AVAILABLE", "{audit}");
    assert_eq!(audit["after"]["status"], "BLOCKED");

    // The negative control: unblocked, the same hold succeeds.
    let (s, b) = unblock(&app, &show, &["A1"]).await;
    assert_eq!(
        (s, &b["blocked_seats"][0]["seat"]),
        (200, &json!("A2")),
        "{b}"
    );
    app.hold_id("alice", &show, &["A1"]).await;
    let audit = last_audit(&app, "show", &show).await;
    assert_eq!(audit["action"], "show.unblock_seats");
    assert_eq!(audit["before"]["A1"]["status"], "BLOCKED");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_seats_cannot_be_held_on_the_postgres_only_path() {
    // No Redis at all (nothing listens on port 1): the shard takes holds
    // through Postgres alone.
    let mut settings = test_settings().await.expect("settings");
    settings.redis_url = "redis://127.0.0.1:1".into();
    settings.breaker_open_ms = 200;
    let app = TestApp::spawn(settings).await.expect("app");
    assert_eq!(app.lock_path().await, "postgres_only");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let (s, b) = block(&app, &show, &["A1"]).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .hold(&user("alice"), &show, &["A1"])
        .await
        .expect("hold");
    assert_eq!(
        (s, &b["error"]["code"]),
        (409, &json!("seats_unavailable")),
        "{b}"
    );
    assert_eq!(app.lock_path().await, "postgres_only");
    let (s, _) = unblock(&app, &show, &["A1"]).await;
    assert_eq!(s, 200);
    app.hold_id("alice", &show, &["A1"]).await;
    let holds: i64 = app
        .count("SELECT count(*) FROM holds WHERE path = 'postgres'")
        .await;
    assert_eq!(holds, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_one_replica_is_served_by_another() {
    let a = TestApp::default().await.expect("replica a");
    let mut settings = a.settings.clone();
    settings.listen = "127.0.0.1:0".into();
    settings.replica_id = String::new();
    let b = TestApp::spawn_with_gateway(settings, a.gateway.clone())
        .await
        .expect("replica b");
    let show = a.seed_show(2, 5, Span::days(3)).await.expect("show");
    let gone = a.seed_show(1, 5, Span::days(4)).await.expect("show");
    // B has both shows in its cache.
    b.hold_id("dave", &show, &["B5"]).await;
    let (s, _) = b
        .get(&format!("/v1/shows/{gone}/seats"))
        .await
        .expect("map");
    assert_eq!(s, 200);

    let (s, _) = call(
        &a,
        Method::PUT,
        &format!("/v1/operator/shows/{show}/prices"),
        Some(json!({"prices": {"REGULAR": 31_000}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = block(&a, &show, &["A1"]).await;
    assert_eq!(s, 200);
    // B's next holds: the blocked seat refused, the new price charged.
    let (s, body) = b.hold(&user("erin"), &show, &["A1"]).await.expect("hold");
    assert_eq!(s, 409, "{body}");
    let hold = b.hold_id("erin", &show, &["A2"]).await;
    assert_eq!(checkout_amount(&b, "erin", &hold).await, 31_000);
    // A show deleted on A leaves B's cache.
    let (s, _) = call(
        &a,
        Method::DELETE,
        &format!("/v1/operator/shows/{gone}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert!(
        eventually(Duration::from_secs(10), || async {
            matches!(
                b.get(&format!("/v1/shows/{gone}/seats")).await,
                Ok((404, _))
            )
        })
        .await,
        "replica b still serves a deleted show"
    );
    b.app.stop().await;
    b.db.close().await;
    a.stop().await;
}

#[tokio::test]
async fn a_write_sent_to_the_region_bumps_the_edge_catalog_version() {
    let gateway = upstash_gateway::spawn(upstash_gateway::GatewayConfig {
        listen: "127.0.0.1:0".into(),
        redis_url: shared_redis_url(),
        token: "catalog-test-token".into(),
    })
    .await
    .expect("upstash gateway");
    let prefix = format!("e2e-cat-{}:", Uuid::new_v4().simple());
    let mut settings = test_settings().await.expect("settings");
    settings.edge_upstash_url = Some(gateway.url());
    settings.edge_upstash_token = "catalog-test-token".into();
    settings.edge_key_prefix = prefix.clone();
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let (_, s) = app.get(&format!("/v1/shows/{show}")).await.expect("show");
    let city = s["city"].as_str().expect("city").to_owned();
    let mut redis = app.redis().await.expect("redis");
    let city_key = format!("{prefix}edge:catalog:v:{city}");
    let global_key = format!("{prefix}edge:catalog:v");
    let read = |key: String| {
        let mut r = redis.clone();
        async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<i64>>(&mut r)
                .await
                .expect("GET")
                .unwrap_or(0)
        }
    };
    let (c0, g0) = (read(city_key.clone()).await, read(global_key.clone()).await);
    assert!(c0 >= 1, "creating the city's catalog bumped it");
    let (s, _) = call(
        &app,
        Method::PUT,
        &format!("/v1/operator/shows/{show}/prices"),
        Some(json!({"prices": {"REGULAR": 1_000}})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(read(city_key.clone()).await, c0 + 1);
    assert_eq!(read(global_key.clone()).await, g0 + 1);
    // A refused write bumps nothing.
    let (s, _) = call(
        &app,
        Method::PUT,
        &format!("/v1/operator/shows/{show}/prices"),
        Some(json!({"prices": {}})),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(read(city_key.clone()).await, c0 + 1);
    let _: () = redis::cmd("DEL")
        .arg(&city_key)
        .arg(&global_key)
        .query_async(&mut redis)
        .await
        .expect("DEL");
    app.stop().await;
}
