//! Routing at the edge (the built Worker in workerd): each city's
//! requests go to its own region core; when one region core is down its
//! cities get `503 region_unavailable` with `Retry-After` (quickly, once
//! its breaker is open) while the other city keeps working; bad input is
//! refused at the edge with a clear 4xx and nothing is forwarded.

use e2e::edge::{Client, EdgeOptions, EdgeStack, SaleMode};
use serde_json::json;

const MAX_BODY: usize = 1024;
const BREAKER_FAILURES: u64 = 3;
const BREAKER_OPEN_S: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_outage_is_a_503_for_its_city_only() {
    let mut stack = EdgeStack::start(
        EdgeOptions::cities(&["mum", "pune"])
            .var("BREAKER_FAILURES", BREAKER_FAILURES.to_string())
            .var("BREAKER_OPEN_MS", (BREAKER_OPEN_S * 1000).to_string()),
    )
    .await
    .expect("edge stack");
    let mum = stack
        .seed_show("mum", 2, 10, SaleMode::Open)
        .await
        .expect("show");
    let pune = stack
        .seed_show("pune", 2, 10, SaleMode::Open)
        .await
        .expect("show");

    // Each city's requests reach its own region core, and only that one.
    for (city, show) in [("mum", &mum), ("pune", &pune)] {
        let r = stack
            .hold(
                city,
                show,
                &Client::user(&format!("first-{city}"), "10.5.0.1"),
                &["A1"],
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{city}: {r}");
    }
    for (city, show) in [("mum", &mum), ("pune", &pune)] {
        let holds = format!("/v1/shows/{show}/holds");
        assert_eq!(stack.region(city).proxy.count("POST", &holds), 1);
        let other = if city == "mum" { "pune" } else { "mum" };
        assert_eq!(stack.region(other).proxy.count("POST", &holds), 0);
    }
    let r = stack
        .get("/v1/cities", &Client::anonymous("10.5.0.2"))
        .await;
    let mut codes: Vec<&str> = r
        .body
        .as_array()
        .expect("cities")
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, ["mum", "pune"], "{r}");

    stack.stop_region("pune").await;
    let pune_holds = format!("/v1/shows/{pune}/holds");
    let forwarded_before = stack.region("pune").proxy.count("POST", &pune_holds);
    let attempts = BREAKER_FAILURES + 3;
    for i in 0..attempts {
        let seat = format!("B{}", i + 1);
        let r = stack
            .hold(
                "pune",
                &pune,
                &Client::user(&format!("p{i}"), "10.6.0.1"),
                &[&seat],
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (503, Some("region_unavailable")),
            "pune #{i}: {r}"
        );
        let retry = r.header_u64("Retry-After").expect("Retry-After");
        assert!((1..=BREAKER_OPEN_S).contains(&retry), "Retry-After {retry}");
        // The other city is unaffected, before and after pune's breaker opens.
        let r = stack
            .hold(
                "mum",
                &mum,
                &Client::user(&format!("m{i}"), "10.6.0.2"),
                &[&seat],
                None,
            )
            .await;
        assert_eq!(r.status, 201, "mum #{i} during pune's outage: {r}");
        let r = stack
            .get(
                &format!("/v1/c/mum/shows/{mum}/seats"),
                &Client::anonymous("10.6.0.3"),
            )
            .await;
        assert_eq!(r.status, 200, "{r}");
    }
    // The breaker opened after BREAKER_FAILURES failures: the later
    // attempts were answered at the edge without trying the region.
    assert_eq!(
        stack.region("pune").proxy.count("POST", &pune_holds) - forwarded_before,
        BREAKER_FAILURES,
        "{:?}",
        stack.region("pune").proxy.counts()
    );
    // The city list cached before the outage is still served whole ...
    let all = stack
        .get("/v1/cities", &Client::anonymous("10.6.0.4"))
        .await;
    assert_eq!(
        (all.status, all.header("X-Edge-Cache")),
        (200, Some("HIT")),
        "{all}"
    );
    assert_eq!(all.body.as_array().map(Vec::len), Some(2), "{all}");
    // ... until a catalog change (through the edge, in mum) invalidates
    // it: then the region that answers gives a partial list, not cached.
    let r = stack
        .post(
            "/v1/c/mum/operator/movies",
            &Client::operator(),
            json!({"title": "Added during the outage", "duration_minutes": 90}),
        )
        .await;
    assert_eq!(r.status, 201, "{r}");
    for _ in 0..2 {
        let before = stack.region("mum").proxy.count("GET", "/v1/cities");
        let r = stack
            .get("/v1/cities", &Client::anonymous("10.6.0.4"))
            .await;
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.header("X-Edge-Partial"), Some("true"), "{r}");
        assert_eq!(r.body, json!([{"code": "mum", "name": "City mum"}]));
        assert_eq!(
            stack.region("mum").proxy.count("GET", "/v1/cities"),
            before + 1,
            "not cached"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_at_the_edge_and_nothing_is_forwarded() {
    let stack =
        EdgeStack::start(EdgeOptions::cities(&["mum"]).var("MAX_BODY_BYTES", MAX_BODY.to_string()))
            .await
            .expect("edge stack");
    let show = stack
        .seed_show("mum", 1, 10, SaleMode::Open)
        .await
        .expect("show");
    let holds = format!("/v1/c/mum/shows/{show}/holds");
    let big = json!({ "seats": ["A1"], "pad": "x".repeat(4 * MAX_BODY) }).to_string();

    // Each case several times over the client's kept-alive connections:
    // an answer given before the body is read must still arrive whole.
    for i in 0..20u32 {
        let who = Client::fan(i);
        let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
            (
                "unknown city",
                stack
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/c/zzz/shows/{show}/holds"),
                        &who,
                    )
                    .json(&json!({"seats": ["A1"]})),
                404,
                "unknown_city",
            ),
            (
                "unknown city read",
                stack.request(
                    reqwest::Method::GET,
                    &format!("/v1/c/zzz/shows/{show}"),
                    &who,
                ),
                404,
                "unknown_city",
            ),
            (
                "malformed JSON",
                stack
                    .request(reqwest::Method::POST, &holds, &who)
                    .header("Content-Type", "application/json")
                    .body(r#"{"seats": ["A1""#),
                400,
                "malformed_json",
            ),
            (
                "oversized body",
                stack
                    .request(reqwest::Method::POST, &holds, &who)
                    .header("Content-Type", "application/json")
                    .body(big.clone()),
                413,
                "body_too_large",
            ),
            (
                "not a show id",
                stack
                    .request(
                        reqwest::Method::POST,
                        "/v1/c/mum/shows/not-a-uuid/holds",
                        &who,
                    )
                    .json(&json!({"seats": ["A1"]})),
                400,
                "invalid_show_id",
            ),
            (
                "no token",
                stack
                    .request(reqwest::Method::POST, &holds, &Client::anonymous(&who.ip))
                    .json(&json!({"seats": ["A1"]})),
                401,
                "unauthorized",
            ),
        ];
        for (what, req, status, code) in cases {
            let r = stack.send(req).await;
            assert_eq!(
                (r.status, r.code()),
                (status, Some(code)),
                "{what} #{i}: {r}"
            );
        }
    }
    assert_eq!(
        stack.region("mum").proxy.total(),
        0,
        "nothing was forwarded: {:?}",
        stack.region("mum").proxy.counts()
    );
    // The same route with good input is forwarded.
    let r = stack
        .hold(
            "mum",
            &show,
            &Client::user("good", "10.7.0.1"),
            &["A1"],
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(stack.region("mum").proxy.total(), 1);
    stack.stop().await;
}
