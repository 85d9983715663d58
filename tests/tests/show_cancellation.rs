//! Cancelling a show (issue 16) end to end, against real Postgres, Redis
//! and the sandbox gateway.
//!
//! - Buyers hold and pay on two replicas while an operator cancels the
//!   show: afterwards no booking is confirmed, none was created after the
//!   cancellation began, no hold is live in Postgres or Redis, and every
//!   charge was refunded in full at the gateway ([`violations`]).
//! - The negative control: a booking written behind the region core's
//!   back after the cancellation began is flagged by the same checker.
//! - The Postgres-only hold path refuses holds of a cancelled show too.
//! - A region-core process killed (SIGKILL) mid-cancellation, its gateway
//!   frozen: the restarted process finishes the same job, and each
//!   payment is refunded once.
//! - The operator call: the same job however often it is called, bad
//!   input and the wrong token refused with nothing changed, one audit
//!   row; the buyer reads the booking cancelled with its refund, and the
//!   show cancelled.

use chrono::{DateTime, Utc};
use e2e::region_process::{region_core_spec, ShardParts};
use e2e::sandbox_process::SandboxProcess;
use e2e::{eventually, fresh_database, token, user, TestApp, GATEWAY_KEY, SECRET};
use region_core::auth::{Grant, Role, Scope, TokenKeys};
use region_core::Application;
use reqwest::Method;
use serde_json::{json, Value};
use shared::api::SaleMode;
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::api::Api;
use testkit::gateway::Gateway;
use testkit::process::{free_port, ServiceProcess};
use testkit::seed;
use uuid::Uuid;

/// How long a cancellation (its refunds included) may take to finish.
const FINISH: Duration = Duration::from_secs(90);
/// A reason that passes.
const REASON: &str = "The artist is unwell; the show will not take place";

fn operator() -> String {
    token("operator-1", Role::Operator)
}

/// An operator token reaching only `grant`.
fn scoped(grant: Grant) -> String {
    TokenKeys::new(SECRET)
        .mint_operator("operator-2", &grant, Utc::now().timestamp(), 3600)
        .expect("minting a scoped token")
}

/// `POST /v1/operator/shows/{show}/cancel` with `body` as `tok`, against
/// the region core at `base`.
async fn cancel_at(
    http: &reqwest::Client,
    base: &str,
    tok: &str,
    show: &str,
    body: Value,
) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/v1/operator/shows/{show}/cancel"))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .expect("cancel request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `GET /v1/operator/shows/{show}/cancellation` against `base`.
async fn job_at(http: &reqwest::Client, base: &str, show: &str) -> (u16, Value) {
    let resp = http
        .get(format!("{base}/v1/operator/shows/{show}/cancellation"))
        .bearer_auth(operator())
        .send()
        .await
        .expect("cancellation read");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until the cancellation of `show` is DONE; its last reading.
async fn finished(http: &reqwest::Client, base: &str, show: &str) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let done = eventually(FINISH, || async {
        let (s, v) = job_at(http, base, show).await;
        let done = s == 200 && v["status"] == "DONE";
        *last.lock().expect("lock") = v;
        done
    })
    .await;
    let last = last.into_inner().expect("lock");
    assert!(done, "the cancellation did not finish: {last}");
    last
}

/// Everything that must hold once a show's cancellation is DONE; one line
/// per violation. Used by the concurrency test, the crash test and the
/// negative control alike.
async fn violations(db: &PgPool, redis_url: &str, gateway_url: &str, show: Uuid) -> Vec<String> {
    let mut out = Vec::new();
    let (status, started_at): (String, DateTime<Utc>) =
        sqlx::query_as("SELECT status, started_at FROM show_cancellations WHERE show_id = $1")
            .bind(show)
            .fetch_one(db)
            .await
            .expect("the show's cancellation");
    if status != "DONE" {
        out.push(format!("the job is {status}"));
    }
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(show)
            .fetch_one(db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let confirmed =
        count("SELECT count(*) FROM bookings WHERE show_id = $1 AND status = 'CONFIRMED'").await;
    if confirmed > 0 {
        out.push(format!("{confirmed} bookings still CONFIRMED"));
    }
    let late: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT number, created_at FROM bookings WHERE show_id = $1 AND created_at >= $2",
    )
    .bind(show)
    .bind(started_at)
    .fetch_all(db)
    .await
    .expect("late bookings");
    for (number, at) in late {
        out.push(format!(
            "booking {number} created at {at}, after the cancellation began at {started_at}"
        ));
    }
    for (what, sql) in [
        (
            "ACTIVE holds",
            "SELECT count(*) FROM holds WHERE show_id = $1 AND state = 'ACTIVE'",
        ),
        (
            "live hold seats",
            "SELECT count(*) FROM hold_seats WHERE show_id = $1 AND live",
        ),
        (
            "seats not AVAILABLE",
            "SELECT count(*) FROM show_seats WHERE show_id = $1 AND status <> 'AVAILABLE'",
        ),
    ] {
        let n = count(sql).await;
        if n > 0 {
            out.push(format!("{n} {what} in Postgres"));
        }
    }
    // Money, as we recorded it: every charge of the show refunded in full,
    // and the refund sent.
    let unpaid: Vec<(Uuid, i64, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT p.id, p.amount_minor, r.status, r.amount_minor FROM payments p
           LEFT JOIN refunds r ON r.payment_id = p.id
          WHERE p.show_id = $1 AND p.status = 'SUCCEEDED'
            AND (r.status IS DISTINCT FROM 'SUCCEEDED' OR r.amount_minor <> p.amount_minor)",
    )
    .bind(show)
    .fetch_all(db)
    .await
    .expect("refunds of the show");
    for (payment, amount, status, refunded) in unpaid {
        out.push(format!(
            "payment {payment} of {amount}: refund {status:?} of {refunded:?}"
        ));
    }
    // Money, as the gateway's own ledger says: charged == refunded.
    let ledger = Gateway::new(gateway_url, GATEWAY_KEY)
        .expect("gateway client")
        .ledger()
        .await
        .expect("ledger");
    let (charged, refunded) = ledger
        .intents
        .iter()
        .filter(|i| i.succeeded())
        .fold((0, 0), |(c, r), i| (c + i.amount, r + i.amount_refunded));
    if charged != refunded {
        out.push(format!(
            "the gateway charged {charged} and refunded {refunded}"
        ));
    }
    for i in ledger.intents.iter().filter(|i| i.refunds.len() > 1) {
        out.push(format!(
            "intent {} refunded {} times",
            i.id,
            i.refunds.len()
        ));
    }
    // Redis: no seat key of the show still names a hold. (A cancelled
    // booking's `booked:` mark may outlive it: the show takes no holds.)
    let mut r = redis::Client::open(redis_url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("seat:{{{show}}}:*"))
        .query_async(&mut r)
        .await
        .expect("KEYS");
    for key in keys {
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut r)
            .await
            .expect("GET");
        if let Some(v) = value.filter(|v| !v.starts_with("booked:")) {
            out.push(format!("{key} still held by {v} in Redis"));
        }
    }
    out
}

/// The city of `show`, from its public read.
async fn city_of(app: &TestApp, show: &str) -> String {
    let (s, v) = app.get(&format!("/v1/shows/{show}")).await.expect("show");
    assert_eq!(s, 200, "{v}");
    v["city"].as_str().expect("city").to_owned()
}

/// Seat labels of row `row` (0 = A) of a 10-wide grid.
fn row_seats(row: usize) -> Vec<String> {
    (1..=10)
        .map(|n| format!("{}{n}", seed::row_label(row)))
        .collect()
}

/// One buyer at `base`: keeps one hold unpaid (the job must release it),
/// then holds and pays its row's seats one by one until the show is
/// cancelled. Counts bookings answered 201. A 503 (load shed, a slow
/// gateway) is retried as a client would: the same request, the same key.
async fn buyer(
    http: reqwest::Client,
    base: String,
    who: String,
    show: String,
    row: usize,
    booked: Arc<AtomicUsize>,
) {
    let api = Api::with_client(&base, http);
    let auth = format!("Bearer {}", user(&who));
    let send = |path: String, key: Option<String>, body: Value| {
        let (api, auth) = (&api, &auth);
        async move {
            loop {
                let r = api
                    .send(Method::POST, &path, Some(auth), key.as_deref(), Some(&body))
                    .await
                    .expect("request");
                if r.status.as_u16() != 503 {
                    let json: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    return (r.status.as_u16(), json);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let holds = format!("/v1/shows/{show}/holds");
    let seats = row_seats(row);
    let (s, kept) = send(holds.clone(), None, json!({ "seats": [seats[9]] })).await;
    assert_eq!(s, 201, "{kept}");
    for seat in &seats[..9] {
        let (s, hold) = send(holds.clone(), None, json!({ "seats": [seat] })).await;
        match s {
            201 => {}
            409 if hold["error"]["code"] == "show_cancelled" => return,
            s => panic!("hold {seat} by {who}: {s} {hold}"),
        }
        let hold_id = hold["hold_id"].as_str().expect("hold id");
        let key = Uuid::new_v4().to_string();
        let (s, paid) = send(
            format!("/v1/holds/{hold_id}/checkout"),
            Some(key),
            json!({ "payment_method": "pm_card_ok" }),
        )
        .await;
        match (s, paid["error"]["code"].as_str().unwrap_or_default()) {
            (201, _) => {
                booked.fetch_add(1, Ordering::SeqCst);
            }
            // Refused before the charge, or charged and refunded at once;
            // or the job released the hold under the checkout.
            (409, "show_cancelled" | "confirmation_failed" | "hold_not_active") | (410, _) => {
                return
            }
            (s, _) => panic!("checkout {seat} by {who}: {s} {paid}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_under_buyers_leaves_no_booking_no_hold_and_no_money_kept() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(10, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    // A second replica of the shard: its show cache is its own.
    let mut settings = app.settings.clone();
    settings.listen = "127.0.0.1:0".into();
    let replica = Application::build(settings)
        .await
        .expect("replica")
        .spawn()
        .expect("spawn");
    let booked = Arc::new(AtomicUsize::new(0));
    let buyers: Vec<_> = (0..10)
        .map(|row| {
            let base = if row % 2 == 0 {
                app.url.clone()
            } else {
                replica.url()
            };
            tokio::spawn(buyer(
                app.http.clone(),
                base,
                format!("buyer-{row}"),
                show.clone(),
                row,
                booked.clone(),
            ))
        })
        .collect();
    // Cancel once buyers are in full swing.
    assert!(
        eventually(Duration::from_secs(60), || async {
            booked.load(Ordering::SeqCst) >= 12
        })
        .await,
        "buyers booked {}",
        booked.load(Ordering::SeqCst)
    );
    let (s, job) = cancel_at(
        &app.http,
        &replica.url(),
        &operator(),
        &show,
        json!({ "reason": REASON }),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    for b in buyers {
        b.await.expect("buyer");
    }
    // A charge whose answer a buyer never got is settled by reconciliation
    // (as it would be within its interval).
    let (s, v) = app
        .operator_post("/v1/operator/reconcile", json!({}))
        .await
        .expect("reconcile");
    assert_eq!(s, 200, "{v}");
    let done = finished(&app.http, &app.url, &show).await;
    assert_eq!(done["id"], job["id"], "{done}");
    let show_id = Uuid::parse_str(&show).expect("show id");
    let found = violations(&app.db, &app.redis_url, &app.gateway.url(), show_id).await;
    assert!(found.is_empty(), "violations: {found:#?}");
    // The test did what it says: bookings cancelled, holds released.
    let p = &done["progress"];
    assert!(
        p["bookings_cancelled"].as_i64().expect("count") >= 12,
        "{done}"
    );
    assert!(p["holds_released"].as_i64().expect("count") >= 1, "{done}");
    assert_eq!(p["refunds_pending"], 0, "{done}");
    // Every buyer was told: one booking.cancelled per booking cancelled.
    let events = app
        .count("SELECT count(*) FROM outbox WHERE event_type = 'booking.cancelled' AND payload ->> 'reason' = 'show_cancelled'")
        .await;
    assert_eq!(Some(events), p["bookings_cancelled"].as_i64(), "{done}");
    e2e::money::assert_money_safe(&app, Duration::from_secs(15)).await;
    replica.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_checker_flags_a_booking_written_after_the_cancellation_began() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 5, chrono::Duration::days(3))
        .await
        .expect("show");
    app.buy("alice", &show, &["A1"]).await;
    let (s, job) = app
        .operator_post(
            &format!("/v1/operator/shows/{show}/cancel"),
            json!({ "reason": REASON }),
        )
        .await
        .expect("cancel");
    assert_eq!(s, 202, "{job}");
    finished(&app.http, &app.url, &show).await;
    let show_id = Uuid::parse_str(&show).expect("show id");
    let clean = violations(&app.db, &app.redis_url, &app.gateway.url(), show_id).await;
    assert!(clean.is_empty(), "{clean:#?}");

    // A writer that skipped every check (the region core's and the
    // trigger's: replication role skips triggers and foreign keys) books
    // a seat now.
    let mut tx = app.db.begin().await.expect("tx");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("role");
    sqlx::query(
        "INSERT INTO bookings (id, number, show_id, hold_id, payment_id, user_id, amount_minor,
                               currency, refund_policy, show_starts_at)
         SELECT $1, 'BMS20300101-TST-000001', sh.id, $2, $3, 'mallory', 25000, 'INR',
                sh.refund_policy, sh.starts_at
           FROM shows sh WHERE sh.id = $4",
    )
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(show_id)
    .execute(&mut *tx)
    .await
    .expect("the bypassing insert");
    tx.commit().await.expect("commit");
    let found = violations(&app.db, &app.redis_url, &app.gateway.url(), show_id).await;
    assert!(found.iter().any(|v| v.contains("CONFIRMED")), "{found:#?}");
    assert!(
        found
            .iter()
            .any(|v| v.contains("after the cancellation began")),
        "{found:#?}"
    );

    // Without the bypass, the database refuses it (the trigger).
    let refused = sqlx::query(
        "INSERT INTO bookings (id, number, show_id, hold_id, payment_id, user_id, amount_minor,
                               currency, refund_policy, show_starts_at)
         SELECT $1, 'BMS20300101-TST-000002', sh.id, h.id, p.id, 'mallory', 25000, 'INR',
                sh.refund_policy, sh.starts_at
           FROM shows sh, holds h, payments p WHERE sh.id = $2 AND h.show_id = sh.id AND p.hold_id = h.id
          LIMIT 1",
    )
    .bind(Uuid::now_v7())
    .bind(show_id)
    .execute(&app.db)
    .await
    .expect_err("a booking of a cancelled show");
    assert!(refused.to_string().contains("cancelled"), "{refused}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_only_hold_path_refuses_a_cancelled_show() {
    // A shard whose Redis is down from the start: holds go to Postgres
    // alone (`FOR UPDATE NOWAIT`), and so does the refusal.
    let mut redis = testkit::redis_server::RedisServer::start().expect("redis-server");
    redis.kill();
    let mut settings = e2e::test_settings().await.expect("settings");
    settings.redis_url = redis.url();
    let app = TestApp::spawn(settings).await.expect("app");
    assert_eq!(app.lock_path().await, "postgres_only");
    let show = app
        .seed_show(1, 5, chrono::Duration::days(3))
        .await
        .expect("show");
    app.hold_id("alice", &show, &["A1"]).await;
    app.hold_id("bob", &show, &["A2"]).await;
    let (s, job) = app
        .operator_post(
            &format!("/v1/operator/shows/{show}/cancel"),
            json!({ "reason": REASON }),
        )
        .await
        .expect("cancel");
    assert_eq!(s, 202, "{job}");
    let (s, v) = app
        .hold(&user("carol"), &show, &["A3"])
        .await
        .expect("hold");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("show_cancelled")),
        "{v}"
    );
    assert_eq!(
        app.lock_path().await,
        "postgres_only",
        "the refusal came from that path"
    );
    let done = finished(&app.http, &app.url, &show).await;
    assert_eq!(done["progress"]["holds_released"], 2, "{done}");
    assert_eq!(
        app.count("SELECT count(*) FROM holds WHERE state = 'ACTIVE'")
            .await,
        0
    );
    app.stop().await;
}

/// Seeds a show of `seats` seats on the region core at `api`; its id.
async fn seed_show_at(api: &Api, op: &str, seats: u16) -> String {
    let city = seed::ensure_city(api, op, "crashzz", "Crash City")
        .await
        .expect("city");
    let place = seed::ensure_place(
        api,
        op,
        &city,
        "Venue",
        "Asia/Kolkata",
        "Screen 1",
        &seed::grid(1, seats, |_| "REGULAR"),
    )
    .await
    .expect("place");
    let movie = seed::create_movie(api, op, "Movie", 120, "en")
        .await
        .expect("movie");
    let show = seed::NewShow {
        screen_id: place.screen_id,
        movie_id: movie,
        starts_at: Utc::now() + chrono::Duration::days(3),
        prices: &[("REGULAR", 25_000)],
        currency: "INR",
    };
    seed::create_show_in(api, op, show, SaleMode::Open)
        .await
        .expect("show")
        .id
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_killed_mid_way_finishes_after_a_restart_with_one_refund_per_payment() {
    const BOOKINGS: u16 = 40;
    let database_url = fresh_database().await.expect("database");
    let gw = SandboxProcess::start(None).await.expect("sandbox process");
    let redis_url = e2e::shared_redis_url();
    let port = free_port().expect("port");
    let shard = ShardParts {
        database_url: &database_url,
        redis_url: &redis_url,
        gateway_url: &gw.url,
        shard_code: "TST",
    };
    let fast = [
        ("REGION_REFUND_POLL_MS", "100".to_owned()),
        ("REGION_REFUND_BACKOFF_BASE_MS", "100".to_owned()),
        ("REGION_REFUND_BACKOFF_MAX_SECS", "1".to_owned()),
        ("REGION_GATEWAY_TIMEOUT_MS", "1000".to_owned()),
    ];
    let spec = region_core_spec(port, &shard, &fast).expect("spec");
    let mut core = ServiceProcess::start(spec, Duration::from_secs(30))
        .await
        .expect("region core");
    let http = reqwest::Client::new();
    let api = Api::with_client(core.url(), http.clone());
    let op = format!("Bearer {}", operator());
    let show = seed_show_at(&api, &op, BOOKINGS).await;
    for n in 1..=BOOKINGS {
        let auth = format!("Bearer {}", user(&format!("buyer-{n}")));
        let hold = api
            .send(
                Method::POST,
                &format!("/v1/shows/{show}/holds"),
                Some(&auth),
                None,
                Some(&json!({ "seats": [format!("A{n}")] })),
            )
            .await
            .expect("hold");
        assert_eq!(hold.status.as_u16(), 201);
        let hold: Value = serde_json::from_slice(&hold.body).expect("hold json");
        let key = Uuid::new_v4().to_string();
        let paid = api
            .send(
                Method::POST,
                &format!(
                    "/v1/holds/{}/checkout",
                    hold["hold_id"].as_str().expect("id")
                ),
                Some(&auth),
                Some(&key),
                Some(&json!({ "payment_method": "pm_card_ok" })),
            )
            .await
            .expect("checkout");
        assert_eq!(
            paid.status.as_u16(),
            201,
            "{}",
            String::from_utf8_lossy(&paid.body)
        );
    }
    // The gateway stalls: refunds cannot be sent, so the job cannot be
    // done when the process dies, wherever its batches are.
    gw.freeze();
    let (s, job) = cancel_at(
        &http,
        core.url(),
        &operator(),
        &show,
        json!({ "reason": REASON }),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    core.kill().await;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .expect("db");
    let running: String = sqlx::query_scalar("SELECT status FROM show_cancellations")
        .fetch_one(&db)
        .await
        .expect("job");
    assert_eq!(running, "RUNNING");

    core.restart(Duration::from_secs(30))
        .await
        .expect("restart");
    gw.resume();
    let done = finished(&http, core.url(), &show).await;
    assert_eq!(done["id"], job["id"], "the same job: {done}");
    assert_eq!(done["progress"]["bookings_cancelled"], BOOKINGS, "{done}");
    assert_eq!(done["progress"]["refunds_sent"], BOOKINGS, "{done}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM show_cancellations")
        .fetch_one(&db)
        .await
        .expect("jobs");
    assert_eq!(jobs, 1);
    let refunds: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds")
        .fetch_one(&db)
        .await
        .expect("refunds");
    assert_eq!(refunds, i64::from(BOOKINGS), "one refund per payment");
    let show_id = Uuid::parse_str(&show).expect("show id");
    let found = violations(&db, &redis_url, &gw.url, show_id).await;
    assert!(found.is_empty(), "violations: {found:#?}");
    core.stop(Duration::from_secs(15)).await;
    db.close().await;
    let name = database_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let _ = testkit::db::drop_database(&e2e::admin_url(), &name).await;
}

#[tokio::test]
async fn the_operator_call_is_idempotent_checked_scoped_and_audited() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 5, chrono::Duration::days(3))
        .await
        .expect("show");
    let booking = app.buy("alice", &show, &["A1", "A2"]).await;
    let city = city_of(&app, &show).await;
    let path = format!("/v1/operator/shows/{show}/cancel");
    let unchanged = || async {
        let cancelled = app
            .count("SELECT count(*) FROM shows WHERE status <> 'SCHEDULED'")
            .await;
        let jobs = app.count("SELECT count(*) FROM show_cancellations").await;
        let audit = app
            .count("SELECT count(*) FROM operator_audit WHERE action = 'show.cancel'")
            .await;
        (cancelled, jobs, audit) == (0, 0, 0)
    };
    let long = "x".repeat(501);
    let bad: Vec<(String, Value, u16)> = vec![
        (
            "/v1/operator/shows/not-a-show/cancel".into(),
            json!({ "reason": REASON }),
            400,
        ),
        (
            format!("/v1/operator/shows/{}/cancel", Uuid::now_v7()),
            json!({ "reason": REASON }),
            404,
        ),
        (path.clone(), json!({ "reason": "" }), 422),
        (path.clone(), json!({ "reason": "   " }), 422),
        (path.clone(), json!({ "reason": long }), 422),
        (path.clone(), json!({ "reason": "line one\nline two" }), 422),
        (
            path.clone(),
            json!({ "reason": REASON, "refund_percent": 50 }),
            0,
        ),
        (path.clone(), json!({}), 0),
        (path.clone(), json!({ "reason": 7 }), 0),
    ];
    for (p, body, want) in bad {
        let (s, v) = app.operator_post(&p, body.clone()).await.expect("request");
        if want == 0 {
            assert!((400..500).contains(&s), "{p} {body}: {s} {v}");
        } else {
            assert_eq!(s, want, "{p} {body}: {v}");
        }
        assert!(v["error"]["code"].is_string(), "{p} {body}: {v}");
        assert!(unchanged().await, "{p} {body} changed something");
    }
    let elsewhere = scoped(Grant::new(vec!["nowhere".into()], vec![Scope::Sales]).expect("grant"));
    let read_only = scoped(Grant::new(vec![city.clone()], vec![Scope::Read]).expect("grant"));
    for tok in [&elsewhere, &read_only, &user("alice")] {
        let (s, v) = cancel_at(&app.http, &app.url, tok, &show, json!({ "reason": REASON })).await;
        assert_eq!(s, 403, "{v}");
        assert!(unchanged().await);
    }

    // A token for this city and sales may; again, the same job.
    let mine = scoped(Grant::new(vec![city.clone()], vec![Scope::Sales]).expect("grant"));
    let (s, first) = cancel_at(
        &app.http,
        &app.url,
        &mine,
        &show,
        json!({ "reason": REASON }),
    )
    .await;
    assert_eq!(s, 202, "{first}");
    assert_eq!(first["status"], "RUNNING");
    assert_eq!(first["reason"], REASON);
    assert_eq!(first["requested_by"], "operator-2");
    let (s, again) = cancel_at(
        &app.http,
        &app.url,
        &operator(),
        &show,
        json!({ "reason": "another reason" }),
    )
    .await;
    assert!(s == 200 || s == 202, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["reason"], REASON);
    let done = finished(&app.http, &app.url, &show).await;
    assert_eq!(done["id"], first["id"]);
    let (s, last) = cancel_at(
        &app.http,
        &app.url,
        &operator(),
        &show,
        json!({ "reason": REASON }),
    )
    .await;
    assert_eq!(
        (s, &last["id"], &last["status"]),
        (200, &first["id"], &json!("DONE")),
        "{last}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM show_cancellations").await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM operator_audit WHERE action = 'show.cancel'")
            .await,
        1
    );
    let (s, audit) = app
        .send(
            Method::GET,
            &format!("/v1/operator/audit?target_kind=show&target_id={show}"),
            Some(&operator()),
            None,
        )
        .await
        .expect("audit");
    assert_eq!(s, 200, "{audit}");
    assert_eq!(
        audit["entries"][0]["after"]["cancellation_id"], first["id"],
        "{audit}"
    );
    assert_eq!(audit["entries"][0]["city"], city.as_str());

    // The buyer sees it: the booking cancelled with its full refund, the
    // show cancelled, no new hold, no cancellation of their own.
    let (s, b) = app
        .send(
            Method::GET,
            &format!("/v1/bookings/{}", booking["id"].as_str().expect("id")),
            Some(&user("alice")),
            None,
        )
        .await
        .expect("booking");
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "CANCELLED", "{b}");
    assert_eq!(b["refund"]["reason"], "show_cancelled", "{b}");
    assert_eq!(b["refund"]["amount_minor"], booking["amount_minor"], "{b}");
    assert_eq!(b["refund"]["status"], "SUCCEEDED", "{b}");
    let (s, v) = app.get(&format!("/v1/shows/{show}")).await.expect("show");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "CANCELLED", "{v}");
    assert!(v["cancelled_at"].is_string(), "{v}");
    let (s, v) = app.hold(&user("bob"), &show, &["A3"]).await.expect("hold");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("show_cancelled")),
        "{v}"
    );
    // The read of a show never cancelled, and of none.
    let other = app
        .seed_show(1, 2, chrono::Duration::days(3))
        .await
        .expect("show");
    let (s, v) = job_at(&app.http, &app.url, &other).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("not_cancelled")),
        "{v}"
    );
    let (s, v) = job_at(&app.http, &app.url, &Uuid::now_v7().to_string()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_show")),
        "{v}"
    );
    app.stop().await;
}
