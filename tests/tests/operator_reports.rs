//! Operator reads and reports (issue 16) end to end, against real
//! Postgres, Redis and the sandbox gateway: a booking looked up by number
//! or id, a show's occupancy and bookings, the sales report (JSON and
//! CSV) with exact figures, refunds needing attention, a FAILED refund
//! retried until the gateway accepts it and another settled by hand (the
//! worker leaves it alone); every bad input a 4xx JSON error that changes
//! nothing, and a buyer's token refused.
//!
//! A refund fails for good through the sandbox's `refunds_refuse_next`
//! fault (a 400 the refund worker does not retry), as it would at a real
//! gateway; `refunds_fail_next` (503s, retried for ever) keeps a refund
//! PENDING.

use chrono::{Duration as Span, Utc};
use e2e::money::{self, assert_money_safe};
use e2e::{eventually, token, user, TestApp, GATEWAY_KEY};
use reqwest::Method;
use serde_json::{json, Value};
use shared::token::Role;
use std::time::Duration;

/// How long refunds may take to reach the sandbox gateway.
const REFUNDS_LAND: Duration = Duration::from_secs(15);
/// The seeded show's price of a seat (REGULAR), minor units.
const PRICE: i64 = 25_000;

fn operator() -> String {
    token("operator-1", Role::Operator)
}

async fn op_get(app: &TestApp, path: &str) -> (u16, Value) {
    app.send(Method::GET, path, Some(&operator()), None)
        .await
        .expect("request")
}

async fn op_post(app: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    app.send(Method::POST, path, Some(&operator()), body)
        .await
        .expect("request")
}

async fn cancel(app: &TestApp, who: &str, booking: &str) {
    let (s, b) = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{booking}/cancel"),
            Some(&user(who)),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "cancel: {b}");
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// The venue's (Asia/Kolkata) dates around now: the sales report's days.
fn venue_days() -> (String, String) {
    let today = Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive();
    let d = |n| (today + Span::days(n)).format("%Y-%m-%d").to_string();
    (d(-1), d(1))
}

/// A GET as the operator with an `Accept` header, as sent.
async fn op_get_raw(app: &TestApp, path: &str, accept: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.url))
        .bearer_auth(operator())
        .header("Accept", accept)
        .send()
        .await
        .expect("request")
}

/// The figures of a report line or total, in column order.
fn figures(v: &Value) -> [i64; 8] {
    [
        "bookings_confirmed",
        "seats_sold",
        "gross_minor",
        "bookings_cancelled",
        "refunded_minor",
        "refunds_pending_minor",
        "refunds_failed_minor",
        "net_minor",
    ]
    .map(|f| v[f].as_i64().unwrap_or_else(|| panic!("{f} in {v}")))
}

#[tokio::test]
async fn reads_and_sales_report_add_up() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(2, 5, Span::days(3)).await.expect("show");
    let alice = app.buy("alice", &show, &["A1", "A2"]).await;
    let bob = app.buy("bob", &show, &["A3"]).await;
    let carol = app.buy("carol", &show, &["B1", "B2", "B3"]).await;
    // Three days ahead: the default policy refunds all of it.
    cancel(&app, "bob", str_of(&bob, "id")).await;
    assert_money_safe(&app, REFUNDS_LAND).await;
    // A live hold.
    app.hold_id("dave", &show, &["B4"]).await;

    // Occupancy: by category and in total, adding up to the seats.
    let (s, occ) = op_get(&app, &format!("/v1/operator/shows/{show}/occupancy")).await;
    assert_eq!(s, 200, "{occ}");
    let counts =
        |v: &Value| ["total", "available", "held", "booked"].map(|f| v[f].as_i64().expect("count"));
    assert_eq!(counts(&occ["totals"]), [10, 4, 1, 5], "{occ}");
    assert_eq!(occ["categories"].as_array().expect("categories").len(), 1);
    assert_eq!(occ["categories"][0]["category"], "REGULAR");
    assert_eq!(counts(&occ["categories"][0]), [10, 4, 1, 5]);

    // A booking by number (any buyer's), and by id.
    let number = str_of(&bob, "number");
    let (s, b) = op_get(&app, &format!("/v1/operator/bookings/{number}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["booking"]["id"], bob["id"]);
    assert_eq!(b["booking"]["status"], "CANCELLED");
    assert_eq!(b["booking"]["seats"][0]["label"], "A3");
    assert_eq!(b["user_id"], "bob");
    assert_eq!(b["payment_id"], bob["payment_id"]);
    assert_eq!(b["payment_status"], "SUCCEEDED");
    assert_eq!(b["refund"]["status"], "SUCCEEDED");
    assert_eq!(b["refund"]["amount_minor"], PRICE);
    assert_eq!(b["refund"]["attempts"], 0);
    let (s, by_id) = op_get(
        &app,
        &format!("/v1/operator/bookings/{}", str_of(&carol, "id")),
    )
    .await;
    assert_eq!(s, 200, "{by_id}");
    assert_eq!(by_id["booking"]["number"], carol["number"]);
    assert_eq!(by_id["user_id"], "carol");
    assert_eq!(by_id["refund"], Value::Null);

    // The show's bookings, two at a time, oldest first.
    let path = format!("/v1/operator/shows/{show}/bookings");
    let (s, p1) = op_get(&app, &format!("{path}?limit=2")).await;
    assert_eq!(s, 200, "{p1}");
    let numbers = |p: &Value| -> Vec<String> {
        p["bookings"]
            .as_array()
            .expect("bookings")
            .iter()
            .map(|b| str_of(b, "number").to_owned())
            .collect()
    };
    assert_eq!(numbers(&p1), [str_of(&alice, "number"), number]);
    assert_eq!(p1["bookings"][0]["seats"], json!(["A1", "A2"]));
    assert_eq!(p1["bookings"][0]["user_id"], "alice");
    assert_eq!(p1["bookings"][0]["amount_minor"], 2 * PRICE);
    assert_eq!(p1["bookings"][1]["status"], "CANCELLED");
    assert_eq!(p1["bookings"][1]["refund_status"], "SUCCEEDED");
    let after = str_of(&p1, "next_after");
    let (s, p2) = op_get(&app, &format!("{path}?limit=2&after={after}")).await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(numbers(&p2), [str_of(&carol, "number")]);
    assert_eq!(p2["next_after"], Value::Null);
    let (_, cancelled) = op_get(&app, &format!("{path}?status=CANCELLED")).await;
    assert_eq!(numbers(&cancelled), [number]);

    // Sales: 3 bookings, 6 seats; bob's refunded in full.
    let (from, to) = venue_days();
    let expect = [3, 6, 6 * PRICE, 1, PRICE, 0, 0, 5 * PRICE];
    let (s, by_show) = op_get(
        &app,
        &format!("/v1/operator/reports/sales?from={from}&to={to}&group=show"),
    )
    .await;
    assert_eq!(s, 200, "{by_show}");
    let lines = by_show["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1, "{by_show}");
    assert_eq!(lines[0]["show_id"], show.as_str());
    assert_eq!(lines[0]["currency"], "INR");
    assert_eq!(figures(&lines[0]), expect);
    assert_eq!(by_show["totals"][0]["currency"], "INR");
    assert_eq!(figures(&by_show["totals"][0]), expect);
    let (s, by_day) = op_get(
        &app,
        &format!("/v1/operator/reports/sales?from={from}&to={to}&group=day"),
    )
    .await;
    assert_eq!(s, 200, "{by_day}");
    // One venue-local day (two if the test straddles its midnight).
    let mut summed = [0i64; 8];
    for l in by_day["lines"].as_array().expect("lines") {
        assert!(l["day"].is_string() && l.get("show_id").is_none(), "{l}");
        for (t, v) in summed.iter_mut().zip(figures(l)) {
            *t += v;
        }
    }
    assert_eq!(summed, expect);
    // A range without sales: no lines.
    let (s, none) = op_get(
        &app,
        "/v1/operator/reports/sales?from=2020-01-01&to=2020-12-31",
    )
    .await;
    assert_eq!((s, none["lines"].clone()), (200, json!([])), "{none}");

    // CSV, by format=csv and by Accept: the same numbers.
    for (query, accept) in [("&format=csv", "*/*"), ("", "text/csv")] {
        let resp = op_get_raw(
            &app,
            &format!("/v1/operator/reports/sales?from={from}&to={to}&group=show{query}"),
            accept,
        )
        .await;
        assert_eq!(resp.status(), 200);
        let header = |h: &str| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with("text/csv"));
        assert_eq!(
            header("content-disposition"),
            format!("attachment; filename=\"sales-show-{from}-{to}.csv\"")
        );
        let body = resp.text().await.expect("csv");
        let rows: Vec<Vec<&str>> = body
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), 2, "{body}");
        assert_eq!(
            rows[0][..4],
            ["show_id", "title", "show_starts_at", "currency"]
        );
        assert_eq!(rows[1][0], show);
        assert_eq!(rows[1][3], "INR");
        let numbers: Vec<i64> = rows[1][4..].iter().map(|n| n.parse().expect("n")).collect();
        assert_eq!(numbers, expect, "{body}");
    }

    bad_input_changes_nothing(&app, &show, number).await;
    app.stop().await;
}

/// Every refusal: its status and code, and nothing written.
async fn bad_input_changes_nothing(app: &TestApp, show: &str, number: &str) {
    let before = money::footprint(app).await.expect("footprint");
    let unknown = uuid::Uuid::new_v4();
    let sales = "/v1/operator/reports/sales";
    let bookings = format!("/v1/operator/shows/{show}/bookings");
    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::GET,
            "/v1/operator/bookings/nonsense".into(),
            None,
            400,
            "invalid_booking_id",
        ),
        (
            Method::GET,
            format!("/v1/operator/bookings/{unknown}"),
            None,
            404,
            "unknown_booking",
        ),
        (
            Method::GET,
            "/v1/operator/shows/xyz/occupancy".into(),
            None,
            400,
            "invalid_show_id",
        ),
        (
            Method::GET,
            format!("/v1/operator/shows/{unknown}/occupancy"),
            None,
            404,
            "unknown_show",
        ),
        (
            Method::GET,
            format!("/v1/operator/shows/{unknown}/bookings"),
            None,
            404,
            "unknown_show",
        ),
        (
            Method::GET,
            format!("{bookings}?limit=0"),
            None,
            422,
            "invalid_limit",
        ),
        (
            Method::GET,
            format!("{bookings}?limit=501"),
            None,
            422,
            "invalid_limit",
        ),
        (
            Method::GET,
            format!("{bookings}?limit=ten"),
            None,
            400,
            "bad_query",
        ),
        (
            Method::GET,
            format!("{bookings}?status=PAID"),
            None,
            422,
            "invalid_status",
        ),
        (
            Method::GET,
            format!("{bookings}?after=zzz"),
            None,
            400,
            "invalid_cursor",
        ),
        (
            Method::GET,
            format!("{bookings}?after={unknown}"),
            None,
            422,
            "invalid_cursor",
        ),
        (
            Method::GET,
            format!("{bookings}?page=2"),
            None,
            400,
            "bad_query",
        ),
        (Method::GET, sales.into(), None, 422, "invalid_range"),
        (
            Method::GET,
            format!("{sales}?from=2026-13-01&to=2026-12-31"),
            None,
            422,
            "invalid_range",
        ),
        (
            Method::GET,
            format!("{sales}?from=2026-12-05&to=2026-12-01"),
            None,
            422,
            "invalid_range",
        ),
        (
            Method::GET,
            format!("{sales}?from=2025-01-01&to=2026-01-02"),
            None,
            422,
            "invalid_range",
        ),
        (
            Method::GET,
            format!("{sales}?from=2026-12-01&to=2026-12-02&group=week"),
            None,
            422,
            "invalid_group",
        ),
        (
            Method::GET,
            format!("{sales}?from=2026-12-01&to=2026-12-02&format=xml"),
            None,
            422,
            "invalid_format",
        ),
        (
            Method::GET,
            "/v1/operator/refunds?status=SUCCEEDED".into(),
            None,
            422,
            "invalid_status",
        ),
        (
            Method::GET,
            "/v1/operator/refunds?limit=501".into(),
            None,
            422,
            "invalid_limit",
        ),
        (
            Method::POST,
            "/v1/operator/refunds/xyz/retry".into(),
            None,
            400,
            "invalid_refund_id",
        ),
        (
            Method::POST,
            format!("/v1/operator/refunds/{unknown}/retry"),
            None,
            404,
            "unknown_refund",
        ),
        (
            Method::POST,
            format!("/v1/operator/refunds/{unknown}/settle"),
            Some(json!({"note": "paid in cash"})),
            404,
            "unknown_refund",
        ),
        (
            Method::POST,
            format!("/v1/operator/refunds/{unknown}/settle"),
            Some(json!({"note": "  "})),
            422,
            "invalid_field",
        ),
        (
            Method::POST,
            format!("/v1/operator/refunds/{unknown}/settle"),
            Some(json!({})),
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            format!("/v1/operator/refunds/{unknown}/settle"),
            Some(json!({"note": "x", "gateway_reference": ""})),
            422,
            "invalid_field",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (s, v) = app
            .send(method.clone(), &path, Some(&operator()), body)
            .await
            .expect("request");
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {v}"
        );
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    // A buyer's token: 403 everywhere; no token: 401.
    for (method, path) in [
        (Method::GET, format!("/v1/operator/bookings/{number}")),
        (Method::GET, format!("/v1/operator/shows/{show}/occupancy")),
        (Method::GET, bookings.clone()),
        (
            Method::GET,
            format!("{sales}?from=2026-12-01&to=2026-12-02"),
        ),
        (Method::GET, "/v1/operator/refunds".into()),
        (
            Method::POST,
            format!("/v1/operator/refunds/{unknown}/retry"),
        ),
    ] {
        let (s, v) = app
            .send(method.clone(), &path, Some(&user("alice")), None)
            .await
            .expect("request");
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}: {v}"
        );
        let (s, _) = app.send(method, &path, None, None).await.expect("request");
        assert_eq!(s, 401, "{path}");
    }
    let (s, v) = app
        .send(
            Method::POST,
            &format!("/v1/operator/refunds/{unknown}/settle"),
            Some(&user("alice")),
            Some(json!({"note": "x"})),
        )
        .await
        .expect("request");
    assert_eq!(s, 403, "{v}");
    assert_eq!(money::footprint(app).await.expect("footprint"), before);
}

/// The refund of a booking, as the operator's lookup shows it.
async fn refund_of(app: &TestApp, booking: &str) -> Value {
    let (s, b) = op_get(app, &format!("/v1/operator/bookings/{booking}")).await;
    assert_eq!(s, 200, "{b}");
    b["refund"].clone()
}

/// Refunds the sandbox made, by payment intent.
async fn gateway_refunds(app: &TestApp) -> Vec<(String, i64)> {
    let ledger: Value = app
        .http
        .get(format!("{}/sandbox/ledger", app.gateway.url()))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .expect("ledger")
        .json()
        .await
        .expect("ledger json");
    let mut out = Vec::new();
    for intent in ledger["intents"].as_array().expect("intents") {
        for r in intent["refunds"].as_array().expect("refunds") {
            out.push((
                str_of(intent, "id").to_owned(),
                r["amount"].as_i64().expect("amount"),
            ));
        }
    }
    out.sort();
    out
}

/// Cancels `booking` while the gateway refuses the next refund for good,
/// and waits until the worker has marked it FAILED. Its refund id.
async fn failed_refund(app: &TestApp, who: &str, booking: &str) -> String {
    money::set_gateway_faults(app, json!({"refunds_refuse_next": 1}))
        .await
        .expect("faults");
    cancel(app, who, booking).await;
    let failed = eventually(REFUNDS_LAND, || async {
        refund_of(app, booking).await["status"] == "FAILED"
    })
    .await;
    let refund = refund_of(app, booking).await;
    assert!(failed, "the worker never gave up on the refund: {refund}");
    assert_eq!(refund["attempts"], 1, "a refusal is not retried: {refund}");
    assert!(
        str_of(&refund, "last_error").contains("refund_refused"),
        "{refund}"
    );
    str_of(&refund, "id").to_owned()
}

#[tokio::test]
async fn failed_refunds_are_retried_or_settled_by_hand() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("show");
    let b1 = app.buy("u1", &show, &["A1"]).await;
    let b2 = app.buy("u2", &show, &["A2"]).await;
    let b3 = app.buy("u3", &show, &["A3"]).await;
    let (n1, n2, n3) = (
        str_of(&b1, "number"),
        str_of(&b2, "number"),
        str_of(&b3, "number"),
    );
    let r1 = failed_refund(&app, "u1", n1).await;
    let r2 = failed_refund(&app, "u2", n2).await;

    // Listed as needing attention, oldest first.
    let (s, list) = op_get(&app, "/v1/operator/refunds?status=FAILED").await;
    assert_eq!(s, 200, "{list}");
    let listed: Vec<(&str, &str)> = list["refunds"]
        .as_array()
        .expect("refunds")
        .iter()
        .map(|r| (str_of(r, "id"), str_of(r, "booking_number")))
        .collect();
    assert_eq!(listed, [(r1.as_str(), n1), (r2.as_str(), n2)]);
    let first = &list["refunds"][0];
    assert_eq!(first["amount_minor"], PRICE);
    assert_eq!(first["currency"], "INR");
    assert!(first["attempts"].as_i64() >= Some(1));
    assert!(str_of(first, "last_error").contains("refund_refused"));
    assert!(first["age_seconds"].as_i64() >= Some(0));
    let (_, pending) = op_get(&app, "/v1/operator/refunds?status=PENDING").await;
    assert_eq!(pending["refunds"], json!([]));
    let (_, all) = op_get(&app, "/v1/operator/refunds?limit=1").await;
    assert_eq!(all["refunds"].as_array().map(Vec::len), Some(1));

    // Sales see both as failed, none refunded.
    let (from, to) = venue_days();
    let sales = format!("/v1/operator/reports/sales?from={from}&to={to}&group=show");
    let (_, report) = op_get(&app, &sales).await;
    assert_eq!(
        figures(&report["totals"][0]),
        [3, 3, 3 * PRICE, 2, 0, 0, 2 * PRICE, 3 * PRICE]
    );

    // The gateway accepts again: a retry goes through.
    money::set_gateway_faults(&app, json!({"refunds_fail_next": 0}))
        .await
        .expect("faults");
    let (s, retried) = op_post(&app, &format!("/v1/operator/refunds/{r1}/retry"), None).await;
    assert_eq!(s, 200, "{retried}");
    assert_eq!(retried["retried_by"], "operator-1");
    assert!(retried["retried_at"].is_string());
    let landed = eventually(REFUNDS_LAND, || async {
        refund_of(&app, n1).await["status"] == "SUCCEEDED"
    })
    .await;
    assert!(
        landed,
        "the retried refund never landed: {}",
        refund_of(&app, n1).await
    );
    let (s, again) = op_post(&app, &format!("/v1/operator/refunds/{r1}/retry"), None).await;
    assert_eq!(
        (s, str_of(&again["error"], "code")),
        (409, "refund_already_settled")
    );

    // The other is settled by hand: once.
    let settle = format!("/v1/operator/refunds/{r2}/settle");
    let body = json!({"note": "bank transfer by finance", "gateway_reference": "NEFT-123"});
    let (s, settled) = op_post(&app, &settle, Some(body.clone())).await;
    assert_eq!(s, 200, "{settled}");
    assert_eq!(settled["status"], "SETTLED_MANUALLY");
    assert_eq!(settled["settled_by"], "operator-1");
    assert_eq!(settled["settle_note"], "bank transfer by finance");
    assert_eq!(settled["gateway_refund_id"], "NEFT-123");
    assert!(settled["settled_at"].is_string());
    let (s, twice) = op_post(&app, &settle, Some(body)).await;
    assert_eq!(
        (s, str_of(&twice["error"], "code")),
        (409, "refund_already_settled")
    );
    assert_eq!(twice["error"]["details"]["status"], "SETTLED_MANUALLY");
    let (s, retry) = op_post(&app, &format!("/v1/operator/refunds/{r2}/retry"), None).await;
    assert_eq!(
        (s, str_of(&retry["error"], "code")),
        (409, "refund_already_settled")
    );
    // The buyer is told as for a gateway refund.
    let told: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'refund.succeeded'
            AND payload->>'refund_id' = $1 AND (payload->>'settled_manually')::boolean",
    )
    .bind(&r2)
    .fetch_one(&app.db)
    .await
    .expect("outbox");
    assert_eq!(told, 1);
    // Both actions are in the audit log once each, with before and after;
    // the refused ones left nothing there.
    let (s, log) = op_get(&app, "/v1/operator/audit?target_kind=refund").await;
    assert_eq!(s, 200, "{log}");
    let acts: Vec<(&str, &str, &str, &str)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                str_of(e, "action"),
                str_of(e, "target_id"),
                str_of(&e["before"], "status"),
                str_of(&e["after"], "status"),
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            ("refund.settle", r2.as_str(), "FAILED", "SETTLED_MANUALLY"),
            ("refund.retry", r1.as_str(), "FAILED", "PENDING"),
        ],
        "{log}"
    );
    assert_eq!(
        log["entries"][0]["after"]["note"],
        "bank transfer by finance"
    );
    assert_eq!(log["entries"][0]["actor"], "operator-1");

    // A PENDING refund (the gateway failing it again) is neither settled
    // by hand nor retried: it may be in flight.
    money::set_gateway_faults(&app, json!({"refunds_fail_next": 100_000}))
        .await
        .expect("faults");
    cancel(&app, "u3", n3).await;
    let r3 = refund_of(&app, n3).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (s, v) = op_post(
        &app,
        &format!("/v1/operator/refunds/{r3}/settle"),
        Some(json!({"note": "too early"})),
    )
    .await;
    assert_eq!(
        (s, str_of(&v["error"], "code")),
        (409, "refund_not_failed"),
        "{v}"
    );
    let (s, v) = op_post(&app, &format!("/v1/operator/refunds/{r3}/retry"), None).await;
    assert_eq!(
        (s, str_of(&v["error"], "code")),
        (409, "refund_not_failed"),
        "{v}"
    );
    let (_, pending) = op_get(&app, "/v1/operator/refunds?status=PENDING").await;
    assert_eq!(pending["refunds"][0]["id"], r3.as_str());
    money::set_gateway_faults(&app, json!({"refunds_fail_next": 0}))
        .await
        .expect("faults");

    // Once r3 lands the worker has run after the settlement: the gateway
    // refunded u1's and u3's payments, never u2's.
    let landed = eventually(REFUNDS_LAND, || async {
        refund_of(&app, n3).await["status"] == "SUCCEEDED"
    })
    .await;
    assert!(landed, "{}", refund_of(&app, n3).await);
    assert_eq!(refund_of(&app, n2).await["status"], "SETTLED_MANUALLY");
    let gw_ids: Vec<String> = sqlx::query_scalar(
        "SELECT p.gateway_payment_id FROM payments p JOIN bookings b ON b.payment_id = p.id
          WHERE b.number = ANY($1) ORDER BY p.gateway_payment_id",
    )
    .bind(vec![n1.to_owned(), n3.to_owned()])
    .fetch_all(&app.db)
    .await
    .expect("gateway ids");
    let mut expected: Vec<(String, i64)> = gw_ids.into_iter().map(|g| (g, PRICE)).collect();
    expected.sort();
    assert_eq!(gateway_refunds(&app).await, expected);
    assert_money_safe(&app, REFUNDS_LAND).await;

    // Sales: all three refunded (two by the gateway, one by hand).
    let (_, report) = op_get(&app, &sales).await;
    assert_eq!(
        figures(&report["totals"][0]),
        [3, 3, 3 * PRICE, 3, 3 * PRICE, 0, 0, 0]
    );
    let (_, attention) = op_get(&app, "/v1/operator/refunds").await;
    assert_eq!(attention["refunds"], json!([]));
    app.stop().await;
}
