//! Issue 9.5: once a show starts, its holds can be neither extended nor
//! paid for (409 `show_started`); before, both were accepted and the
//! booking could then not be cancelled.

use e2e::money::checkout;
use e2e::{user, TestApp};
use reqwest::Method;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_show_refuses_holds_extensions_and_checkouts() {
    let app = TestApp::default().await.expect("app");
    let starts_in = chrono::Duration::seconds(3);
    let show = app.seed_show(1, 5, starts_in).await.expect("show");
    let hold = app.hold_id("alice", &show, &["A1"]).await;

    // Wait for the show's start (wall time is what is being tested).
    tokio::time::sleep(starts_in.to_std().expect("duration") + Duration::from_millis(200)).await;

    let (s, body) = app
        .send(
            Method::POST,
            &format!("/v1/holds/{hold}/extend"),
            Some(&user("alice")),
            None,
        )
        .await
        .expect("extend");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("show_started")),
        "{body}"
    );
    let paid = checkout(&app, &user("alice"), &hold, "k", "pm_card_ok")
        .await
        .expect("checkout");
    assert_eq!(
        (paid.status, paid.code()),
        (409, "show_started"),
        "{:?}",
        paid.json
    );
    let (s, body) = app.hold(&user("bob"), &show, &["A2"]).await.expect("hold");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("show_started"))
    );
    assert_eq!(
        app.count("SELECT count(*) FROM payments").await,
        0,
        "nothing charged"
    );
    assert_eq!(app.count("SELECT count(*) FROM bookings").await, 0);
    app.stop().await;
}
