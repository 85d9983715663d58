//! One source for a flash sale: the operator configures it once (the
//! edge's `PUT /v1/operator/sales/{show}`, stored by the show's region
//! with its `sale_mode`, audited there), and the region's mode and the
//! edge's waiting room are derived from that one copy, so they agree —
//! after a change too, and for a sale the edge was never told about. A
//! show in a flash sale without a waiting room cannot be made.

use std::time::{Duration, Instant};

use e2e::edge::{now_ms, Client, EdgeOptions, EdgeStack, Reply, SaleMode};
use e2e::TestApp;
use serde_json::{json, Value};

const CITY: &str = "mum";

/// A platform operator's token for the region core itself.
fn operator_token() -> String {
    e2e::token("operator-1", region_core::auth::Role::Operator)
}
const DEADLINE: Duration = Duration::from_secs(20);

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .expect("a valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn sale(opens_at_ms: i64, rate: f64) -> Value {
    json!({"city": CITY, "opens_at": rfc3339(opens_at_ms), "rate_per_sec": rate,
           "pass_ttl_s": 300, "grace_s": 60})
}

/// The region's own record of the show's sale.
async fn region_sale(app: &TestApp, show: &str) -> Value {
    let (s, body) = app
        .get(&format!("/v1/shows/{show}/sale"))
        .await
        .expect("region sale");
    assert_eq!(s, 200, "{body}");
    body
}

async fn join(stack: &EdgeStack, show: &str, who: &Client) -> Reply {
    let path = format!("/v1/c/{CITY}/sales/{show}/join");
    stack
        .send(stack.request(reqwest::Method::POST, &path, who))
        .await
}

/// Joins as a new user each time until `ok`, or fails after the deadline.
async fn join_until(stack: &EdgeStack, show: &str, what: &str, ok: impl Fn(&Reply) -> bool) {
    let end = Instant::now() + DEADLINE;
    let mut n = 0;
    loop {
        n += 1;
        let who = Client::user(
            &format!("{what}-{n}"),
            &format!("10.6.{}.{}", n / 200, n % 200),
        );
        let r = join(stack, show, &who).await;
        if ok(&r) {
            return;
        }
        assert!(Instant::now() < end, "{what}: still {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_configured_once_sets_the_region_and_the_edge_alike() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let app = stack.region(CITY).app();
    let show = stack
        .seed_show(CITY, 1, 6, SaleMode::Open)
        .await
        .expect("show");
    let op = Client::operator();
    let path = format!("/v1/operator/sales/{show}");
    // Open: no waiting room anywhere; holds need no pass.
    assert_eq!(region_sale(app, &show).await["sale_mode"], "open");
    let r = join(&stack, &show, &Client::user("early", "10.5.0.1")).await;
    assert_eq!((r.status, r.code()), (404, Some("unknown_sale")), "{r}");

    // Configured once, at the edge: the region stores mode and room.
    let opened = now_ms() - 1_000;
    let r = stack.put(&path, &op, sale(opened, 1000.0)).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["sale_mode"], "flash_sale", "{r}");
    let stored = region_sale(app, &show).await;
    assert_eq!(stored["sale_mode"], "flash_sale", "{stored}");
    assert_eq!(stored["waiting_room"]["rate_per_sec"], 1000.0, "{stored}");
    let (_, shown) = app.get(&format!("/v1/shows/{show}")).await.expect("show");
    assert_eq!(shown["sale_mode"], "flash_sale", "{shown}");
    // The region enforces it: no pass, no hold.
    let (s, body) = app
        .hold(&e2e::user("nopass"), &show, &["A1"])
        .await
        .expect("hold");
    assert_eq!(s, 403, "{body}");
    // The edge's room is the same sale: a buyer is admitted and buys.
    let ann = Client::user("ann", "10.5.0.2");
    let r = join(&stack, &show, &ann).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["opens_at"], rfc3339(opened), "{r}");
    let pass = r.body["pass"]
        .as_str()
        .expect("admitted at once")
        .to_owned();
    let r = stack.hold(CITY, &show, &ann, &["A2"], Some(&pass)).await;
    assert_eq!(r.status, 201, "{r}");

    // Changed: both change.
    let later = now_ms() + 3_600_000;
    let r = stack.put(&path, &op, sale(later, 5.0)).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["opens_at"], rfc3339(later), "{r}");
    let stored = region_sale(app, &show).await;
    assert_eq!(stored["waiting_room"]["rate_per_sec"], 5.0, "{stored}");
    let r = join(&stack, &show, &Client::user("bea", "10.5.0.3")).await;
    assert_eq!(
        (r.body["state"].as_str(), r.body["opens_at"].as_str()),
        (Some("pre_queue"), Some(rfc3339(later).as_str())),
        "{r}"
    );
    let r = stack.get(&path, &op).await;
    assert_eq!(r.body["opens_at"], rfc3339(later), "{r}");

    // Changed at the region through the edge's pass-through: the edge's
    // copy goes and the next join sees the region's.
    let sooner = now_ms() + 1_800_000;
    let r = stack
        .put(
            &format!("/v1/c/{CITY}/operator/shows/{show}/sale"),
            &op,
            json!({"sale_mode": "flash_sale", "waiting_room": {
                "opens_at": rfc3339(sooner), "rate_per_sec": 5.0, "pass_ttl_s": 300, "grace_s": 60}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let want = rfc3339(sooner);
    join_until(&stack, &show, "sooner", |r| {
        r.body["opens_at"].as_str() == Some(want.as_str())
    })
    .await;

    // Ended: open at the region, no waiting room at the edge.
    let r = stack
        .put(&path, &op, json!({"city": CITY, "sale_mode": "open"}))
        .await;
    assert_eq!(
        (r.status, r.body["sale_mode"].as_str()),
        (200, Some("open")),
        "{r}"
    );
    let stored = region_sale(app, &show).await;
    assert_eq!(
        (stored["sale_mode"].as_str(), &stored["waiting_room"]),
        (Some("open"), &Value::Null),
        "{stored}"
    );
    join_until(&stack, &show, "ended", |r| r.code() == Some("unknown_sale")).await;
    let (s, body) = app
        .hold(&e2e::user("nopass"), &show, &["A3"])
        .await
        .expect("hold");
    assert_eq!(s, 201, "an open show needs no pass: {body}");

    // Every change is in the region's audit log, by who made it.
    let (s, log) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/operator/audit?target_kind=show&target_id={show}"),
            Some(&operator_token()),
            None,
        )
        .await
        .expect("audit");
    assert_eq!(s, 200, "{log}");
    let changes = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "show.set_sale")
        .count();
    assert_eq!(changes, 4, "{log}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_without_its_waiting_room_cannot_be_made() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let app = stack.region(CITY).app();
    let show = stack
        .seed_show(CITY, 1, 4, SaleMode::Open)
        .await
        .expect("show");
    let op = Client::operator();

    // At the edge: a flash sale needs its room; an open sale has none.
    let path = format!("/v1/operator/sales/{show}");
    for body in [
        json!({"city": CITY, "sale_mode": "flash_sale"}),
        json!({"city": CITY, "opens_at": rfc3339(now_ms()), "rate_per_sec": 5.0}),
        json!({"city": CITY, "sale_mode": "open", "opens_at": rfc3339(now_ms()),
               "rate_per_sec": 5.0, "pass_ttl_s": 300, "grace_s": 60}),
    ] {
        let r = stack.put(&path, &op, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (422, Some("invalid_sale")),
            "{body}: {r}"
        );
    }
    // At the region, the same rule.
    let region_path = format!("/v1/operator/shows/{show}/sale");
    for body in [
        json!({"sale_mode": "flash_sale"}),
        json!({"sale_mode": "open", "waiting_room": {"opens_at": rfc3339(now_ms()),
               "rate_per_sec": 5.0, "pass_ttl_s": 300, "grace_s": 60}}),
        json!({"sale_mode": "flash_sale", "waiting_room": {"opens_at": rfc3339(now_ms()),
               "rate_per_sec": 0.0, "pass_ttl_s": 300, "grace_s": 60}}),
    ] {
        let (s, answer) = app
            .send(
                reqwest::Method::PUT,
                &region_path,
                Some(&operator_token()),
                Some(body.clone()),
            )
            .await
            .expect("region put");
        assert_eq!(
            (s, answer["error"]["code"].as_str()),
            (422, Some("invalid_sale")),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        region_sale(app, &show).await["sale_mode"],
        "open",
        "nothing changed"
    );
    let unknown = uuid::Uuid::now_v7();
    let r = stack
        .put(
            &format!("/v1/operator/sales/{unknown}"),
            &op,
            sale(now_ms(), 5.0),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, Some("unknown_show")), "{r}");

    // Creating a show in a flash sale: with its room or not at all.
    let (_, existing) = app.get(&format!("/v1/shows/{show}")).await.expect("show");
    let starts_at = chrono::Utc::now() + chrono::Duration::days(5);
    let new_show = |room: Option<Value>| {
        let mut v = json!({"screen_id": existing["screen_id"], "movie_id": existing["movie_id"],
                           "starts_at": starts_at.to_rfc3339(), "prices": existing["prices"],
                           "currency": existing["currency"], "sale_mode": "flash_sale"});
        if let Some(r) = room {
            v["waiting_room"] = r;
        }
        v
    };
    let (s, body) = app
        .operator_post("/v1/operator/shows", new_show(None))
        .await
        .expect("create");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("invalid_sale")),
        "{body}"
    );
    let opens = now_ms() - 1_000;
    let (s, created) = app
        .operator_post(
            "/v1/operator/shows",
            new_show(Some(
                json!({"opens_at": rfc3339(opens), "rate_per_sec": 1000.0,
                                  "pass_ttl_s": 300, "grace_s": 60}),
            )),
        )
        .await
        .expect("create");
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let stored = region_sale(app, &id).await;
    assert_eq!(stored["sale_mode"], "flash_sale", "{stored}");
    // The edge was never told: its room is derived from the region's.
    let r = join(&stack, &id, &Client::user("cy", "10.5.1.1")).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["opens_at"], rfc3339(opens), "{r}");
    assert!(r.body["pass"].is_string(), "{r}");
    stack.stop().await;
}
