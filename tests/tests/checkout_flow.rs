//! The whole purchase over HTTP against real Postgres, Redis and the
//! sandbox gateway: hold → checkout → replay → cancel with refund →
//! refund lands → the buyer was notified.

use e2e::{eventually, user, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_pay_confirm_cancel_refund() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    let alice = user("alice");
    let (s, hold) = app.hold(&alice, &show, &["A1", "A2"]).await.unwrap();
    assert_eq!(s, 201, "{hold}");
    let hold_id = hold["hold_id"].as_str().unwrap();

    let checkout = || async {
        app.http
            .post(format!("{}/v1/holds/{hold_id}/checkout", app.url))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "buy-1")
            .json(&json!({"payment_method": "pm_card_ok"}))
            .send()
            .await
            .unwrap()
    };
    let first = checkout().await;
    assert_eq!(first.status().as_u16(), 201);
    let first = first.bytes().await.unwrap();
    let again = checkout().await;
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.bytes().await.unwrap(),
        first,
        "replay is byte-for-byte"
    );

    let booking: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(booking["status"], "CONFIRMED");
    assert_eq!(booking["amount_minor"], 50000);
    assert!(booking["number"].as_str().unwrap().starts_with("BMS"));
    assert!(booking["show_starts_at_local"]
        .as_str()
        .unwrap()
        .ends_with("+05:30"));
    assert_eq!(
        app.count("SELECT count(*) FROM show_seats WHERE status = 'BOOKED'")
            .await,
        2
    );
    let id = booking["id"].as_str().unwrap();
    assert_eq!(
        app.lock_owner(&show, "A1").await.as_deref(),
        Some(format!("booked:{id}").as_str())
    );

    let (s, quote) = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/bookings/{id}/cancellation-quote"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{quote}");
    assert_eq!(quote["percent"], 100);
    assert_eq!(quote["refund_minor"], 50000);

    let (s, cancelled) = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/bookings/{id}/cancel"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["refund"]["amount_minor"], 50000);
    assert_eq!(
        app.count("SELECT count(*) FROM show_seats WHERE status = 'BOOKED'")
            .await,
        0
    );
    assert_eq!(app.lock_owner(&show, "A1").await, None);
    let (s, again) = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/bookings/{id}/cancel"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (s, again["error"]["code"].as_str()),
        (409, Some("already_cancelled"))
    );

    assert!(
        eventually(Duration::from_secs(10), || async {
            app.count("SELECT count(*) FROM refunds WHERE status = 'SUCCEEDED'")
                .await
                == 1
        })
        .await,
        "the refund reaches the gateway"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            let (_, n) = app
                .send(
                    reqwest::Method::GET,
                    "/v1/me/notifications",
                    Some(&alice),
                    None,
                )
                .await
                .unwrap();
            let kinds: Vec<&str> = n["notifications"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["kind"].as_str()).collect())
                .unwrap_or_default();
            ["booking.confirmed", "booking.cancelled", "refund.succeeded"]
                .iter()
                .all(|k| kinds.contains(k))
        })
        .await,
        "the buyer is told"
    );
    app.stop().await;
}
