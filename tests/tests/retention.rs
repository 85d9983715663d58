//! Retention trims what has served its purpose, after its horizon, and
//! never what is live: a key whose payment is still pending keeps working
//! after a pass, however old it is.

use e2e::money::checkout;
use e2e::{user, TestApp};
use region_core::retention;
use reqwest::Method;

async fn hold(app: &TestApp, who: &str, show: &str, seat: &str) -> String {
    app.hold_id(who, show, &[seat]).await
}

async fn exists(app: &TestApp, sql: &str, id: &str) -> bool {
    sqlx::query_scalar::<_, bool>(sql)
        .bind(id)
        .fetch_one(&app.db)
        .await
        .expect("exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_finished_records_are_trimmed_and_live_ones_never() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(3))
        .await
        .expect("show");

    // A finished purchase: key finished, payment settled, events published.
    let bought = hold(&app, "alice", &show, "A1").await;
    let paid = checkout(&app, &user("alice"), &bought, "done", "pm_card_ok")
        .await
        .expect("checkout");
    assert_eq!(paid.status, 201, "{:?}", paid.json);
    // A purchase whose outcome is unknown (gateway 5xx): its key is live.
    let pending = hold(&app, "bob", &show, "A2").await;
    let answer = checkout(&app, &user("bob"), &pending, "pending", "pm_fault_5xx")
        .await
        .expect("checkout");
    assert_eq!((answer.status, answer.code()), (503, "payment_pending"));
    // A released hold.
    let released = hold(&app, "carol", &show, "A3").await;
    let (s, _) = app
        .send(
            Method::DELETE,
            &format!("/v1/holds/{released}"),
            Some(&user("carol")),
            None,
        )
        .await
        .expect("release");
    assert!(s == 200 || s == 204, "release: {s}");
    // A finished key younger than its horizon.
    let recent = hold(&app, "dave", &show, "A4").await;
    let paid = checkout(&app, &user("dave"), &recent, "recent", "pm_card_ok")
        .await
        .expect("checkout");
    assert_eq!(paid.status, 201);
    assert!(
        e2e::eventually(std::time::Duration::from_secs(15), || async {
            app.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .await
                == 0
                && app.count("SELECT count(*) FROM notifications").await >= 2
        })
        .await,
        "the relay publishes and the notifier records"
    );

    // Thirty days pass for everything but dave's key (23 hours for it),
    // and one event is left unpublished.
    for sql in [
        "UPDATE idempotency_keys SET updated_at = now() - interval '30 days', created_at = now() - interval '30 days' WHERE key <> 'recent'",
        "UPDATE idempotency_keys SET updated_at = now() - interval '23 hours' WHERE key = 'recent'",
        "UPDATE outbox SET created_at = now() - interval '30 days', published_at = now() - interval '30 days'",
        "UPDATE outbox SET published_at = NULL WHERE seq = (SELECT max(seq) FROM outbox)",
        "UPDATE notifications SET created_at = now() - interval '400 days'",
        "UPDATE holds SET updated_at = now() - interval '30 days'",
        "UPDATE payments SET created_at = now() - interval '30 days', updated_at = now() - interval '30 days'",
        // Two old e-mails: one sent, one still waiting for its server.
        "INSERT INTO outgoing_mail (event_id, kind, recipient, body, state, created_at)
         VALUES (gen_random_uuid(), 'booking.confirmed', 'a@example.com', '{}', 'sent', now() - interval '400 days'),
                (gen_random_uuid(), 'booking.confirmed', 'b@example.com', '{}', 'pending', now() - interval '400 days')",
    ] {
        sqlx::query(sql).execute(&app.db).await.expect(sql);
    }
    let notifications_before = app.count("SELECT count(*) FROM notifications").await;

    let trimmed = retention::run_once(&app.db, &app.settings.retention)
        .await
        .expect("pass")
        .expect("the lock is free");

    let key = "SELECT EXISTS (SELECT 1 FROM idempotency_keys WHERE key = $1)";
    assert!(
        !exists(&app, key, "done").await,
        "a finished key past its horizon goes"
    );
    assert!(
        exists(&app, key, "pending").await,
        "a live key is never trimmed"
    );
    assert!(
        exists(&app, key, "recent").await,
        "a key inside its horizon stays"
    );
    assert_eq!(trimmed.idempotency_keys, 1, "{trimmed:?}");
    assert_eq!(trimmed.outgoing_mail, 1, "{trimmed:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM outgoing_mail WHERE state = 'pending'")
            .await,
        1,
        "mail not yet sent is never trimmed"
    );

    let hold_exists = "SELECT EXISTS (SELECT 1 FROM holds WHERE id = $1::uuid)";
    assert!(
        !exists(&app, hold_exists, &released).await,
        "a released hold goes"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM hold_seats WHERE hold_id = '{released}'"
        ))
        .await,
        0
    );
    assert!(
        exists(&app, hold_exists, &bought).await,
        "a booked hold stays"
    );
    assert!(
        exists(&app, hold_exists, &pending).await,
        "a hold with a payment stays"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM bookings").await,
        2,
        "bookings are never trimmed"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM payments").await,
        3,
        "payments are never trimmed"
    );

    assert_eq!(
        app.count("SELECT count(*) FROM outbox").await,
        1,
        "only the unpublished event stays"
    );
    assert!(notifications_before > 0);
    // Every old notification went. (The relay, still running, may deliver
    // the event made unpublished above once more; the notifier then
    // records it anew, dated now: that row is not an old one.)
    assert_eq!(
        app.count("SELECT count(*) FROM notifications WHERE created_at < now() - interval '1 day'")
            .await,
        0
    );

    // The live key still works: bob's retry pays once.
    let retried = checkout(&app, &user("bob"), &pending, "pending", "pm_fault_5xx")
        .await
        .expect("retry");
    assert_eq!(retried.status, 201, "{:?}", retried.json);
    app.stop().await;
}
