//! Invariant 9: bad input gets a clear 4xx JSON error and changes nothing.

use e2e::{user, TestApp};
use region_core::auth::{Role, TokenKeys};
use serde_json::{json, Value};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

async fn raw(
    app: &TestApp,
    path: &str,
    tok: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}{path}", app.url))
        .body(body.to_owned());
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// (name, status, error code, token, content type, body)
type Case<'a> = (
    &'a str,
    u16,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    String,
);

#[tokio::test]
async fn bad_hold_requests_are_refused_and_write_nothing() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(2, 12, chrono::Duration::days(1))
        .await
        .expect("seed");
    let alice = user("alice");
    let path = format!("/v1/shows/{show}/holds");

    let cases: Vec<Case> = vec![
        (
            "unknown show",
            404,
            "unknown_show",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":["A1"]}"#.into(),
        ),
        (
            "unknown seat",
            422,
            "unknown_seat",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":["A1","Z9"]}"#.into(),
        ),
        (
            "seat past the row",
            422,
            "unknown_seat",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":["A13"]}"#.into(),
        ),
        (
            "duplicate seats",
            422,
            "duplicate_seat",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":["A1","A2","A1"]}"#.into(),
        ),
        (
            "too many seats",
            422,
            "too_many_seats",
            Some(&alice),
            Some("application/json"),
            json!({"seats": (1..=11).map(|n| format!("A{n}")).collect::<Vec<_>>()}).to_string(),
        ),
        (
            "no seats",
            422,
            "no_seats",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":[]}"#.into(),
        ),
        (
            "bad label",
            422,
            "invalid_seat_label",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":["a1"]}"#.into(),
        ),
        (
            "malformed json",
            400,
            "malformed_json",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":["A1""#.into(),
        ),
        (
            "wrong shape",
            422,
            "invalid_body",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":"A1"}"#.into(),
        ),
        (
            "unknown field",
            422,
            "invalid_body",
            Some(&alice),
            Some("application/json"),
            r#"{"seats":["A1"],"price":0}"#.into(),
        ),
        (
            "no content type",
            415,
            "unsupported_media_type",
            Some(&alice),
            None,
            r#"{"seats":["A1"]}"#.into(),
        ),
        (
            "missing token",
            401,
            "unauthorized",
            None,
            Some("application/json"),
            r#"{"seats":["A1"]}"#.into(),
        ),
        (
            "garbage token",
            401,
            "unauthorized",
            Some("not-a-jwt"),
            Some("application/json"),
            r#"{"seats":["A1"]}"#.into(),
        ),
    ];
    for (name, status, err, tok, ct, body) in &cases {
        let p = if *name == "unknown show" {
            "/v1/shows/00000000-0000-7000-8000-000000000000/holds".to_owned()
        } else {
            path.clone()
        };
        let (s, b) = raw(&app, &p, *tok, *ct, body).await;
        assert_eq!((s, code(&b)), (*status, *err), "{name}: {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: message"
        );
    }

    // Tokens signed with another key, or expired, are refused.
    let forged = TokenKeys::new("some-other-secret-000000")
        .mint("alice", Role::User, chrono::Utc::now().timestamp(), 60)
        .expect("mint");
    let expired = TokenKeys::new(e2e::SECRET)
        .mint(
            "alice",
            Role::User,
            chrono::Utc::now().timestamp() - 7200,
            60,
        )
        .expect("mint");
    for t in [forged, expired] {
        let (s, b) = app.hold(&t, &show, &["A1"]).await.expect("hold");
        assert_eq!((s, code(&b)), (401, "unauthorized"));
    }
    let (s, b) = app.hold(&alice, "not-a-uuid", &["A1"]).await.expect("hold");
    assert_eq!((s, code(&b)), (400, "invalid_show_id"));

    // Nothing was written anywhere.
    let holds: i64 = app.count("SELECT count(*) FROM holds").await;
    assert_eq!(holds, 0);
    let held: i64 = app
        .count("SELECT count(*) FROM show_seats WHERE status <> 'AVAILABLE'")
        .await;
    assert_eq!(held, 0);
    let mut r = app.redis().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("seat:{{{show}}}:*"))
        .query_async(&mut r)
        .await
        .expect("keys");
    assert!(keys.is_empty(), "no Redis locks left: {keys:?}");
    app.stop().await;
}

#[tokio::test]
async fn holds_are_refused_once_the_show_has_started() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 5, chrono::Duration::days(1))
        .await
        .expect("seed");
    // Move the show into the past before anything has read it.
    sqlx::query("UPDATE shows SET starts_at = now() - interval '10 minutes' WHERE id = $1::uuid")
        .bind(&show)
        .execute(&app.db)
        .await
        .expect("update");
    let (s, b) = app
        .hold(&user("alice"), &show, &["A1"])
        .await
        .expect("hold");
    assert_eq!((s, code(&b)), (409, "show_started"));
    let holds: i64 = app.count("SELECT count(*) FROM holds").await;
    assert_eq!(holds, 0);
    app.stop().await;
}

#[tokio::test]
async fn operator_endpoints_need_an_operator_and_valid_input() {
    let app = TestApp::default().await.expect("app");
    let alice = user("alice");
    let (s, b) = app
        .send(
            reqwest::Method::POST,
            "/v1/operator/cities",
            Some(&alice),
            Some(json!({"code":"pun","name":"Pune"})),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (403, "forbidden"));
    let (s, b) = app
        .send(
            reqwest::Method::POST,
            "/v1/operator/cities",
            None,
            Some(json!({"code":"pun","name":"Pune"})),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (401, "unauthorized"));

    let (s, b) = app
        .operator_post("/v1/operator/cities", json!({"code":"PUNE","name":"Pune"}))
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (422, "invalid_body"), "{b}");
    let (s, _) = app
        .operator_post("/v1/operator/cities", json!({"code":"pun","name":"Pune"}))
        .await
        .expect("send");
    assert_eq!(s, 201);
    let (s, b) = app
        .operator_post("/v1/operator/cities", json!({"code":"pun","name":"Pune"}))
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (409, "city_exists"));
    let (s, b) = app
        .operator_post(
            "/v1/operator/venues",
            json!({"city":"pun","name":"V","time_zone":"Mars/Olympus"}),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (422, "invalid_time_zone"));
    let (s, b) = app
        .operator_post(
            "/v1/operator/venues",
            json!({"city":"xyz","name":"V","time_zone":"Asia/Kolkata"}),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (404, "unknown_city"));
    let (s, venue) = app
        .operator_post(
            "/v1/operator/venues",
            json!({"city":"pun","name":"V","time_zone":"Asia/Kolkata"}),
        )
        .await
        .expect("send");
    assert_eq!(s, 201);
    for (rows, why) in [
        (json!([]), "no rows"),
        (json!([{"row":"A","seats":0,"category":"X"}]), "empty row"),
        (
            json!([{"row":"a","seats":3,"category":"X"}]),
            "bad row label",
        ),
        (
            json!([{"row":"A","seats":3,"category":"X"},{"row":"A","seats":3,"category":"X"}]),
            "row twice",
        ),
    ] {
        let (s, b) = app
            .operator_post(
                "/v1/operator/screens",
                json!({"venue_id": venue["id"], "name":"S", "rows": rows}),
            )
            .await
            .expect("send");
        assert_eq!((s, code(&b)), (422, "invalid_layout"), "{why}: {b}");
    }
    let (s, screen) = app
        .operator_post(
            "/v1/operator/screens",
            json!({"venue_id": venue["id"], "name":"S", "rows": [{"row":"A","seats":3,"category":"GOLD"},{"row":"B","seats":3,"category":"SILVER"}]}),
        )
        .await
        .expect("send");
    assert_eq!(s, 201);
    // Names are unique per parent; the conflict names the existing row.
    let (s, b) = app
        .operator_post(
            "/v1/operator/screens",
            json!({"venue_id": venue["id"], "name":"S", "rows": [{"row":"A","seats":1,"category":"GOLD"}]}),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (409, "screen_exists"));
    assert_eq!(b["error"]["details"]["id"], screen["id"]);
    let (s, b) = app
        .operator_post(
            "/v1/operator/venues",
            json!({"city":"pun","name":"V","time_zone":"Asia/Kolkata"}),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (409, "venue_exists"));
    assert_eq!(b["error"]["details"]["id"], venue["id"]);
    let (_, movie) = app
        .operator_post(
            "/v1/operator/movies",
            json!({"title":"M","duration_minutes":90}),
        )
        .await
        .expect("send");
    let future = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let (s, b) = app
        .operator_post(
            "/v1/operator/shows",
            json!({"screen_id": screen["id"], "movie_id": movie["id"], "starts_at": future, "prices": {"GOLD": 100}, "currency": "INR"}),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (422, "missing_price"), "{b}");
    let (s, b) = app
        .operator_post(
            "/v1/operator/shows",
            json!({"screen_id": screen["id"], "movie_id": movie["id"], "starts_at": future,
                   "prices": {"GOLD": 100, "SILVER": 50, "PLATINUM": 900}, "currency": "INR"}),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (422, "unknown_category"), "{b}");
    let (s, b) = app
        .send(
            reqwest::Method::PUT,
            "/v1/operator/cities",
            None,
            Some(json!({})),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (405, "method_not_allowed"));
    let (s, b) = app.get("/v1/nothing-here").await.expect("send");
    assert_eq!((s, code(&b)), (404, "no_route"));
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (s, b) = app
        .operator_post(
            "/v1/operator/shows",
            json!({"screen_id": screen["id"], "movie_id": movie["id"], "starts_at": past, "prices": {"GOLD": 100, "SILVER": 50}, "currency": "INR"}),
        )
        .await
        .expect("send");
    assert_eq!((s, code(&b)), (422, "show_in_past"));
    let shows: i64 = app.count("SELECT count(*) FROM shows").await;
    assert_eq!(shows, 0, "no show was written");
    app.stop().await;
}

/// Issue 9.2 and 9.4: control characters (NUL first: Postgres cannot store
/// it and used to answer with a 500) in any text field, absurd prices and
/// dates are refused with a 422 that names the field, and nothing is
/// written.
#[tokio::test]
async fn control_characters_and_absurd_values_are_refused_naming_the_field() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 4, chrono::Duration::days(1))
        .await
        .expect("seed");
    let (_, detail) = app.get(&format!("/v1/shows/{show}")).await.expect("show");
    let (screen, movie) = (detail["screen_id"].clone(), detail["movie_id"].clone());
    let (_, venue): (i64, String) = sqlx::query_as(
        "SELECT 0::bigint, v.id::text FROM venues v JOIN screens s ON s.venue_id = v.id
          WHERE s.id = $1::uuid",
    )
    .bind(screen.as_str().expect("screen id"))
    .fetch_one(&app.db)
    .await
    .expect("venue");
    let tables = "(SELECT count(*) FROM cities) + (SELECT count(*) FROM venues)
        + (SELECT count(*) FROM screens) + (SELECT count(*) FROM movies) + (SELECT count(*) FROM shows)";
    let before = app.count(&format!("SELECT {tables}")).await;
    let start = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();

    for bad in [
        "a\u{0}b",
        "\u{0}",
        "line\nbreak",
        "esc\u{1b}[31m",
        "del\u{7f}",
    ] {
        let cases: Vec<(&str, &str, Value)> = vec![
            (
                "/v1/operator/cities",
                "name",
                json!({"code": "qqq", "name": bad}),
            ),
            (
                "/v1/operator/venues",
                "name",
                json!({"city": "qqq", "name": bad, "time_zone": "Asia/Kolkata"}),
            ),
            (
                "/v1/operator/screens",
                "name",
                json!({"venue_id": venue, "name": bad, "rows": [{"row": "A", "seats": 2, "category": "R"}]}),
            ),
            (
                "/v1/operator/screens",
                "category",
                json!({"venue_id": venue, "name": "S2", "rows": [{"row": "A", "seats": 2, "category": bad}]}),
            ),
            (
                "/v1/operator/movies",
                "title",
                json!({"title": bad, "duration_minutes": 90}),
            ),
            (
                "/v1/operator/movies",
                "language",
                json!({"title": "T", "duration_minutes": 90, "language": bad}),
            ),
            (
                "/v1/operator/shows",
                "prices",
                json!({"screen_id": screen, "movie_id": movie, "starts_at": start,
                       "prices": {bad: 100}, "currency": "INR"}),
            ),
        ];
        for (path, field, body) in cases {
            let (s, v) = app.operator_post(path, body).await.expect("post");
            assert_eq!(s, 422, "{path} {field} {bad:?}: {v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains(field),
                "{path}: the message names {field}: {msg}"
            );
        }
    }

    let far = (chrono::Utc::now() + chrono::Duration::days(365 * 20)).to_rfc3339();
    for (name, body, want) in [
        (
            "i64::MAX price",
            json!({"screen_id": screen, "movie_id": movie, "starts_at": start,
                   "prices": {"REGULAR": i64::MAX}, "currency": "INR"}),
            "invalid_price",
        ),
        (
            "year far ahead",
            json!({"screen_id": screen, "movie_id": movie, "starts_at": far,
                   "prices": {"REGULAR": 100}, "currency": "INR"}),
            "show_too_far_ahead",
        ),
        (
            "a seat limit of 0",
            json!({"screen_id": screen, "movie_id": movie, "starts_at": start,
                   "prices": {"REGULAR": 100}, "currency": "INR", "max_seats_per_user": 0}),
            "invalid_field",
        ),
        (
            "year 10000",
            json!({"screen_id": screen, "movie_id": movie, "starts_at": "+10000-01-01T00:00:00Z",
                   "prices": {"REGULAR": 100}, "currency": "INR"}),
            "",
        ),
    ] {
        let (s, v) = app
            .operator_post("/v1/operator/shows", body)
            .await
            .expect("post");
        assert_eq!(s, 422, "{name}: {v}");
        if !want.is_empty() {
            assert_eq!(code(&v), want, "{name}");
        }
    }
    assert_eq!(
        app.count(&format!("SELECT {tables}")).await,
        before,
        "nothing written"
    );
    app.stop().await;
}

/// Issue 9.4: two shows cannot overlap on one screen (a Postgres exclusion
/// constraint on the screen and the show's time range, 409 show_overlaps);
/// a show that starts when the last one ends is fine.
#[tokio::test]
async fn overlapping_shows_on_one_screen_are_refused() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 4, chrono::Duration::days(1))
        .await
        .expect("seed");
    let (_, detail) = app.get(&format!("/v1/shows/{show}")).await.expect("show");
    let starts: chrono::DateTime<chrono::Utc> = detail["starts_at"]
        .as_str()
        .expect("starts_at")
        .parse()
        .expect("time");
    // The seeded movie runs 120 minutes.
    let at = |minutes: i64| (starts + chrono::Duration::minutes(minutes)).to_rfc3339();
    let new_show = |starts_at: String| {
        json!({"screen_id": detail["screen_id"], "movie_id": detail["movie_id"],
               "starts_at": starts_at, "prices": {"REGULAR": 100}, "currency": "INR"})
    };
    for (minutes, want) in [
        (0, 409),
        (60, 409),
        (-60, 409),
        (119, 409),
        (120, 201),
        (-120, 201),
    ] {
        let (s, v) = app
            .operator_post("/v1/operator/shows", new_show(at(minutes)))
            .await
            .expect("post");
        assert_eq!(s, want, "{minutes} min after the first show: {v}");
        if want == 409 {
            assert_eq!(code(&v), "show_overlaps");
        }
    }
    assert_eq!(app.count("SELECT count(*) FROM shows").await, 3);
    app.stop().await;
}
