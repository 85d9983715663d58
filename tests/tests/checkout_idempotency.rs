//! The checkout's `Idempotency-Key` (invariant 5: a retried request
//! returns the first response and never charges twice) and its input
//! checks (invariant 9: bad input gets a clear 4xx and changes nothing —
//! not our tables, not the gateway's ledger).

use e2e::money::{self, checkout, footprint, Answer};
use e2e::{eventually, test_settings, user, TestApp};
use futures::future::join_all;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

/// An app with a three-days-out show of ten seats (row A).
async fn app_and_show() -> (TestApp, String) {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    (app, show)
}

async fn hold(app: &TestApp, who: &str, show: &str, seats: &[&str]) -> String {
    let (s, hold) = app.hold(&user(who), show, seats).await.expect("hold");
    assert_eq!(s, 201, "{hold}");
    hold["hold_id"].as_str().expect("hold id").to_owned()
}

async fn pay(app: &TestApp, hold: &str, key: &str, pm: &str) -> Answer {
    checkout(app, &user("alice"), hold, key, pm)
        .await
        .expect("checkout request")
}

async fn hold_state(app: &TestApp, who: &str, hold: &str) -> String {
    let (_, h) = app
        .on_hold(reqwest::Method::GET, &user(who), hold, "")
        .await
        .expect("GET hold");
    h["state"].as_str().unwrap_or_default().to_owned()
}

async fn assert_money(app: &TestApp, charges: u64, bookings: u64) {
    let r = money::assert_money_safe(app, PATIENCE).await;
    assert_eq!(
        (r.charges, r.bookings, r.refunds),
        (charges, bookings, 0),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_replays_the_first_answer_and_charges_once() {
    let (app, show) = app_and_show().await;
    let h1 = hold(&app, "alice", &show, &["A1", "A2"]).await;
    let h2 = hold(&app, "alice", &show, &["A3"]).await;

    let first = pay(&app, &h1, "k1", "pm_card_ok").await;
    assert_eq!(first.status, 201, "{:?}", first.json);
    assert!(!first.replayed);
    for _ in 0..2 {
        first.assert_replayed_by(&pay(&app, &h1, "k1", "pm_card_ok").await);
    }
    assert_eq!(money::audit(&app).await.expect("audit").charges, 1);

    // The key is bound to its request: another payment method or another
    // hold is refused, and nothing moves.
    let before = footprint(&app).await.expect("footprint");
    for (hold, pm) in [(&h1, "pm_card_declined"), (&h2, "pm_card_ok")] {
        let reused = pay(&app, hold, "k1", pm).await;
        assert_eq!(
            (reused.status, reused.code()),
            (422, "idempotency_key_reused"),
            "{hold} {pm}: {:?}",
            reused.json
        );
        assert_eq!(footprint(&app).await.expect("footprint"), before);
    }
    assert_eq!(hold_state(&app, "alice", &h2).await, "ACTIVE");
    first.assert_replayed_by(&pay(&app, &h1, "k1", "pm_card_ok").await);
    assert_money(&app, 1, 1).await;
    app.stop().await;
}

/// Status and code of each answer, for the log.
fn outcomes(answers: &[Answer]) -> Vec<(u16, &str)> {
    answers.iter().map(|a| (a.status, a.code())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_charge_once() {
    let (app, show) = app_and_show().await;
    let h = hold(&app, "alice", &show, &["A1", "A2"]).await;
    let answers = join_all((0..8).map(|_| pay(&app, &h, "same", "pm_card_ok"))).await;
    eprintln!("answers: {:?}", outcomes(&answers));

    let booked: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    for a in &answers {
        assert!(
            a.status == 201 || (a.status == 409 && a.code() == "idempotency_key_in_use"),
            "{} {:?}",
            a.status,
            a.json
        );
    }
    assert!(!booked.is_empty(), "the first request finishes");
    assert!(
        booked.iter().all(|a| a.bytes == booked[0].bytes),
        "every 201 is the same booking, byte for byte"
    );
    booked[0].assert_replayed_by(&pay(&app, &h, "same", "pm_card_ok").await);
    assert_eq!(app.count("SELECT count(*) FROM payments").await, 1);
    assert_money(&app, 1, 1).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_keys_for_one_hold_charge_once() {
    let (app, show) = app_and_show().await;
    let h = hold(&app, "alice", &show, &["A1", "A2"]).await;
    let keys: Vec<String> = (0..8).map(|i| format!("key-{i}")).collect();
    let answers = join_all(keys.iter().map(|k| pay(&app, &h, k, "pm_card_ok"))).await;
    eprintln!("answers: {:?}", outcomes(&answers));

    let booked = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(booked, 1, "one hold, one purchase");
    for a in answers.iter().filter(|a| a.status != 201) {
        // Another key is paying (checkout_in_progress) or has paid (the
        // hold is consumed).
        assert!(
            a.status == 409 && ["checkout_in_progress", "hold_not_active"].contains(&a.code()),
            "{} {:?}",
            a.status,
            a.json
        );
    }
    assert_money(&app, 1, 1).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_key_is_refused_while_the_first_payment_is_in_flight() {
    let (app, show) = app_and_show().await;
    let h = hold(&app, "alice", &show, &["A1", "A2"]).await;
    // The gateway hangs past our timeout: the first key's payment stays
    // in flight (outcome unknown), its key unlocked for a retry.
    let first = pay(&app, &h, "first", "pm_fault_timeout").await;
    assert_eq!(
        (first.status, first.code()),
        (503, "payment_pending"),
        "{:?}",
        first.json
    );

    let before = footprint(&app).await.expect("footprint");
    let second = pay(&app, &h, "second", "pm_card_ok").await;
    assert_eq!(
        (second.status, second.code()),
        (409, "checkout_in_progress"),
        "{:?}",
        second.json
    );
    assert_eq!(footprint(&app).await.expect("footprint"), before);

    let last = Mutex::new(None);
    let done = eventually(PATIENCE, || async {
        let a = pay(&app, &h, "first", "pm_fault_timeout").await;
        let pending = a.status == 503 && a.code() == "payment_pending";
        *last.lock().expect("lock") = Some(a);
        !pending
    })
    .await;
    let paid = last.into_inner().expect("lock").expect("an attempt");
    assert!(done && paid.status == 201, "{:?}", paid.json);

    // The refused key stored nothing: it runs again, and the hold is gone.
    let second = pay(&app, &h, "second", "pm_card_ok").await;
    assert_eq!(
        (second.status, second.code(), second.replayed),
        (409, "hold_not_active", false),
        "{:?}",
        second.json
    );
    assert_money(&app, 1, 1).await;
    app.stop().await;
}

/// A checkout request built by hand, for the malformed ones.
struct Raw<'a> {
    token: Option<String>,
    hold: &'a str,
    key: Option<String>,
    content_type: Option<&'a str>,
    body: &'a str,
}

impl Raw<'_> {
    async fn send(&self, app: &TestApp) -> Answer {
        let mut req = app
            .http
            .post(format!("{}/v1/holds/{}/checkout", app.url, self.hold))
            .body(self.body.to_owned());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = &self.key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(ct) = self.content_type {
            req = req.header("content-type", ct);
        }
        Answer::read(req.send().await.expect("send"))
            .await
            .expect("read")
    }
}

/// What, hold, Idempotency-Key, content type, body; expected status and
/// `error.code`.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    u16,
    &'a str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let (app, show) = app_and_show().await;
    let good = hold(&app, "alice", &show, &["A1"]).await;
    let bobs = hold(&app, "bob", &show, &["A2"]).await;
    let released = hold(&app, "alice", &show, &["A3"]).await;
    let (s, _) = app
        .on_hold(reqwest::Method::DELETE, &user("alice"), &released, "")
        .await
        .expect("release");
    assert!((200..300).contains(&s), "release: {s}");
    let consumed = hold(&app, "alice", &show, &["A4"]).await;
    let paid = pay(&app, &consumed, "paid", "pm_card_ok").await;
    assert_eq!(paid.status, 201, "{:?}", paid.json);

    let ok = r#"{"payment_method":"pm_card_ok"}"#;
    let json = Some("application/json");
    let unknown = Uuid::new_v4().to_string();
    let long_key = "k".repeat(256);
    let long_pm = format!(r#"{{"payment_method":"{}"}}"#, "p".repeat(65));
    let cases: Vec<Case> = vec![
        (
            "no key",
            &good,
            None,
            json,
            ok,
            400,
            "idempotency_key_missing",
        ),
        (
            "empty key",
            &good,
            Some(""),
            json,
            ok,
            400,
            "invalid_idempotency_key",
        ),
        (
            "key with a space",
            &good,
            Some("a b"),
            json,
            ok,
            400,
            "invalid_idempotency_key",
        ),
        (
            "256-char key",
            &good,
            Some(&long_key),
            json,
            ok,
            400,
            "invalid_idempotency_key",
        ),
        (
            "malformed hold id",
            "not-a-hold",
            Some("bad-1"),
            json,
            ok,
            400,
            "invalid_hold_id",
        ),
        (
            "unknown hold",
            &unknown,
            Some("bad-2"),
            json,
            ok,
            404,
            "unknown_hold",
        ),
        (
            "someone else's hold",
            &bobs,
            Some("bad-3"),
            json,
            ok,
            404,
            "unknown_hold",
        ),
        (
            "released hold",
            &released,
            Some("bad-4"),
            json,
            ok,
            409,
            "hold_not_active",
        ),
        (
            "consumed hold, new key",
            &consumed,
            Some("bad-5"),
            json,
            ok,
            409,
            "hold_not_active",
        ),
        (
            "no content type",
            &good,
            Some("bad-6"),
            None,
            ok,
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain",
            &good,
            Some("bad-7"),
            Some("text/plain"),
            ok,
            415,
            "unsupported_media_type",
        ),
        (
            "malformed JSON",
            &good,
            Some("bad-8"),
            json,
            r#"{"payment_method":"#,
            400,
            "malformed_json",
        ),
        (
            "empty body",
            &good,
            Some("bad-9"),
            json,
            "",
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            &good,
            Some("bad-10"),
            json,
            r#"{"payment_method":"pm_card_ok","coupon":"FREE"}"#,
            422,
            "invalid_body",
        ),
        (
            "missing field",
            &good,
            Some("bad-11"),
            json,
            "{}",
            422,
            "invalid_body",
        ),
        (
            "wrong type",
            &good,
            Some("bad-12"),
            json,
            r#"{"payment_method":5}"#,
            422,
            "invalid_body",
        ),
        (
            "not an object",
            &good,
            Some("bad-13"),
            json,
            "[]",
            422,
            "invalid_body",
        ),
        (
            "empty payment method",
            &good,
            Some("bad-14"),
            json,
            r#"{"payment_method":""}"#,
            422,
            "invalid_payment_method",
        ),
        (
            "payment method with spaces",
            &good,
            Some("bad-15"),
            json,
            r#"{"payment_method":"pm card ok"}"#,
            422,
            "invalid_payment_method",
        ),
        (
            "65-char payment method",
            &good,
            Some("bad-16"),
            json,
            &long_pm,
            422,
            "invalid_payment_method",
        ),
    ];

    let before = footprint(&app).await.expect("footprint");
    let alice = user("alice");
    let mut failures = Vec::new();
    for (what, hold, key, content_type, body, status, code) in &cases {
        let answer = Raw {
            token: Some(alice.clone()),
            hold,
            key: key.map(str::to_owned),
            content_type: *content_type,
            body,
        }
        .send(&app)
        .await;
        let message = answer.json["error"]["message"].as_str().unwrap_or_default();
        if (answer.status, answer.code()) != (*status, *code) || message.is_empty() {
            failures.push(format!(
                "{what}: want {status} {code}, got {} {:?}",
                answer.status, answer.json
            ));
        }
        if footprint(&app).await.expect("footprint") != before {
            failures.push(format!("{what}: changed the tables or the ledger"));
        }
    }
    // Not signed in at all.
    let anonymous = Raw {
        token: None,
        hold: &good,
        key: Some("bad-17".into()),
        content_type: json,
        body: ok,
    }
    .send(&app)
    .await;
    if (anonymous.status, anonymous.code()) != (401, "unauthorized") {
        failures.push(format!(
            "no token: got {} {:?}",
            anonymous.status, anonymous.json
        ));
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(footprint(&app).await.expect("footprint"), before);

    // The refusals stored nothing for their keys, and the hold is intact:
    // a key first used with a malformed body now pays.
    assert_eq!(hold_state(&app, "alice", &good).await, "ACTIVE");
    let now_good = pay(&app, &good, "bad-8", "pm_card_ok").await;
    assert_eq!(now_good.status, 201, "{:?}", now_good.json);
    assert!(!now_good.replayed);
    assert_ne!(
        footprint(&app).await.expect("footprint"),
        before,
        "the footprint does see a real checkout"
    );
    assert_eq!(hold_state(&app, "bob", &bobs).await, "ACTIVE");
    assert_money(&app, 2, 2).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_is_gone_and_changes_nothing() {
    let mut settings = test_settings().await.expect("settings");
    settings.hold_ttl_secs = 1;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    let h = hold(&app, "alice", &show, &["A1"]).await;
    assert!(
        eventually(PATIENCE, || async {
            hold_state(&app, "alice", &h).await == "EXPIRED"
        })
        .await,
        "the hold expires"
    );
    let before = footprint(&app).await.expect("footprint");
    let answer = pay(&app, &h, "late", "pm_card_ok").await;
    assert_eq!(
        (answer.status, answer.code()),
        (410, "hold_expired"),
        "{:?}",
        answer.json
    );
    assert_eq!(footprint(&app).await.expect("footprint"), before);
    assert_money(&app, 0, 0).await;
    app.stop().await;
}
