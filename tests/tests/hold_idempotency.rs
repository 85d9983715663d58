//! Issue 9.16: a hold request whose answer was lost and is retried with
//! the same `Idempotency-Key` gets the first hold back; it takes no second
//! set of seats (before, the first hold kept its seats until its TTL).

use e2e::{user, TestApp};
use serde_json::{json, Value};

async fn hold(app: &TestApp, show: &str, seats: &[&str], key: &str) -> (u16, Value, bool) {
    let resp = app
        .http
        .post(format!("{}/v1/shows/{show}/holds", app.url))
        .bearer_auth(user("alice"))
        .header("Idempotency-Key", key)
        .json(&json!({ "seats": seats }))
        .send()
        .await
        .expect("hold");
    let status = resp.status().as_u16();
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    (status, resp.json().await.expect("json"), replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_hold_returns_the_first_hold() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(1))
        .await
        .expect("show");
    let (s, first, replayed) = hold(&app, &show, &["A1", "A2"], "h1").await;
    assert_eq!((s, replayed), (201, false), "{first}");
    // The answer was "lost": the client retries.
    let (s, again, replayed) = hold(&app, &show, &["A1", "A2"], "h1").await;
    assert_eq!((s, replayed), (201, true), "{again}");
    assert_eq!(again, first, "the same hold, byte for byte");
    assert_eq!(
        app.count("SELECT count(*) FROM holds").await,
        1,
        "no second hold"
    );

    // The same key with other seats is a client bug: 422, nothing taken.
    let (s, body, _) = hold(&app, &show, &["A3"], "h1").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    // A refused hold is not stored: once the seats are free, the same key works.
    let (s, other) = app.hold(&user("bob"), &show, &["A5"]).await.expect("bob");
    assert_eq!(s, 201, "{other}");
    let (s, _, _) = hold(&app, &show, &["A5"], "h2").await;
    assert_eq!(s, 409);
    let bob_hold = other["hold_id"].as_str().expect("id");
    let (s, _) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/holds/{bob_hold}"),
            Some(&user("bob")),
            None,
        )
        .await
        .expect("release");
    assert!(s < 300);
    let (s, body, replayed) = hold(&app, &show, &["A5"], "h2").await;
    assert_eq!((s, replayed), (201, false), "{body}");
    assert_eq!(
        app.count("SELECT count(*) FROM holds WHERE state = 'ACTIVE'")
            .await,
        2
    );
    app.stop().await;
}
