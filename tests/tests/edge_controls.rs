//! The edge's run-time controls (the built Worker in workerd, its state
//! in the real Redis through the Upstash gateway): the deny list and peak
//! mode set through the operator API take effect within seconds without a
//! redeploy, record who changed them, refuse bad input with a 4xx, and
//! are reserved to operator tokens whose grant allows it; operator
//! pass-through calls are refused at the edge outside the token's cities.

use std::time::{Duration, Instant};

use e2e::edge::{now_ms, Client, EdgeOptions, EdgeStack, Reply, SaleMode, SaleSettings};
use serde_json::json;
use shared::token::Scope;

const CITY: &str = "mum";

/// How long a change may take to reach the edge (isolates read the
/// controls every 2 s): generous, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

const DENY: &str = "/v1/operator/edge/deny";
const PEAK: &str = "/v1/operator/edge/peak";

/// Asks `ask` again until `ok`, or fails naming `what` after the deadline.
async fn until<F, Fut>(what: &str, mut ask: F, ok: impl Fn(&Reply) -> bool) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        let r = ask().await;
        if ok(&r) {
            return r;
        }
        assert!(Instant::now() < end, "{what}: still {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn denied(r: &Reply) -> bool {
    (r.status, r.code()) == (403, Some("denied"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deny_list_is_set_through_the_api_and_applies_within_seconds() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 4, SaleMode::Open)
        .await
        .expect("show");
    let read = format!("/v1/c/{CITY}/shows/{show}");
    let op = Client::operator();
    let trudy = Client::user("trudy", "10.7.0.5");
    let botnet = Client::anonymous("198.51.100.23");
    let neighbour = Client::anonymous("10.7.0.6");
    let eve = Client::user("eve", "10.7.0.7");
    for who in [&trudy, &botnet, &neighbour, &eve] {
        assert_eq!(stack.get(&read, who).await.status, 200, "{who:?}");
    }

    // An address, a network and a user (the user for ten seconds).
    let r = stack
        .put(
            DENY,
            &op,
            json!({"add": [
                {"target": "10.7.0.5", "reason": "scraping seat maps"},
                {"target": "198.51.100.0/24", "reason": "botnet", "ttl_s": 3600},
                {"target": "user:eve", "reason": "card testing", "ttl_s": 10},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["entries"].as_array().map(Vec::len), Some(3), "{r}");
    assert_eq!(r.body["last_change"]["by"], "operator-1", "{r}");
    until("trudy denied", || stack.get(&read, &trudy), denied).await;
    until("the network denied", || stack.get(&read, &botnet), denied).await;
    let r = stack.hold(CITY, &show, &trudy, &["A1"], None).await;
    assert!(denied(&r), "a denied client holds nothing: {r}");
    // Others are unaffected.
    assert_eq!(stack.get(&read, &neighbour).await.status, 200);
    // Who changed it, when, before and after: kept beside the list.
    let r = stack.get(DENY, &op).await;
    assert_eq!(r.status, 200, "{r}");
    let last = &r.body["last_change"];
    assert_eq!(last["by"], "operator-1", "{r}");
    assert!(last["at"].is_string(), "{r}");
    assert_eq!(last["before"], json!([]), "{r}");
    assert_eq!(last["after"].as_array().map(Vec::len), Some(3), "{r}");
    let trudy_entry = r.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["target"] == "10.7.0.5")
        .expect("trudy's entry");
    assert_eq!(trudy_entry["reason"], "scraping seat maps");
    assert_eq!(trudy_entry["added_by"], "operator-1");

    // An entry with an expiry stops applying by itself.
    until("eve denied", || stack.get(&read, &eve), denied).await;
    until(
        "eve's entry expires",
        || stack.get(&read, &eve),
        |r| r.status == 200,
    )
    .await;

    // Removed: allowed again within seconds; the network stays denied.
    let r = stack.put(DENY, &op, json!({"remove": ["10.7.0.5"]})).await;
    assert_eq!(r.status, 200, "{r}");
    until(
        "trudy allowed again",
        || stack.get(&read, &trudy),
        |r| r.status == 200,
    )
    .await;
    assert!(denied(&stack.get(&read, &botnet).await));
    let r = stack.hold(CITY, &show, &trudy, &["A1"], None).await;
    assert_eq!(r.status, 201, "{r}");

    // Bad input: a clear 4xx, nothing changed.
    for (body, code) in [
        (
            json!({"add": [{"target": "example.com", "reason": "x"}]}),
            "invalid_control",
        ),
        (
            json!({"add": [{"target": "10.9.9.9", "reason": ""}]}),
            "invalid_control",
        ),
        (
            json!({"add": [{"target": "10.9.9.9/40", "reason": "x"}]}),
            "invalid_control",
        ),
        (json!({}), "invalid_control"),
        (json!({"add": [], "also": 1}), "invalid_body"),
    ] {
        let r = stack.put(DENY, &op, body.clone()).await;
        assert_eq!((r.status, r.code()), (422, Some(code)), "{body}: {r}");
    }
    let r = stack
        .send(
            stack
                .request(reqwest::Method::PUT, DENY, &op)
                .header("Content-Type", "application/json")
                .body("{"),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, Some("malformed_json")), "{r}");
    let r = stack.get(DENY, &op).await;
    assert_eq!(r.body["entries"].as_array().map(Vec::len), Some(1), "{r}");

    // Operators only.
    let r = stack.get(DENY, &Client::anonymous("10.7.0.9")).await;
    assert_eq!(r.status, 401, "{r}");
    let r = stack
        .put(
            DENY,
            &Client::user("mallory", "10.7.0.10"),
            json!({"remove": ["10.0.0.1"]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, Some("forbidden")), "{r}");
    stack.stop().await;
}

/// Catalog reads: a burst of 8 per user, then one a minute (no unit comes
/// back during the test, so counts are exact); IPs far looser.
fn limits() -> String {
    r#"{"catalog":{"limit":1,"period_ms":60000,"burst":8,"ip":{"limit":1,"period_ms":60000,"burst":1000}}}"#
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_mode_tightens_limits_and_pauses_browsing_but_not_buying() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]).var("RATE_LIMITS", limits()))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 6, SaleMode::Open)
        .await
        .expect("show");
    let read = format!("/v1/c/{CITY}/shows/{show}");
    let op = Client::operator();
    let mut n = 0u32;
    let mut fresh = || {
        n += 1;
        Client::user(
            &format!("peak-{n}"),
            &format!("10.8.{}.{}", n / 200, n % 200),
        )
    };
    // Normal: the burst is 8, and the city list is served (and cached).
    let r = stack.get(&read, &fresh()).await;
    assert_eq!(r.header_u64("RateLimit-Limit"), Some(8), "{r}");
    let r = stack.get("/v1/cities", &fresh()).await;
    assert_eq!(r.status, 200, "{r}");

    // Peak on: limits halved, browsing off with Retry-After.
    let r = stack
        .put(
            PEAK,
            &op,
            json!({"enabled": true, "limit_factor": 0.5, "non_essential": "off", "retry_after_s": 17}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["peak"]["enabled"], true, "{r}");
    let r = until(
        "the stricter limit",
        || {
            let who = fresh();
            let (stack, read) = (&stack, &read);
            async move { stack.get(read, &who).await }
        },
        |r| r.header_u64("RateLimit-Limit") == Some(4),
    )
    .await;
    assert_eq!(r.status, 200, "an essential read is served: {r}");
    // A fresh buyer gets 4 reads, not 8.
    let buyer = fresh();
    for k in 0..4 {
        let r = stack.get(&read, &buyer).await;
        assert_eq!(r.status, 200, "read {k}: {r}");
    }
    let r = stack.get(&read, &buyer).await;
    assert_eq!((r.status, r.code()), (429, Some("rate_limited")), "{r}");
    // Non-essential reads: 503 with Retry-After.
    let r = stack.get("/v1/cities", &fresh()).await;
    assert_eq!((r.status, r.code()), (503, Some("peak_mode")), "{r}");
    assert_eq!(r.header_u64("Retry-After"), Some(17), "{r}");
    let date = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d");
    let r = stack
        .get(&format!("/v1/cities/{CITY}/shows?date={date}"), &fresh())
        .await;
    assert_eq!((r.status, r.code()), (503, Some("peak_mode")), "{r}");
    // Essential ones work: the seat map, a hold.
    let r = stack
        .get(&format!("/v1/c/{CITY}/shows/{show}/seats"), &fresh())
        .await;
    assert_eq!(r.status, 200, "{r}");
    let r = stack.hold(CITY, &show, &fresh(), &["A1"], None).await;
    assert_eq!(r.status, 201, "{r}");

    // Stale: browsing is served from the edge cache, whatever its age.
    let r = stack
        .put(
            PEAK,
            &op,
            json!({"enabled": true, "non_essential": "stale"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let r = until(
        "the city list from the cache",
        || {
            let who = fresh();
            let stack = &stack;
            async move { stack.get("/v1/cities", &who).await }
        },
        |r| r.status == 200,
    )
    .await;
    assert_eq!(r.header("X-Edge-Cache"), Some("STALE"), "{r}");

    // Who did it: the last change, with before and after.
    let r = stack.get(PEAK, &op).await;
    assert_eq!(r.body["last_change"]["by"], "operator-1", "{r}");
    assert_eq!(
        r.body["last_change"]["before"]["non_essential"], "off",
        "{r}"
    );
    assert_eq!(
        r.body["last_change"]["after"]["non_essential"], "stale",
        "{r}"
    );

    // Bad input changes nothing.
    for body in [
        json!({"enabled": true, "limit_factor": 3}),
        json!({"enabled": true, "retry_after_s": 0}),
        json!({"enabled": true, "non_essential": "sometimes"}),
        json!({"on": true}),
    ] {
        let r = stack.put(PEAK, &op, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {r}");
    }

    // Off: back to normal.
    let r = stack.put(PEAK, &op, json!({"enabled": false})).await;
    assert_eq!(r.status, 200, "{r}");
    until(
        "the normal limit",
        || {
            let who = fresh();
            let (stack, read) = (&stack, &read);
            async move { stack.get(read, &who).await }
        },
        |r| r.header_u64("RateLimit-Limit") == Some(8),
    )
    .await;
    let r = stack.get("/v1/cities", &fresh()).await;
    assert_eq!(r.status, 200, "{r}");
    assert_ne!(r.header("X-Edge-Cache"), Some("STALE"), "{r}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_tokens_act_within_their_grant() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 4, SaleMode::Open)
        .await
        .expect("show");
    let mum_sales = Client::scoped_operator("mum-sales", &[CITY], &[Scope::Sales]);
    let del_sales = Client::scoped_operator("del-sales", &["del"], &[Scope::Sales]);
    let reader = Client::scoped_operator("auditor", &["*"], &[Scope::Read]);
    let everywhere = Client::scoped_operator("platform", &["*"], &[Scope::Sales]);
    let peak_on = json!({"enabled": true});
    let code = |r: &Reply| (r.status, r.code().map(str::to_owned));
    let refused = |c: &str| (403, Some(c.to_owned()));

    // Edge-wide controls need a token for every city, and `sales`.
    let r = stack.put(PEAK, &mum_sales, peak_on.clone()).await;
    assert_eq!(code(&r), refused("city_forbidden"), "{r}");
    let r = stack
        .put(DENY, &mum_sales, json!({"remove": ["10.0.0.1"]}))
        .await;
    assert_eq!(code(&r), refused("city_forbidden"), "{r}");
    let r = stack.put(PEAK, &reader, peak_on.clone()).await;
    assert_eq!(code(&r), refused("scope_forbidden"), "{r}");
    // Reading them takes any operator scope.
    for who in [&reader, &mum_sales] {
        assert_eq!(stack.get(PEAK, who).await.status, 200);
        assert_eq!(stack.get(DENY, who).await.status, 200);
    }
    let r = stack
        .put(PEAK, &everywhere, json!({"enabled": false}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["last_change"]["by"], "platform", "{r}");

    // A sale: `sales` in the show's city.
    let sale = SaleSettings {
        city: CITY.into(),
        opens_at_ms: now_ms() + 3_600_000,
        rate_per_sec: 5.0,
        pass_ttl_s: 300,
        grace_s: 30,
    };
    let body = |s: &SaleSettings| {
        json!({"city": s.city, "opens_at": chrono::DateTime::<chrono::Utc>::from_timestamp_millis(s.opens_at_ms).expect("time").to_rfc3339(),
               "rate_per_sec": s.rate_per_sec, "pass_ttl_s": s.pass_ttl_s, "grace_s": s.grace_s})
    };
    let path = format!("/v1/operator/sales/{show}");
    let r = stack.put(&path, &del_sales, body(&sale)).await;
    assert_eq!(code(&r), refused("city_forbidden"), "{r}");
    let r = stack.put(&path, &reader, body(&sale)).await;
    assert_eq!(code(&r), refused("scope_forbidden"), "{r}");
    let proxy = &stack.region(CITY).proxy;
    assert_eq!(
        proxy.count("PUT", &format!("/v1/operator/shows/{show}/sale")),
        0,
        "refused at the edge"
    );
    let r = stack.put(&path, &mum_sales, body(&sale)).await;
    assert_eq!(r.status, 200, "{r}");
    let r = stack.get(&path, &del_sales).await;
    assert_eq!(code(&r), refused("city_forbidden"), "{r}");
    assert_eq!(stack.get(&path, &reader).await.status, 200);

    // A city's operator calls: refused at the edge outside the token's
    // cities (the region checks again).
    let audit = format!("/v1/c/{CITY}/operator/audit");
    let r = stack.get(&audit, &del_sales).await;
    assert_eq!(code(&r), refused("city_forbidden"), "{r}");
    assert_eq!(
        proxy.count("GET", "/v1/operator/audit"),
        0,
        "refused at the edge"
    );
    let r = stack.get(&audit, &reader).await;
    assert_eq!(r.status, 200, "{r}");
    let r = stack.get(&audit, &mum_sales).await;
    assert_eq!(r.status, 200, "{r}");
    // The sale's change is in the region's audit log, by its operator.
    let set_by: Vec<&str> = r.body["entries"]
        .as_array()
        .or_else(|| r.body.as_array())
        .expect("audit entries")
        .iter()
        .filter(|e| e["action"] == "show.set_sale")
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert_eq!(set_by, vec!["mum-sales"], "{r}");
    stack.stop().await;
}

/// Every edge-wide change (deny list, peak mode, directory) appends one
/// entry to the edge's audit log, with who, when, before and after; a
/// refused change appends nothing; the log is read newest first in pages
/// and only by operators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_wide_changes_are_in_the_edge_audit_log() {
    const AUDIT: &str = "/v1/operator/edge/audit";
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let platform = Client::scoped_operator("platform", &["*"], &[Scope::Sales]);
    let r = stack.get(AUDIT, &platform).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.body["entries"],
        json!([]),
        "a new edge has no history: {r}"
    );

    let r = stack
        .put(
            DENY,
            &platform,
            json!({"add": [{"target": "10.8.0.1", "reason": "scraping"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let r = stack.put(PEAK, &platform, json!({"enabled": true})).await;
    assert_eq!(r.status, 200, "{r}");
    let directory = stack.get("/v1/operator/directory", &platform).await;
    assert_eq!(directory.status, 200, "{directory}");
    let table = directory.body["regions"].clone();
    let r = stack
        .send(
            stack
                .request(reqwest::Method::PUT, "/v1/operator/directory", &platform)
                .json(&table),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    // Refused changes leave no entry.
    let r = stack
        .put(
            DENY,
            &platform,
            json!({"add": [{"target": "nowhere", "reason": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{r}");
    let mum_sales = Client::scoped_operator("mum-sales", &[CITY], &[Scope::Sales]);
    let r = stack.put(PEAK, &mum_sales, json!({"enabled": false})).await;
    assert_eq!(r.status, 403, "{r}");

    let r = stack.get(AUDIT, &platform).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{r}");
    let entries = r.body["entries"].as_array().expect("entries").clone();
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["edge.directory", "edge.peak", "edge.deny"],
        "newest first, refusals absent: {r}"
    );
    for e in &entries {
        assert_eq!(e["actor"], "platform", "{e}");
        assert!(e["at"].is_string() && e["id"].is_string(), "{e}");
    }
    assert_eq!(entries[0]["before"], table, "{r}");
    assert_eq!(entries[0]["after"], table, "{r}");
    assert_eq!(entries[1]["before"]["enabled"], false, "{r}");
    assert_eq!(entries[1]["after"]["enabled"], true, "{r}");
    assert_eq!(entries[2]["before"], json!([]), "{r}");
    assert_eq!(entries[2]["after"][0]["target"], "10.8.0.1", "{r}");

    // Pages: two, then the rest from the cursor.
    let r = stack.get(&format!("{AUDIT}?limit=2"), &platform).await;
    assert_eq!(r.body["entries"].as_array().map(Vec::len), Some(2), "{r}");
    let next = r.body["next"].as_str().expect("a cursor").to_owned();
    assert_eq!(next, entries[1]["id"].as_str().unwrap_or_default());
    let r = stack
        .get(&format!("{AUDIT}?limit=2&before={next}"), &platform)
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["entries"][0]["action"], "edge.deny", "{r}");
    assert_eq!(r.body["entries"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(r.body["next"].is_null(), "{r}");

    // Bad queries are a 422; readers must be operators.
    for q in ["?before=yesterday", "?limit=0", "?limit=500", "?since=1"] {
        let r = stack.get(&format!("{AUDIT}{q}"), &platform).await;
        assert_eq!(
            (r.status, r.code()),
            (422, Some("invalid_query")),
            "{q}: {r}"
        );
    }
    let r = stack.get(AUDIT, &Client::anonymous("10.8.0.9")).await;
    assert_eq!(r.status, 401, "{r}");
    let r = stack.get(AUDIT, &Client::user("fan", "10.8.0.10")).await;
    assert_eq!(r.status, 403, "{r}");
    let r = stack.get(AUDIT, &mum_sales).await;
    assert_eq!(r.status, 200, "any operator may read it: {r}");
    stack.stop().await;
}
