//! A city served by two region-core replicas (one database), through the
//! built Worker in workerd: requests spread over both; when one dies, reads
//! and keyed writes fail over to the other at once, unkeyed writes get a
//! 503 with `Retry-After` only until that replica's breaker opens, and
//! then everything goes to the live one.

use e2e::edge::{Client, EdgeOptions, EdgeStack, SaleMode};
use serde_json::json;
use uuid::Uuid;

const BREAKER_FAILURES: usize = 2;

/// mum on two replicas behind the edge, with an open show.
async fn two_replicas() -> (EdgeStack, String) {
    let stack = EdgeStack::start(
        EdgeOptions::cities(&["mum"])
            .replicas(2)
            .var("BREAKER_FAILURES", BREAKER_FAILURES.to_string())
            .var("BREAKER_OPEN_MS", "60000"),
    )
    .await
    .expect("edge stack");
    let show = stack
        .seed_show("mum", 10, 20, SaleMode::Open)
        .await
        .expect("show");
    (stack, show)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_spreads_over_replicas_and_fails_over_when_one_dies() {
    let (mut stack, show) = two_replicas().await;
    // Both replicas take requests.
    let mut held = Vec::new();
    for i in 0..12u32 {
        let who = Client::user(&format!("spread-{i}"), "10.9.0.1");
        let label = format!("A{}", i + 1);
        let r = stack.hold("mum", &show, &who, &[&label], None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["hold_id"].as_str().expect("hold id").to_owned();
        held.push((who, id));
    }
    let region = stack.region("mum");
    let first = region.proxy.total();
    let second = region.more[0].1.as_ref().expect("proxy").total();
    assert!(
        first > 0 && second > 0,
        "requests spread over both replicas: {first} and {second}"
    );

    // One replica dies.
    stack.kill_replica("mum", 0).await;

    // Reads (not cached at the edge: a buyer's own hold) fail over at
    // once: every one is answered.
    for (who, id) in &held {
        let r = stack.get(&format!("/v1/c/mum/holds/{id}"), who).await;
        assert_eq!(r.status, 200, "reading hold {id}: {}", r.body);
    }
    // So do writes carrying an Idempotency-Key.
    for i in 0..6u32 {
        let who = Client::user(&format!("keyed-{i}"), "10.9.0.3");
        let r = stack
            .send(
                stack
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/c/mum/shows/{show}/holds"),
                        &who,
                    )
                    .header("Idempotency-Key", Uuid::new_v4().to_string())
                    .json(&json!({ "seats": [format!("B{}", i + 1)] })),
            )
            .await;
        assert_eq!(r.status, 201, "keyed hold {i}: {}", r.body);
    }
    // Unkeyed writes are not repeated elsewhere (one may have been
    // applied); the breaker is open by now, so none even tries the dead
    // replica.
    for i in 0..6u32 {
        let who = Client::user(&format!("plain-{i}"), "10.9.0.4");
        let label = format!("C{}", i + 1);
        let r = stack.hold("mum", &show, &who, &[&label], None).await;
        assert_eq!(
            r.status, 201,
            "hold {i} after the breaker opened: {}",
            r.body
        );
    }
    stack.stop().await;
}

/// Before the dead replica's breaker opens, an unkeyed write routed to it
/// is answered 503 with `Retry-After`, never sent twice; at most
/// `BREAKER_FAILURES` such answers, then it is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_writes_are_never_repeated_on_another_replica() {
    let (mut stack, show) = two_replicas().await;
    stack.kill_replica("mum", 0).await;
    let mut refused = 0;
    for i in 0..12u32 {
        let who = Client::user(&format!("plain-{i}"), "10.9.1.1");
        let label = format!("D{}", i + 1);
        let r = stack.hold("mum", &show, &who, &[&label], None).await;
        match r.status {
            201 => {}
            503 => {
                refused += 1;
                assert_eq!(r.code(), Some("region_unavailable"), "{}", r.body);
                assert!(r.header("retry-after").is_some(), "503 carries Retry-After");
            }
            s => panic!("hold {i}: {s} {}", r.body),
        }
    }
    // At least one was routed to the dead replica and answered, not
    // repeated on the live one; no more than the breaker's threshold.
    assert!(
        (1..=BREAKER_FAILURES).contains(&refused),
        "{refused} unkeyed holds refused; expected 1..={BREAKER_FAILURES} (then the breaker skips the dead replica)"
    );
    // Nothing was written twice: one hold per seat that got a 201.
    let app = stack.region("mum").app();
    let holds = app.count("SELECT count(*) FROM holds").await;
    assert_eq!(holds as usize, 12 - refused);
    stack.stop().await;
}
