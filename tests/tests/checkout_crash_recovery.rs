//! Invariant 5 across crashes: the checkout is made to die at each of its
//! phase boundaries (`CrashPoint`), leaving the database exactly as a
//! crash would, and the app is restarted on the same database and
//! gateway. Then either the client retries with its key, or nobody does
//! and reconciliation finds the payment. Either way: one charge at most,
//! ending as a booking or a refund, and the key replays the final answer.

use e2e::money::{self, checkout, reconcile, set_webhooks, Answer};
use e2e::{eventually, test_settings, user, TestApp};
use region_core::checkout::CrashPoint;
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

// There is no point between recording the charge and settling it: the
// checkout does both in one transaction.
const ALL: [CrashPoint; 3] = [
    CrashPoint::AfterPaymentCreated,
    CrashPoint::AfterGatewayCharge,
    CrashPoint::AfterSettle,
];

/// A crashed checkout, restarted.
struct Crashed {
    app: TestApp,
    hold: String,
    token: String,
}

const KEY: &str = "crash-key";

/// Starts an app that crashes at `point` (holds lasting `ttl_secs`),
/// turns webhooks off (so nothing but the retry or reconciliation can
/// finish the payment), holds A1+A2, checks out, and restarts without
/// the crash.
async fn crash_at(point: CrashPoint, ttl_secs: Option<u64>) -> Crashed {
    let mut settings = test_settings().await.expect("settings");
    settings.test_crash_at = Some(point);
    if let Some(ttl) = ttl_secs {
        settings.hold_ttl_secs = ttl;
    }
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    set_webhooks(&app, false).await.expect("webhooks off");
    let token = user("alice");
    let (s, hold) = app.hold(&token, &show, &["A1", "A2"]).await.expect("hold");
    assert_eq!(s, 201, "{hold}");
    let hold = hold["hold_id"].as_str().expect("hold id").to_owned();

    match checkout(&app, &token, &hold, KEY, "pm_card_ok").await {
        Ok(a) => assert_eq!(a.status, 500, "{point:?}: the injected crash: {:?}", a.json),
        Err(e) => eprintln!("{point:?}: connection dropped by the crash: {e}"),
    }
    let app = app
        .restart(|s| s.test_crash_at = None)
        .await
        .expect("restart");
    // The restart points webhooks at the new app; this story has none.
    set_webhooks(&app, false).await.expect("webhooks off");
    Crashed { app, hold, token }
}

impl Crashed {
    async fn checkout(&self) -> Answer {
        checkout(&self.app, &self.token, &self.hold, KEY, "pm_card_ok")
            .await
            .expect("checkout request")
    }

    /// Retries the key until the crashed request's lock lapses (409
    /// `idempotency_key_in_use` meanwhile); returns the first other answer.
    async fn retry(&self) -> Answer {
        let last = Mutex::new(None);
        let waits = std::sync::atomic::AtomicU32::new(0);
        let done = eventually(PATIENCE, || async {
            let a = self.checkout().await;
            let locked = a.status == 409 && a.code() == "idempotency_key_in_use";
            if locked {
                waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            *last.lock().expect("lock") = Some(a);
            !locked
        })
        .await;
        eprintln!("the key was locked for {} retries", waits.into_inner());
        let last = last
            .into_inner()
            .expect("lock")
            .expect("at least one attempt");
        assert!(done, "the key stayed locked: {:?}", last.json);
        last
    }

    /// A retry now must replay `first` exactly.
    async fn assert_replays(&self, first: &Answer) {
        first.assert_replayed_by(&self.checkout().await);
    }

    async fn count(&self, sql: &str) -> i64 {
        self.app.count(sql).await
    }

    /// The audit after refunds drained: no violation, and these totals.
    async fn assert_money(&self, point: CrashPoint, charges: u64, bookings: u64, refunds: u64) {
        let r = money::assert_money_safe(&self.app, PATIENCE).await;
        assert_eq!(
            (r.charges, r.bookings, r.refunds),
            (charges, bookings, refunds),
            "{point:?}: {r:?}"
        );
    }
}

fn assert_booked(point: CrashPoint, a: &Answer) {
    assert_eq!(a.status, 201, "{point:?}: {:?}", a.json);
    assert_eq!(a.json["status"], "CONFIRMED", "{point:?}");
    assert_eq!(a.json["amount_minor"], 50000, "{point:?}");
}

/// (a) The client retries with its key after the restart: the work
/// resumes where it stopped and the card is charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_resumes_and_charges_once() {
    for point in ALL {
        let c = crash_at(point, None).await;
        let answer = c.retry().await;
        assert_booked(point, &answer);
        // AfterSettle finished the key before dying: the retry is a replay.
        assert_eq!(
            answer.replayed,
            point == CrashPoint::AfterSettle,
            "{point:?}"
        );
        c.assert_replays(&answer).await;
        assert_eq!(
            c.count("SELECT count(*) FROM payments").await,
            1,
            "{point:?}"
        );
        c.assert_money(point, 1, 1, 0).await;
        c.app.stop().await;
    }
}

/// (b) Nobody retries: reconciliation finds the payment. A charge becomes
/// the booking; a payment the gateway never saw is closed as abandoned;
/// the key then replays that final answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_after_a_crash_finishes_the_payment() {
    for point in ALL {
        let c = crash_at(point, None).await;
        let report = reconcile(&c.app).await.expect("reconcile");
        let (field, charges, bookings) = match point {
            CrashPoint::AfterPaymentCreated => (Some("abandoned"), 0, 0),
            CrashPoint::AfterGatewayCharge => (Some("completed_bookings"), 1, 1),
            CrashPoint::AfterSettle => (None, 1, 1),
        };
        assert_eq!(
            report_total(&report),
            u64::from(field.is_some()),
            "{point:?}: {report}"
        );
        if let Some(field) = field {
            assert_eq!(report[field], 1, "{point:?}: {report}");
        }

        // The key is finished now, whatever its lock said: a replay.
        let answer = c.checkout().await;
        assert!(answer.replayed, "{point:?}: {:?}", answer.json);
        if bookings == 1 {
            assert_booked(point, &answer);
            let (_, list) = c
                .app
                .send(reqwest::Method::GET, "/v1/bookings", Some(&c.token), None)
                .await
                .expect("bookings");
            assert_eq!(answer.json["id"], list["bookings"][0]["id"], "{point:?}");
        } else {
            assert_eq!(
                (answer.status, answer.code()),
                (402, "payment_abandoned"),
                "{point:?}: {:?}",
                answer.json
            );
        }
        c.assert_replays(&answer).await;
        c.assert_money(point, charges, bookings, 0).await;
        c.app.stop().await;
    }
}

/// (b) with a hold that expired while nobody was looking: the charge
/// cannot become a booking any more, so reconciliation refunds it in
/// full, and the key replays `confirmation_failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_refunds_a_charge_whose_hold_expired() {
    for point in [CrashPoint::AfterGatewayCharge] {
        // Three seconds: room for hold → checkout on a busy machine (the
        // checkout must start before the hold expires), and a short wait.
        let c = crash_at(point, Some(3)).await;
        let expired = eventually(PATIENCE, || async {
            let (_, h) = c
                .app
                .on_hold(reqwest::Method::GET, &c.token, &c.hold, "")
                .await
                .expect("hold");
            h["state"] == "EXPIRED"
        })
        .await;
        assert!(expired, "{point:?}: the hold expires");

        let report = reconcile(&c.app).await.expect("reconcile");
        assert_eq!(
            (report["refunded"].as_u64(), report_total(&report)),
            (Some(1), 1),
            "{point:?}: {report}"
        );
        let answer = c.checkout().await;
        assert!(answer.replayed, "{point:?}: {:?}", answer.json);
        assert_eq!(
            (answer.status, answer.code()),
            (409, "confirmation_failed"),
            "{point:?}: {:?}",
            answer.json
        );
        assert_eq!(answer.json["error"]["details"]["amount_minor"], 50000);
        c.assert_replays(&answer).await;
        assert_eq!(
            c.count("SELECT count(*) FROM bookings").await,
            0,
            "{point:?}"
        );
        // One charge, refunded in full (settled_audit checks the gateway
        // refunded exactly our refund's amount).
        c.assert_money(point, 1, 0, 1).await;
        c.app.stop().await;
    }
}

fn report_total(report: &Value) -> u64 {
    report
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}
