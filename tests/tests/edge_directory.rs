//! The city → shard directory is data (the built Worker in workerd): an
//! operator adds a city on a new shard with `PUT /v1/operator/directory`,
//! and the edge routes it at once, without a redeploy; a bad directory is
//! refused and changes nothing; only operators may change it.

use e2e::edge::{Client, EdgeOptions, EdgeStack, SaleMode};
use e2e::{test_settings, TestApp};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_city_without_redeploying_the_edge() {
    let stack = EdgeStack::start(EdgeOptions::cities(&["mum"]))
        .await
        .expect("edge stack");
    let operator = Client::operator();
    let r = stack.get("/v1/operator/directory", &operator).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mum = stack.region("mum").proxy.url.clone();
    assert_eq!(r.body["regions"], json!({ "mum": [mum.clone()] }));

    // A new shard for pune, not known to the edge yet.
    let mut settings = test_settings().await.expect("settings");
    settings.shard_code = "PUNE".into();
    let pune = TestApp::spawn(settings).await.expect("pune shard");
    let (s, body) = pune
        .operator_post(
            "/v1/operator/cities",
            json!({"code": "pune", "name": "Pune"}),
        )
        .await
        .expect("city");
    assert_eq!(s, 201, "{body}");
    let show = pune
        .seed_show_in("pune", 2, 10, chrono::Duration::days(1), SaleMode::Open)
        .await
        .expect("show");
    let buyer = Client::user("pune-fan", "10.7.0.1");
    let r = stack.hold("pune", &show, &buyer, &["A1"], None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.code(), Some("unknown_city"));

    // Only an operator may change the directory.
    let table = json!({ "mum": [mum.clone()], "pune": [pune.url.clone()] });
    let put = |who: &Client, body: serde_json::Value| {
        stack
            .request(reqwest::Method::PUT, "/v1/operator/directory", who)
            .json(&body)
    };
    let r = stack.send(put(&buyer, table.clone())).await;
    assert_eq!(r.status, 403, "{}", r.body);

    let r = stack.send(put(&operator, table.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["regions"], table);
    let r = stack.hold("pune", &show, &buyer, &["A1"], None).await;
    assert_eq!(r.status, 201, "routed to the new shard: {}", r.body);
    // mum is still routed.
    let mum_show = stack
        .seed_show("mum", 2, 10, SaleMode::Open)
        .await
        .expect("show");
    let r = stack.hold("mum", &mum_show, &buyer, &["A1"], None).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // A bad directory is refused and changes nothing.
    let r = stack
        .send(put(&operator, json!({ "pune": "ftp://nowhere" })))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.code(), Some("invalid_body"));
    let r = stack.get("/v1/operator/directory", &operator).await;
    assert_eq!(r.body["regions"], table);

    pune.stop().await;
    stack.stop().await;
}
