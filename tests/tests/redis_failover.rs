//! Seed Q6: Redis dies mid-sale. Holds continue through Postgres alone
//! (no 500s, still no double holds); when Redis returns, live holds are
//! re-asserted and the fast path resumes. Uses a private redis-server.

use e2e::churn::{assert_recovered_on, other_than, Churn};
use e2e::redis_server::RedisServer;
use e2e::{eventually, fault_settings, test_settings, user, TestApp};
use std::sync::Arc;
use std::time::Duration;
use testkit::invariants::check;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_survive_a_redis_outage_and_the_fast_path_resumes() {
    let mut redis = RedisServer::start().expect("redis-server");
    let mut settings = fault_settings().await.expect("settings");
    settings.redis_url = redis.url();
    let app = Arc::new(TestApp::spawn(settings).await.expect("app"));
    let show = app
        .seed_show(21, 20, chrono::Duration::days(2))
        .await
        .expect("seed");
    assert_eq!(app.lock_path().await, "redis");

    // Clients hold random pairs of seats in a loop until told to stop.
    let churn = Churn::start(std::slice::from_ref(&app), &show, 8, false);

    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.kill();
    churn.phase("outage");
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.lock_path().await == "postgres_only"
        })
        .await,
        "breaker must open"
    );
    let held_before_outage_work: i64 = count_holds(&app).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held_during_outage = count_holds(&app).await - held_before_outage_work;
    assert!(
        held_during_outage > 0,
        "holds must continue through Postgres while Redis is down"
    );

    redis.restart().expect("restart redis");
    churn.phase("after");
    assert!(
        app.wait_for_fast_path().await,
        "fast path must resume after Redis returns"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let statuses = churn.stop().await;
    // No 500s while switching: only holds, conflicts and load shedding.
    let unexpected = other_than(&statuses, &[201, 409, 503]);
    assert!(unexpected.is_empty(), "only 201/409/503: {statuses:?}");
    assert!(
        statuses.get(&("after", 201)).copied().unwrap_or(0) > 0,
        "{statuses:?}"
    );

    // Holds made while Redis was down are back in Redis, Redis and
    // Postgres agree seat by seat, no seat is in two live holds, and a new
    // hold takes the fast path.
    assert_recovered_on(&app, &redis.url(), &show).await;
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("app still shared"),
    }
}

async fn count_holds(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM holds").await
}

/// Redis down at start-up: the core starts, serves holds through
/// Postgres, and switches to Redis once it appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_redis_and_switches_when_it_appears() {
    let mut redis = RedisServer::start().expect("redis-server");
    redis.kill();
    let mut settings = test_settings().await.expect("settings");
    settings.redis_url = redis.url();
    settings.breaker_open_ms = 200;
    let app = TestApp::spawn(settings).await.expect("app");
    assert_eq!(app.lock_path().await, "postgres_only");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(2))
        .await
        .expect("seed");
    let (s, first) = app
        .hold(&user("a"), &show, &["A1", "A2"])
        .await
        .expect("hold");
    assert_eq!(s, 201, "{first}");
    let (s, _) = app.hold(&user("b"), &show, &["A2"]).await.expect("hold");
    assert_eq!(s, 409);
    let (s, map) = app
        .get(&format!("/v1/shows/{show}/seats"))
        .await
        .expect("map");
    assert_eq!(
        (s, map["held"].as_u64()),
        (200, Some(2)),
        "seat map from Postgres"
    );

    redis.restart().expect("restart");
    assert!(app.wait_for_fast_path().await);
    let report = check(&app.db, &redis.url(), std::slice::from_ref(&show))
        .await
        .expect("check");
    assert_eq!(
        report,
        Default::default(),
        "the Postgres-only hold was re-asserted in Redis"
    );
    let (s, _) = app.hold(&user("b"), &show, &["A1"]).await.expect("hold");
    assert_eq!(s, 409, "re-asserted key refuses the seat on the fast path");
    app.stop().await;
}

/// Re-assertion makes Redis agree with this shard's Postgres, and leaves
/// alone the keys of shows it does not own (a Redis shared by shards).
#[tokio::test]
async fn reassertion_fixes_our_keys_and_leaves_other_shards_alone() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 5, chrono::Duration::days(1))
        .await
        .expect("seed");
    let (s, hold) = app
        .hold(&user("alice"), &show, &["A1"])
        .await
        .expect("hold");
    assert_eq!(s, 201);
    let foreign = uuid::Uuid::new_v4();
    let mut r = app.redis().await.expect("redis");
    for key in [
        format!("seat:{{{show}}}:A2"),
        format!("seat:{{{foreign}}}:A1"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("stale-or-foreign")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut r)
            .await
            .expect("set");
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("seat:{{{show}}}:A1"))
        .query_async(&mut r)
        .await
        .expect("del");

    let state = &app.app.state;
    region_core::recovery::reassert(&state.db, &state.redis, None)
        .await
        .expect("reassert");
    assert_eq!(
        app.lock_owner(&show, "A1").await.as_deref(),
        hold["hold_id"].as_str(),
        "live hold restored"
    );
    assert_eq!(
        app.lock_owner(&show, "A2").await,
        None,
        "our stale lock removed"
    );
    let foreign_key: Option<String> = redis::cmd("GET")
        .arg(format!("seat:{{{foreign}}}:A1"))
        .query_async(&mut r)
        .await
        .expect("get");
    assert_eq!(
        foreign_key.as_deref(),
        Some("stale-or-foreign"),
        "another shard's lock is untouched"
    );
    let _: () = redis::cmd("DEL")
        .arg(format!("seat:{{{foreign}}}:A1"))
        .query_async(&mut r)
        .await
        .expect("del");
    app.stop().await;
}
