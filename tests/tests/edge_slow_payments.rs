//! A slow payment gateway costs only the buyers it is slow for, through
//! the edge too (the built Worker in workerd). A checkout's answer waits
//! on the gateway for up to the region's gateway timeout, longer than the
//! edge's region timeout; the edge gives payments their own,
//! `REGION_PAYMENT_TIMEOUT_MS`. Were it as short as the region timeout,
//! a few hung charges in a row would count as region failures, open the
//! city's breaker and refuse every buyer of the city: the negative
//! control below.

use e2e::edge::{Client, EdgeOptions, EdgeStack, Reply, SaleMode};
use serde_json::json;

const CITY: &str = "mum";
/// The edge's region timeout; the test region core's gateway timeout is
/// 1.5 s and the sandbox's `timeout` fault hangs 3 s.
const REGION_TIMEOUT_MS: u64 = 500;
const BREAKER_FAILURES: usize = 2;

/// Three buyers whose charges hang, one after another; then a buyer who
/// holds seats. The checkouts' answers and the last buyer's hold.
async fn hung_charges_then_a_hold(payment_timeout_ms: u64) -> (Vec<Reply>, Reply) {
    let stack = EdgeStack::start(
        EdgeOptions::cities(&[CITY])
            .var("REGION_TIMEOUT_MS", REGION_TIMEOUT_MS.to_string())
            .var("REGION_PAYMENT_TIMEOUT_MS", payment_timeout_ms.to_string())
            .var("BREAKER_FAILURES", BREAKER_FAILURES.to_string())
            .var("BREAKER_OPEN_MS", "60000"),
    )
    .await
    .expect("edge stack");
    let show = stack
        .seed_show(CITY, 2, 10, SaleMode::Open)
        .await
        .expect("show");
    // The holds first: the checkouts then reach the region one after
    // another with nothing in between (the breaker counts failures in a
    // row).
    let mut holds = Vec::new();
    for i in 0..=BREAKER_FAILURES {
        let buyer = Client::user(&format!("slow-{i}"), &format!("10.9.0.{}", i + 1));
        let seat = format!("A{}", i + 1);
        let hold = stack.hold(CITY, &show, &buyer, &[&seat], None).await;
        assert_eq!(hold.status, 201, "{hold}");
        let hold_id = hold.body["hold_id"].as_str().expect("hold id").to_owned();
        holds.push((buyer, hold_id));
    }
    let mut checkouts = Vec::new();
    for (i, (buyer, hold_id)) in holds.iter().enumerate() {
        let paid = stack
            .send(
                stack
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/c/{CITY}/holds/{hold_id}/checkout"),
                        buyer,
                    )
                    .header("Idempotency-Key", format!("slow-pay-{i}"))
                    .json(&json!({ "payment_method": "pm_fault_timeout" })),
            )
            .await;
        checkouts.push(paid);
    }
    let next = Client::user("next-buyer", "10.9.1.1");
    let hold = stack.hold(CITY, &show, &next, &["B1"], None).await;
    (checkouts, hold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_charges_do_not_shut_the_city_out() {
    let (checkouts, hold) = hung_charges_then_a_hold(8_000).await;
    for r in &checkouts {
        // The region's own answer once its gateway timeout passed: the
        // outcome is unknown, retry with the same key.
        assert_eq!(r.status, 503, "{r}");
        assert_eq!(r.code(), Some("payment_pending"), "{r}");
        assert!(r.header_u64("retry-after").is_some(), "{r}");
    }
    assert_eq!(
        hold.status, 201,
        "the next buyer of the city is served: {hold}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_payments_given_the_region_timeout_open_the_breaker() {
    let (checkouts, hold) = hung_charges_then_a_hold(REGION_TIMEOUT_MS).await;
    // The edge gave up first: still "pending" to the buyer who paid...
    let first = &checkouts[0];
    assert_eq!(first.code(), Some("payment_pending"), "{first}");
    // ...but counted against the region: the city is shut out.
    assert_eq!(hold.status, 503, "{hold}");
    assert_eq!(hold.code(), Some("region_unavailable"), "{hold}");
}
