//! Invariant 6 (docs/architecture.md): every state change is published, at least once, in
//! order per booking. A state change and its outbox row commit together;
//! the relay publishes to the city's Redis Stream and only then marks the
//! rows; the notifier consumes the stream idempotently (by event id).
//!
//! Covered here: each change of a purchase and a cancellation has its
//! event, in order by outbox seq and in the stream; a relay killed half
//! way through a batch marks nothing, so the next pass publishes all of it
//! again (at least once) and the notifier records each event once; and an
//! app restarted with events left unpublished publishes them all.

use chrono::Duration as Span;
use e2e::money::{self, assert_money_safe};
use e2e::{eventually, test_settings, user, TestApp};
use futures::future::BoxFuture;
use region_core::notifier::consume_once;
use region_core::outbox::redis_stream::{stream_key, LazyRedis, RedisStreamSink};
use region_core::outbox::{relay_once, EventSink, OutboxEvent};
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const SOON: Duration = Duration::from_secs(15);

/// One stream entry, as published.
#[derive(Debug, Clone)]
struct Entry {
    event_id: String,
    kind: String,
    aggregate: String,
    seq: i64,
}

/// Every entry of every city stream of the app, oldest first per city.
async fn stream_entries(app: &TestApp) -> Vec<Entry> {
    let cities: Vec<(String,)> = sqlx::query_as("SELECT code FROM cities ORDER BY code")
        .fetch_all(&app.db)
        .await
        .expect("cities");
    let mut conn = app.redis().await.expect("redis");
    let mut out = Vec::new();
    for (city,) in cities {
        let key = stream_key(&app.settings.events_stream_prefix, &city);
        // XRANGE: [[id, [field, value, …]], …]
        let raw: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        for (_, fields) in raw {
            let f: HashMap<&str, &str> = fields
                .chunks(2)
                .map(|kv| (kv[0].as_str(), kv[1].as_str()))
                .collect();
            out.push(Entry {
                event_id: f["event_id"].to_owned(),
                kind: f["type"].to_owned(),
                aggregate: f["aggregate_id"].to_owned(),
                seq: f["seq"].parse().expect("seq"),
            });
        }
    }
    out
}

/// Outbox rows: (seq, event_id, aggregate_id, event_type), by seq.
async fn outbox_rows(app: &TestApp) -> Vec<(i64, String, String, String)> {
    sqlx::query_as(
        "SELECT seq, event_id::text, aggregate_id::text, event_type FROM outbox ORDER BY seq",
    )
    .fetch_all(&app.db)
    .await
    .expect("outbox")
}

async fn unpublished(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .await
}

/// Holds `seats` and pays with `method`; the checkout's answer.
async fn buy(
    app: &TestApp,
    token: &str,
    show: &str,
    seats: &[&str],
    method: &str,
) -> money::Answer {
    let (s, hold) = app.hold(token, show, seats).await.expect("hold");
    assert_eq!(s, 201, "hold {seats:?}: {hold}");
    let hold_id = hold["hold_id"].as_str().expect("hold id");
    money::checkout(app, token, hold_id, &Uuid::new_v4().to_string(), method)
        .await
        .expect("checkout")
}

async fn buy_ok(app: &TestApp, token: &str, show: &str, seats: &[&str]) -> String {
    let a = buy(app, token, show, seats, "pm_card_ok").await;
    assert_eq!(a.status, 201, "{}", a.json);
    a.json["id"].as_str().expect("id").to_owned()
}

async fn cancel(app: &TestApp, token: &str, booking: &str) -> Value {
    let (s, c) = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{booking}/cancel"),
            Some(token),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{c}");
    c
}

/// Waits until `n` refunds have landed (each writes a `refund.succeeded`
/// event), so the outbox is complete for what the test did.
async fn refunds_landed(app: &TestApp, n: i64) {
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM refunds WHERE status = 'SUCCEEDED'")
                .await
                == n
        })
        .await,
        "{n} refunds must land"
    );
}

/// The event types of one aggregate, in outbox seq order.
fn kinds_by_seq(rows: &[(i64, String, String, String)], aggregate: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r.2 == aggregate)
        .map(|r| r.3.clone())
        .collect()
}

/// The event types of one aggregate, in stream order.
fn kinds_in_stream(entries: &[Entry], aggregate: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.aggregate == aggregate)
        .map(|e| e.kind.clone())
        .collect()
}

const BOOKING_LIFE: [&str; 3] = ["booking.confirmed", "booking.cancelled", "refund.succeeded"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_change_is_published_in_order_per_booking() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("seed");
    let (alice, bob) = (user("alice"), user("bob"));
    let booking = buy_ok(&app, &alice, &show, &["A1", "A2"]).await;
    cancel(&app, &alice, &booking).await;
    let declined = buy(&app, &bob, &show, &["A3"], "pm_card_declined").await;
    assert_eq!(declined.status, 402, "{}", declined.json);
    let declined_payment = declined.json["error"]["details"]["payment_id"]
        .as_str()
        .expect("payment id")
        .to_owned();
    refunds_landed(&app, 1).await;
    assert!(
        eventually(SOON, || async { unpublished(&app).await == 0 }).await,
        "the relay publishes everything"
    );

    // In the outbox, in seq order: the payment, then the booking's life.
    let rows = outbox_rows(&app).await;
    let payment: String =
        sqlx::query_scalar("SELECT payment_id::text FROM bookings WHERE id = $1::uuid")
            .bind(&booking)
            .fetch_one(&app.db)
            .await
            .expect("payment");
    assert_eq!(kinds_by_seq(&rows, &payment), ["payment.succeeded"]);
    assert_eq!(kinds_by_seq(&rows, &booking), BOOKING_LIFE);
    assert_eq!(kinds_by_seq(&rows, &declined_payment), ["payment.failed"]);
    let seq_of = |kind: &str| rows.iter().find(|r| r.3 == kind).expect(kind).0;
    assert!(seq_of("payment.succeeded") < seq_of("booking.confirmed"));
    assert_eq!(rows.len(), 5, "one event per change, no more: {rows:?}");

    // In the stream: each event exactly once (nothing crashed), in the
    // same order per booking, with the outbox's seq.
    let entries = stream_entries(&app).await;
    assert_eq!(entries.len(), rows.len(), "{entries:?}");
    for (seq, event_id, _, kind) in &rows {
        let found: Vec<&Entry> = entries.iter().filter(|e| &e.event_id == event_id).collect();
        assert_eq!(found.len(), 1, "{kind} {event_id}");
        assert_eq!((&found[0].kind, found[0].seq), (kind, *seq));
    }
    assert_eq!(kinds_in_stream(&entries, &booking), BOOKING_LIFE);

    // And the buyer was told each, once.
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM notifications").await == rows.len() as i64
        })
        .await,
        "the notifier records every event"
    );
    let (_, n) = app
        .send(Method::GET, "/v1/me/notifications", Some(&alice), None)
        .await
        .expect("notifications");
    let mut kinds: Vec<&str> = n["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["kind"].as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "booking.cancelled",
            "booking.confirmed",
            "payment.succeeded",
            "refund.succeeded"
        ]
    );
    assert_money_safe(&app, SOON).await;
    app.stop().await;
}

/// A sink that dies like a relay killed mid-publish: it publishes the
/// first `k` events of the batch for real, then fails.
struct KilledAfter {
    real: RedisStreamSink,
    k: usize,
}

// Written out instead of `#[async_trait]` (what the trait is declared
// with), because the test crate does not depend on async-trait; this is
// the signature that macro generates.
impl EventSink for KilledAfter {
    fn publish<'a, 'b, 'f>(&'a self, events: &'b [OutboxEvent]) -> BoxFuture<'f, anyhow::Result<()>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let n = self.k.min(events.len());
            self.real.publish(&events[..n]).await?;
            anyhow::bail!(
                "relay killed after publishing {n} of {} events",
                events.len()
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_publish_publishes_again_and_consumers_record_once() {
    let mut settings = test_settings().await.expect("settings");
    settings.outbox_relay = false; // the test is the relay (and the notifier)
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("seed");
    let alice = user("alice");
    let first = buy_ok(&app, &alice, &show, &["A1"]).await;
    buy_ok(&app, &user("bob"), &show, &["A2"]).await;
    cancel(&app, &alice, &first).await;
    refunds_landed(&app, 1).await;
    let rows = outbox_rows(&app).await;
    // 2 × (payment.succeeded, booking.confirmed), booking.cancelled,
    // refund.succeeded.
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert_eq!(unpublished(&app).await, 6, "no relay runs in this app");
    assert!(stream_entries(&app).await.is_empty());

    let prefix = app.settings.events_stream_prefix.clone();
    let real = || RedisStreamSink::new(&app.redis_url, &prefix, REDIS_TIMEOUT).expect("sink");
    let k = 3;
    let killed = KilledAfter { real: real(), k };
    let err = relay_once(&app.db, &killed)
        .await
        .expect_err("the killed relay fails");
    assert!(err.to_string().contains("relay killed"), "{err:#}");
    // The first k are in the stream, but nothing is marked published.
    assert_eq!(unpublished(&app).await, 6, "a failed pass marks nothing");
    let partial = stream_entries(&app).await;
    let first_k: Vec<&String> = rows.iter().take(k).map(|r| &r.1).collect();
    assert_eq!(
        partial.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
        first_k
    );

    // A consumer reading meanwhile records what it was given.
    let notifier = LazyRedis::new(&app.redis_url, REDIS_TIMEOUT).expect("redis");
    let block = Duration::from_millis(100);
    let handled = consume_once(&app.db, &notifier, &prefix, "test-notifier", block)
        .await
        .expect("consume");
    assert_eq!(handled, k);
    assert_eq!(
        app.count("SELECT count(*) FROM notifications").await,
        k as i64
    );

    // The restarted relay publishes the whole batch again, in seq order.
    let published = relay_once(&app.db, &real()).await.expect("relay");
    assert_eq!(published, 6);
    assert_eq!(unpublished(&app).await, 0);
    let entries = stream_entries(&app).await;
    assert_eq!(entries.len(), 6 + k, "{entries:?}");
    let republished: Vec<(&String, i64)> =
        entries[k..].iter().map(|e| (&e.event_id, e.seq)).collect();
    let by_seq: Vec<(&String, i64)> = rows.iter().map(|r| (&r.1, r.0)).collect();
    assert_eq!(republished, by_seq, "the retry publishes all, in seq order");
    for (i, (seq, event_id, _, _)) in rows.iter().enumerate() {
        let times = entries.iter().filter(|e| &e.event_id == event_id).count();
        assert_eq!(times, if i < k { 2 } else { 1 }, "event {seq}");
    }
    assert_eq!(kinds_in_stream(&entries[k..], &first), BOOKING_LIFE);

    // The consumer meets the k duplicates and records each event once.
    let handled = consume_once(&app.db, &notifier, &prefix, "test-notifier", block)
        .await
        .expect("consume");
    assert_eq!(handled, 6, "every delivery is handled and acknowledged");
    let again = consume_once(&app.db, &notifier, &prefix, "test-notifier", block)
        .await
        .expect("consume");
    assert_eq!(again, 0, "nothing left pending or new");
    let recorded: Vec<(String, i64)> = sqlx::query_as(
        "SELECT o.event_id::text, count(n.event_id)
           FROM outbox o LEFT JOIN notifications n ON n.event_id = o.event_id
          GROUP BY o.event_id",
    )
    .fetch_all(&app.db)
    .await
    .expect("recorded");
    assert_eq!(recorded.len(), 6);
    assert!(
        recorded.iter().all(|(_, n)| *n == 1),
        "each event recorded exactly once: {recorded:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM notifications").await, 6);
    assert_money_safe(&app, SOON).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_left_unpublished_by_a_stopped_app_are_published_after_restart() {
    let app = TestApp::default().await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("seed");
    let (alice, bob) = (user("alice"), user("bob"));
    let first = buy_ok(&app, &alice, &show, &["A1"]).await;
    assert!(
        eventually(SOON, || async {
            unpublished(&app).await == 0
                && app.count("SELECT count(*) FROM notifications").await == 2
        })
        .await,
        "published and consumed while the relay runs"
    );

    // The app goes down and comes back without its relay, so what happens
    // now stays unpublished; then it stops again with events waiting.
    let app = app
        .restart(|s| s.outbox_relay = false)
        .await
        .expect("restart");
    let second = buy_ok(&app, &bob, &show, &["A2"]).await;
    cancel(&app, &alice, &first).await;
    refunds_landed(&app, 1).await;
    let waiting = unpublished(&app).await;
    assert_eq!(waiting, 4, "payment + confirmation, cancellation, refund");
    let app = app
        .restart(|s| s.outbox_relay = true)
        .await
        .expect("restart");

    assert!(
        eventually(SOON, || async { unpublished(&app).await == 0 }).await,
        "the restarted relay publishes what was left"
    );
    let rows = outbox_rows(&app).await;
    assert_eq!(rows.len(), 6);
    let entries = stream_entries(&app).await;
    for (_, event_id, _, kind) in &rows {
        let times = entries.iter().filter(|e| &e.event_id == event_id).count();
        assert_eq!(times, 1, "{kind} {event_id} published once");
    }
    assert_eq!(kinds_in_stream(&entries, &first), BOOKING_LIFE);
    assert_eq!(kinds_in_stream(&entries, &second), ["booking.confirmed"]);
    // The restarted notifier picks up where its group left off.
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM notifications").await == 6
        })
        .await,
        "every event reaches the notifier once"
    );
    assert_money_safe(&app, SOON).await;
    app.stop().await;
}

/// The real Redis sink, counted: how many publish attempts the relay made.
struct Counted {
    real: RedisStreamSink,
    attempts: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

// The signature `#[async_trait]` generates (see `KilledAfter`).
impl EventSink for Counted {
    fn publish<'a, 'b, 'f>(&'a self, events: &'b [OutboxEvent]) -> BoxFuture<'f, anyhow::Result<()>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(self.real.publish(events))
    }
}

/// A Redis outage under checkout load: every checkout kicks the relay, but
/// a relay whose sink is down backs off (before, each kick was a failed
/// attempt and a WARN line: about 66 a second) and exports its lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_redis_is_down_backs_off_and_reports_its_lag() {
    let mut settings = test_settings().await.expect("settings");
    settings.outbox_relay = false; // the test runs the relay
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app.seed_show(1, 5, Span::days(3)).await.expect("seed");
    buy_ok(&app, &user("alice"), &show, &["A1"]).await;
    assert!(unpublished(&app).await > 0);

    // A Redis that is not there: a port nothing listens on.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sink = Counted {
        real: RedisStreamSink::new(
            &format!("redis://127.0.0.1:{dead_port}"),
            &app.settings.events_stream_prefix,
            REDIS_TIMEOUT,
        )
        .expect("sink"),
        attempts: attempts.clone(),
    };
    let kick = std::sync::Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(region_core::outbox::run(
        app.db.clone(),
        std::sync::Arc::new(sink),
        kick.clone(),
        Duration::from_millis(50),
        stop_rx,
    ));
    // 300 checkouts' worth of kicks over three seconds.
    for _ in 0..300 {
        kick.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    relay.await.expect("relay task");
    let n = attempts.load(std::sync::atomic::Ordering::SeqCst);
    // Backoff from 200 ms doubling: about six attempts fit in three
    // seconds; without it every kick and poll was one.
    assert!((1..=10).contains(&n), "{n} publish attempts in 3 s");
    assert!(unpublished(&app).await > 0, "nothing was marked published");

    let (status, metrics) = app.get("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("outbox_relay_lag_seconds")
            && metrics.contains("outbox_unpublished_events"),
        "lag is exported"
    );
    app.stop().await;
}
