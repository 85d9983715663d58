//! Issue 9.11: a real sandbox-gateway process frozen (SIGSTOP) past the
//! reconciliation grace with a charge in flight, then resumed. A payment
//! is declared abandoned only when the gateway guarantees it never took
//! money (the reference is voided first, so the queued charge cannot land
//! afterwards); the buyer's retry with the same Idempotency-Key tells the
//! truth; every charge ends as a booking or a refund.

use e2e::money::Answer;
use e2e::sandbox_process::SandboxProcess;
use e2e::{eventually, user, TestApp, GATEWAY_KEY};
use region_core::{reconcile, Application};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_gateway_never_turns_a_charge_into_an_abandoned_payment() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    let hold = app.hold_id("alice", &show, &["A1"]).await;

    // A replica of the same shard that charges through a gateway process.
    let gw = SandboxProcess::start(None).await.expect("sandbox process");
    let mut settings = app.settings.clone();
    settings.listen = "127.0.0.1:0".into();
    settings.gateway_url = gw.url.clone();
    settings.gateway_api_key = GATEWAY_KEY.into();
    settings.reconcile_grace_secs = 1;
    settings.reconcile_interval_secs = 3600; // the test runs it
    let replica = Application::build(settings)
        .await
        .expect("replica")
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    let pay = || async {
        let resp = http
            .post(format!("{}/v1/holds/{hold}/checkout", replica.url()))
            .bearer_auth(user("alice"))
            .header("Idempotency-Key", "k")
            .json(&json!({ "payment_method": "pm_card_ok" }))
            .send()
            .await
            .expect("checkout");
        Answer::read(resp).await.expect("answer")
    };
    let status_of_payment = || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM payments")
            .fetch_one(&app.db)
            .await
            .expect("payment")
    };

    gw.freeze();
    let first = pay().await;
    assert_eq!(
        (first.status, first.code()),
        (503, "payment_pending"),
        "{:?}",
        first.json
    );
    // Past the grace, reconciliation looks while the gateway is frozen: it
    // cannot know, so it leaves the payment open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = reconcile::reconcile_once(&replica.state, None)
        .await
        .expect("reconcile");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(status_of_payment().await, "CREATED");

    gw.resume();
    let last = std::sync::Mutex::new(None);
    let settled = eventually(Duration::from_secs(20), || async {
        let a = pay().await;
        let pending = a.status == 503;
        *last.lock().expect("lock") = Some(a);
        !pending
    })
    .await;
    let answer = last.into_inner().expect("lock").expect("an answer");
    assert!(settled, "the retry settles: {:?}", answer.json);
    reconcile::reconcile_once(&replica.state, None)
        .await
        .expect("reconcile");

    let ledger = gw.ledger().await.expect("ledger");
    let charges = ledger["totals"]["charges"].as_u64().expect("charges");
    let status = status_of_payment().await;
    let bookings = app
        .count("SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'")
        .await;
    let refunds = app.count("SELECT count(*) FROM refunds").await;
    match charges {
        // The charge landed: it is a booking, and the buyer was told so.
        1 => {
            assert_eq!(answer.status, 201, "{:?}", answer.json);
            assert_eq!((status.as_str(), bookings, refunds), ("SUCCEEDED", 1, 0));
        }
        // It never landed (voided first): closed unpaid, nothing charged.
        // Which request reaches the resumed gateway first decides the
        // wording: reconciliation's void (the payment is then ABANDONED,
        // 402 payment_abandoned) or the buyer's retry, refused as voided
        // (FAILED, 402 payment_failed). Both are true: no money moved.
        0 => {
            assert_eq!(answer.status, 402, "{:?}", answer.json);
            assert!(
                matches!(answer.code(), "payment_abandoned" | "payment_failed"),
                "{:?}",
                answer.json
            );
            assert!(
                matches!(status.as_str(), "ABANDONED" | "FAILED"),
                "{status}"
            );
            assert_eq!(bookings, 0);
        }
        n => panic!("{n} charges for one payment"),
    }
    assert_ne!(
        (status.as_str(), charges),
        ("ABANDONED", 1),
        "a charged payment is never abandoned"
    );
    replica.stop().await;
    app.stop().await;
}
