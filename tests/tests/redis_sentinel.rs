//! Seed Q6 with Redis Sentinel: the region core finds its Redis master
//! through three sentinels; the master is killed mid-sale, the sentinels
//! promote the replica, and the region core follows: holds go on through
//! Postgres meanwhile, then through the new master after the live holds
//! are re-asserted there; no seat is held twice, and the new master
//! agrees with Postgres seat by seat. (The replica may have lost the last
//! writes of the old master: asynchronous replication; the Postgres second
//! line is why that cannot sell a seat twice. docs/adr/0017.)

use e2e::churn::{assert_recovered_on, other_than, Churn};
use e2e::sentinel::{SentinelSet, SERVICE};
use e2e::{eventually, fault_settings, user, TestApp};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_follow_a_sentinel_failover() {
    let mut set = SentinelSet::start().expect("sentinel set");
    let mut settings = fault_settings().await.expect("settings");
    settings.redis_sentinels = set.sentinel_urls();
    settings.redis_sentinel_service = SERVICE.into();
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

    let churn = Churn::start(std::slice::from_ref(&app), &show, 6, true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let old = set.master_port().expect("master");
    churn.phase("failover");
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
    churn.phase("after");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let statuses = churn.stop().await;
    let bad = other_than(&statuses, &[201, 409, 503]);
    assert!(bad.is_empty(), "only 201/409/503: {statuses:?}");
    assert!(
        statuses.get(&("failover", 201)).copied().unwrap_or(0) > 0,
        "holds go on (through Postgres) during the failover: {statuses:?}"
    );
    assert!(
        statuses.get(&("after", 201)).copied().unwrap_or(0) > 0,
        "holds go on after it: {statuses:?}"
    );
    // The new master knows every live hold, Postgres agrees, no seat is
    // in two live holds, and a new hold's lock is on the new master.
    assert_recovered_on(&app, &set.master_url().expect("master"), &show).await;
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
    let mut settings = fault_settings().await.expect("settings");
    settings.redis_url = set.master_url().expect("master");
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
