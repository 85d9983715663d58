//! Seed Q6 with Redis Sentinel: the region core finds its Redis master
//! through three sentinels; the master is killed mid-sale, the sentinels
//! promote the replica, and the region core follows: holds go on through
//! Postgres meanwhile, then through the new master after the live holds
//! are re-asserted there; no seat is held twice, and the new master
//! agrees with Postgres seat by seat. (The replica may have lost the last
//! writes of the old master: asynchronous replication; the Postgres second
//! line is why that cannot sell a seat twice. docs/adr/0017.)

use e2e::sentinel::{SentinelSet, SERVICE};
use e2e::{eventually, test_settings, user, TestApp};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::invariants::check;
use testkit::seed::row_label;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_follow_a_sentinel_failover() {
    let mut set = SentinelSet::start().expect("sentinel set");
    let mut settings = test_settings().await.expect("settings");
    settings.redis_sentinels = set.sentinel_urls();
    settings.redis_sentinel_service = SERVICE.into();
    settings.redis_timeout_ms = 300;
    settings.breaker_threshold = 2;
    settings.breaker_open_ms = 300;
    // The outbox and notifier use the shard's Redis too (through the same
    // locator); their streams are the test's own.
    let app = Arc::new(TestApp::spawn(settings).await.expect("app"));
    let show = app
        .seed_show(21, 20, chrono::Duration::days(2))
        .await
        .expect("seed");
    assert!(
        app.wait_for_fast_path().await,
        "fast path through the master"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let phase: Arc<Mutex<&'static str>> = Arc::new(Mutex::new("before"));
    let statuses: Arc<Mutex<BTreeMap<(&'static str, u16), usize>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..6u64 {
        let (app, show, stop, phase, statuses) = (
            app.clone(),
            show.clone(),
            stop.clone(),
            phase.clone(),
            statuses.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c);
            let token = user(&format!("client-{c}"));
            while !stop.load(Ordering::Relaxed) {
                let row = row_label(rng.gen_range(0..20));
                let n = rng.gen_range(1..20u16);
                let seats = [format!("{row}{n}"), format!("{row}{}", n + 1)];
                let refs: Vec<&str> = seats.iter().map(String::as_str).collect();
                let (status, body) = app
                    .hold(&token, &show, &refs)
                    .await
                    .unwrap_or((0, serde_json::Value::Null));
                let p = *phase.lock().expect("phase");
                *statuses
                    .lock()
                    .expect("stats")
                    .entry((p, status))
                    .or_insert(0) += 1;
                if status == 201 && rng.gen_bool(0.5) {
                    if let Some(id) = body["hold_id"].as_str() {
                        let _ = app.on_hold(reqwest::Method::DELETE, &token, id, "").await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let old = set.master_port().expect("master");
    *phase.lock().expect("phase") = "failover";
    let new =
        tokio::task::block_in_place(|| set.kill_master_and_fail_over(Duration::from_secs(30)))
            .expect("the sentinels promote the replica");
    assert_ne!(old, new);
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.lock_path().await == "redis"
        })
        .await,
        "the fast path resumes on the new master"
    );
    *phase.lock().expect("phase") = "after";
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let statuses = statuses.lock().expect("stats").clone();
    let bad: Vec<_> = statuses
        .iter()
        .filter(|((_, s), _)| ![201, 409, 503].contains(s))
        .collect();
    assert!(bad.is_empty(), "only 201/409/503: {statuses:?}");
    assert!(
        statuses.get(&("failover", 201)).copied().unwrap_or(0) > 0,
        "holds go on (through Postgres) during the failover: {statuses:?}"
    );
    assert!(
        statuses.get(&("after", 201)).copied().unwrap_or(0) > 0,
        "holds go on after it: {statuses:?}"
    );
    // The new master knows every live hold, Postgres agrees, and no seat
    // is in two live holds.
    let report = check(
        &app.db,
        &set.master_url().expect("master"),
        std::slice::from_ref(&show),
    )
    .await
    .expect("check");
    assert_eq!(report, Default::default());
    // A new hold's lock is on the new master.
    let (s, body) = app
        .hold(&user("late"), &show, &["U20", "U19"])
        .await
        .expect("hold");
    assert_eq!(s, 201, "{body}");
    let client = redis::Client::open(set.master_url().expect("master")).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("new master");
    let owner: Option<String> = redis::cmd("GET")
        .arg(format!("seat:{{{show}}}:U20"))
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(owner.as_deref(), body["hold_id"].as_str());
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("app still shared"),
    }
}

/// The negative control: the same failover with the region core pointed
/// at the master's fixed address (no Sentinel). It never finds the new
/// master, so the shard stays on the Postgres-only path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_a_fixed_address_does_not_follow_the_failover() {
    let mut set = SentinelSet::start().expect("sentinel set");
    let mut settings = test_settings().await.expect("settings");
    settings.redis_url = set.master_url().expect("master");
    settings.redis_timeout_ms = 300;
    settings.breaker_threshold = 2;
    settings.breaker_open_ms = 300;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(2))
        .await
        .expect("seed");
    assert!(app.wait_for_fast_path().await);
    tokio::task::block_in_place(|| set.kill_master_and_fail_over(Duration::from_secs(30)))
        .expect("the sentinels promote the replica");
    // Holds notice the dead master and switch the shard to Postgres.
    for n in 1..=4 {
        let _ = app.hold(&user("probe"), &show, &[&format!("A{n}")]).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        app.lock_path().await,
        "postgres_only",
        "a fixed address cannot follow the failover"
    );
    app.stop().await;
}
