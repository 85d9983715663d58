//! Invariant 5 against a misbehaving gateway: declines, 5xx answers,
//! hung requests, successes whose answer is lost, and refunds that fail
//! for a while (even across a restart). Every test ends with the money
//! audit: every charge is a booking or a refund, nothing charged twice.

use e2e::money::{self, checkout, reconcile, set_gateway_faults, set_webhooks, Answer};
use e2e::{eventually, user, TestApp};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::Duration;

/// Long enough for a debug build on two busy cores; never waited out
/// when things work.
const PATIENCE: Duration = Duration::from_secs(20);

/// An app with a show three days out and one hold (A1, A2) by `who`.
async fn app_with_hold(who: &str) -> (TestApp, String, String) {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    let hold = hold(&app, who, &show, &["A1", "A2"]).await;
    (app, show, hold)
}

async fn hold(app: &TestApp, who: &str, show: &str, seats: &[&str]) -> String {
    let (s, hold) = app.hold(&user(who), show, seats).await.expect("hold");
    assert_eq!(s, 201, "{hold}");
    hold["hold_id"].as_str().expect("hold id").to_owned()
}

async fn pay(app: &TestApp, who: &str, hold: &str, key: &str, pm: &str) -> Answer {
    checkout(app, &user(who), hold, key, pm)
        .await
        .expect("checkout request")
}

async fn get(app: &TestApp, who: &str, path: &str) -> Value {
    let (s, v) = app
        .send(reqwest::Method::GET, path, Some(&user(who)), None)
        .await
        .expect("GET");
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

async fn confirmed_bookings(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'")
        .await
}

/// Retries `key` until the answer is not 503 `payment_pending` (the
/// answer while the gateway's outcome is unknown) and returns it.
async fn retry_until_final(app: &TestApp, hold: &str, key: &str, pm: &str) -> Answer {
    let last = Mutex::new(None);
    let done = eventually(PATIENCE, || async {
        let a = pay(app, "alice", hold, key, pm).await;
        let pending = a.status == 503 && a.code() == "payment_pending";
        *last.lock().expect("lock") = Some(a);
        !pending
    })
    .await;
    let last = last
        .into_inner()
        .expect("lock")
        .expect("at least one attempt");
    assert!(done, "still pending after {PATIENCE:?}: {:?}", last.json);
    last
}

/// The first answer of `key` must be the stored one: a replay is the same
/// bytes, marked as a replay.
async fn assert_replays(app: &TestApp, hold: &str, key: &str, pm: &str, first: &Answer) {
    first.assert_replayed_by(&pay(app, "alice", hold, key, pm).await);
}

async fn assert_money_safe(app: &TestApp, charges: u64, bookings: u64, refunds: u64) {
    let r = money::assert_money_safe(app, PATIENCE).await;
    assert_eq!(
        (r.charges, r.bookings, r.refunds),
        (charges, bookings, refunds),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_keeps_the_hold_and_a_new_key_can_pay() {
    let (app, _show, hold) = app_with_hold("alice").await;
    // Several tries: the gateway's `payment_failed` webhook races the
    // checkout to close the payment, and whichever wins, the buyer's
    // answer must be the stored one (this race once answered a made-up
    // body that no replay matched).
    for attempt in 0..4 {
        let key = format!("declined-{attempt}");
        let declined = pay(&app, "alice", &hold, &key, "pm_card_declined").await;
        assert_eq!(
            (declined.status, declined.code()),
            (402, "payment_declined"),
            "{:?}",
            declined.json
        );
        assert_eq!(
            get(&app, "alice", &format!("/v1/holds/{hold}")).await["state"],
            "ACTIVE",
            "a decline does not give up the seats"
        );
        // The decline is the key's final answer: a retry replays it.
        assert_replays(&app, &hold, &key, "pm_card_declined", &declined).await;
    }

    let paid = pay(&app, "alice", &hold, "try-2", "pm_card_ok").await;
    assert_eq!(paid.status, 201, "{:?}", paid.json);
    assert_eq!(paid.json["status"], "CONFIRMED");
    assert_money_safe(&app, 1, 1, 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_5xx_is_pending_and_the_same_key_pays_once() {
    let (app, _show, hold) = app_with_hold("alice").await;
    let first = pay(&app, "alice", &hold, "k", "pm_fault_5xx").await;
    assert_eq!(
        (first.status, first.code()),
        (503, "payment_pending"),
        "{:?}",
        first.json
    );
    assert!(first.retry_after.is_some(), "503 says when to retry");
    assert_eq!(confirmed_bookings(&app).await, 0);

    let paid = pay(&app, "alice", &hold, "k", "pm_fault_5xx").await;
    assert_eq!(paid.status, 201, "{:?}", paid.json);
    assert!(
        !paid.replayed,
        "a 503 is not stored: the retry did the work"
    );
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 1);
    assert_replays(&app, &hold, "k", "pm_fault_5xx", &paid).await;
    assert_money_safe(&app, 1, 1, 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_timeout_is_pending_and_the_same_key_pays_once() {
    let (app, _show, hold) = app_with_hold("alice").await;
    let first = pay(&app, "alice", &hold, "k", "pm_fault_timeout").await;
    assert_eq!(
        (first.status, first.code()),
        (503, "payment_pending"),
        "{:?}",
        first.json
    );
    assert!(first.retry_after.is_some());

    // The gateway may still be hanging on the first attempt (its own 409
    // is another unknown outcome, so another 503); poll until it answers.
    let paid = retry_until_final(&app, &hold, "k", "pm_fault_timeout").await;
    assert_eq!(paid.status, 201, "{:?}", paid.json);
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 1);
    assert_replays(&app, &hold, "k", "pm_fault_timeout", &paid).await;
    assert_money_safe(&app, 1, 1, 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_success_is_booked_by_the_webhook_without_a_retry() {
    let (app, _show, hold) = app_with_hold("alice").await;
    let first = pay(&app, "alice", &hold, "k", "pm_fault_lost_success").await;
    assert_eq!(
        (first.status, first.code()),
        (503, "payment_pending"),
        "{:?}",
        first.json
    );
    assert!(
        eventually(PATIENCE, || async { confirmed_bookings(&app).await == 1 }).await,
        "the gateway's webhook books the charge the client never heard of"
    );
    let list = get(&app, "alice", "/v1/bookings").await;
    assert_eq!(list["bookings"][0]["status"], "CONFIRMED", "{list}");

    let replay = pay(&app, "alice", &hold, "k", "pm_fault_lost_success").await;
    assert_eq!(replay.status, 201, "{:?}", replay.json);
    assert!(replay.replayed, "the webhook finished the key");
    assert_eq!(replay.json["id"], list["bookings"][0]["id"]);
    assert_money_safe(&app, 1, 1, 0).await;
    app.stop().await;
}

/// An app whose one charge (alice's hold, key `k`) succeeded at the
/// gateway while its answer was lost and no webhook was sent; returns the
/// app, the hold, and the `payment_intent.succeeded` event (id `event`)
/// the gateway would have sent.
async fn lost_success(event: &str) -> (TestApp, String, Vec<u8>) {
    let (app, _show, hold) = app_with_hold("alice").await;
    set_webhooks(&app, false).await.expect("webhooks off");
    let first = pay(&app, "alice", &hold, "k", "pm_fault_lost_success").await;
    assert_eq!((first.status, first.code()), (503, "payment_pending"));
    let payment: uuid::Uuid = sqlx::query_scalar("SELECT id FROM payments")
        .fetch_one(&app.db)
        .await
        .expect("payment");
    let gateway = testkit::gateway::Gateway::new(&app.gateway.url(), e2e::GATEWAY_KEY)
        .expect("gateway client");
    let intents = gateway.intents_for(payment).await.expect("intents");
    assert_eq!(intents.len(), 1, "{intents:?}");
    let body = serde_json::to_vec(&json!({
        "id": event,
        "type": "payment_intent.succeeded",
        "data": { "object": { "id": intents[0].id, "reference": payment.to_string() } },
    }))
    .expect("event");
    (app, hold, body)
}

/// Delivers a signed webhook event to the app; returns the status.
async fn deliver_event(app: &TestApp, body: Vec<u8>) -> u16 {
    let sig = shared::webhook_sig::sign(
        app.settings.gateway_webhook_secret.as_bytes(),
        chrono::Utc::now().timestamp(),
        &body,
    );
    app.http
        .post(format!("{}/v1/webhooks/payments", app.url))
        .header("sandbox-signature", sig)
        .body(body)
        .send()
        .await
        .expect("deliver")
        .status()
        .as_u16()
}

/// The webhook announcing a charge on a payment already closed as failed
/// (the buyer was told nothing was charged) records it and refunds it in
/// full; it is not taken for a redelivery. (A batch takes only plain
/// bookings together; this one runs alone after it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_about_a_closed_payment_refunds_the_charge() {
    let (app, _hold, body) = lost_success("evt_late").await;
    sqlx::query("UPDATE payments SET status = 'FAILED', failure_code = 'test_closed'")
        .execute(&app.db)
        .await
        .expect("close the payment");
    assert_eq!(deliver_event(&app, body).await, 200);
    assert_eq!(
        app.count("SELECT count(*) FROM refunds WHERE reason = 'late_charge'")
            .await,
        1,
        "the late charge is refunded"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM payments WHERE status = 'SUCCEEDED' AND settled = 'REFUNDED'"
        )
        .await,
        1
    );
    assert_eq!(confirmed_bookings(&app).await, 0);
    assert_money_safe(&app, 1, 0, 1).await;
    app.stop().await;
}

/// A webhook delivered again (the gateway retries until it hears 2xx),
/// even several times at once, books once: the delivery is recorded in
/// the transaction that confirms it, through the checkout's writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_success_books_once() {
    let (app, hold, body) = lost_success("evt_redelivered").await;
    let deliver = || deliver_event(&app, body.clone());
    let at_once = futures::future::join_all((0..4).map(|_| deliver())).await;
    assert_eq!(at_once, [200; 4], "every delivery is acknowledged");
    assert_eq!(deliver().await, 200, "a late redelivery too");
    assert_eq!(confirmed_bookings(&app).await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_events WHERE event_id = 'evt_redelivered'")
            .await,
        1
    );
    let replay = pay(&app, "alice", &hold, "k", "pm_fault_lost_success").await;
    assert_eq!(replay.status, 201, "{:?}", replay.json);
    assert!(replay.replayed, "the webhook finished the key");
    assert_money_safe(&app, 1, 1, 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_success_without_webhooks_is_booked_by_reconciliation() {
    let (app, _show, hold) = app_with_hold("alice").await;
    set_webhooks(&app, false).await.expect("webhooks off");
    let first = pay(&app, "alice", &hold, "k", "pm_fault_lost_success").await;
    assert_eq!(
        (first.status, first.code()),
        (503, "payment_pending"),
        "{:?}",
        first.json
    );
    // Charged, and nobody told us: this is the money reconciliation saves.
    assert_eq!(confirmed_bookings(&app).await, 0);
    let before = money::audit(&app).await.expect("audit");
    assert_eq!((before.charges, before.money_lost), (1, 1), "{before:?}");

    let report = reconcile(&app).await.expect("reconcile");
    assert_eq!(report["completed_bookings"], 1, "{report}");
    assert_eq!(confirmed_bookings(&app).await, 1);

    let replay = pay(&app, "alice", &hold, "k", "pm_fault_lost_success").await;
    assert_eq!(replay.status, 201, "{:?}", replay.json);
    assert!(replay.replayed, "reconciliation finished the key");
    assert_eq!(
        reconcile(&app).await.expect("reconcile"),
        json!({"completed_bookings": 0, "refunded": 0, "marked_failed": 0, "abandoned": 0, "unresolved": 0}),
        "a second pass finds nothing"
    );
    assert_money_safe(&app, 1, 1, 0).await;
    app.stop().await;
}

/// Books A1+A2 for alice and cancels it (full refund: the show is three
/// days out). Returns the booking id and the cancel response.
async fn book_and_cancel(app: &TestApp, hold: &str) -> (String, Value) {
    let paid = pay(app, "alice", hold, "buy", "pm_card_ok").await;
    assert_eq!(paid.status, 201, "{:?}", paid.json);
    let id = paid.json["id"].as_str().expect("booking id").to_owned();
    let (s, cancelled) = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/bookings/{id}/cancel"),
            Some(&user("alice")),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{cancelled}");
    assert_eq!(cancelled["refund"]["amount_minor"], 50000, "{cancelled}");
    (id, cancelled)
}

async fn refund_row(app: &TestApp) -> (String, i32) {
    sqlx::query_as("SELECT status, attempts FROM refunds")
        .fetch_one(&app.db)
        .await
        .expect("one refund")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_refund_is_retried_until_it_lands() {
    let (app, _show, hold) = app_with_hold("alice").await;
    let faults = set_gateway_faults(&app, json!({"refunds_fail_next": 3}))
        .await
        .expect("faults");
    assert_eq!(faults["refunds_fail_next"], 3);
    let (id, _) = book_and_cancel(&app, &hold).await;

    assert!(
        eventually(PATIENCE, || async {
            refund_row(&app).await.0 == "SUCCEEDED"
        })
        .await,
        "the refund lands after the outage: {:?}",
        refund_row(&app).await
    );
    let (_, attempts) = refund_row(&app).await;
    assert!(
        attempts >= 3,
        "three failed attempts were counted, got {attempts}"
    );
    let booking = get(&app, "alice", &format!("/v1/bookings/{id}")).await;
    assert_eq!(booking["refund"]["status"], "SUCCEEDED", "{booking}");
    assert_money_safe(&app, 1, 1, 1).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_refund_survives_a_restart() {
    let (app, _show, hold) = app_with_hold("alice").await;
    set_gateway_faults(&app, json!({"refunds_fail_next": 1_000_000}))
        .await
        .expect("faults");
    book_and_cancel(&app, &hold).await;
    assert!(
        eventually(PATIENCE, || async { refund_row(&app).await.1 >= 1 }).await,
        "the refund was tried and failed"
    );

    let app = app.restart(|_| {}).await.expect("restart");
    assert_eq!(
        refund_row(&app).await.0,
        "PENDING",
        "still failing after the restart"
    );
    set_gateway_faults(&app, json!({"refunds_fail_next": 0}))
        .await
        .expect("clear faults");
    assert!(
        eventually(PATIENCE, || async {
            refund_row(&app).await.0 == "SUCCEEDED"
        })
        .await,
        "the restarted worker sends the refund: {:?}",
        refund_row(&app).await
    );
    assert_money_safe(&app, 1, 1, 1).await;
    app.stop().await;
}
