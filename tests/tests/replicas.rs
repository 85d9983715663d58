//! Two replicas of one shard (one database, one Redis) under concurrent
//! holds: one replica is cut off from Redis while the other still reaches
//! it, then Redis dies and comes back. The shard switches paths as one
//! (`region_core::path_switch`): no hold commits through Redis while any
//! replica writes holds to Postgres alone, Redis and Postgres agree
//! afterwards, and no seat is held twice. The negative control runs the
//! same sale with each replica on its own breaker and must see Redis-path
//! holds in the middle of the other replica's Postgres-only holds.
//!
//! Also: a dead leader's `redis-path` lease is taken over within 10 s.

use e2e::churn::{other_than, Churn, Statuses};
use e2e::redis_server::RedisServer;
use e2e::tcp_proxy::TcpProxy;
use e2e::{eventually, fault_settings, test_settings, TestApp};
use std::sync::Arc;
use std::time::Duration;
use testkit::invariants::check;

/// What one sale through a partition and an outage left behind.
struct Sale {
    /// The holds' paths in the order their transactions began.
    paths: Vec<(chrono::DateTime<chrono::Utc>, String, i64)>,
    /// The shard's path generation at the end.
    generation: i64,
    /// Answers by phase and status.
    statuses: Statuses,
    /// Redis and Postgres disagreements and double holds, after it all.
    report: testkit::invariants::Report,
}

impl Sale {
    /// Redis-path holds whose transaction began between two Postgres-only
    /// holds less than `window` apart: a replica on the fast path while
    /// another was on Postgres alone.
    fn redis_holds_inside_postgres_runs(&self, window: chrono::Duration) -> usize {
        let pg: Vec<_> = self
            .paths
            .iter()
            .filter(|(_, p, _)| p == "postgres")
            .map(|(t, _, _)| *t)
            .collect();
        self.paths
            .iter()
            .filter(|(_, p, _)| p == "redis")
            .filter(|(t, _, _)| {
                let before = pg.iter().filter(|p| *p < t).max();
                let after = pg.iter().filter(|p| *p > t).min();
                matches!((before, after), (Some(b), Some(a)) if *a - *b < window)
            })
            .count()
    }

    fn count(&self, path: &str) -> usize {
        self.paths.iter().filter(|(_, p, _)| p == path).count()
    }
}

/// Waits until both replicas hold through Redis; panics with the
/// shard's switch state if they do not within 20 s.
async fn fast_path_on_both(a: &TestApp, b: &TestApp, when: &str) {
    let on = eventually(Duration::from_secs(20), || async {
        a.lock_path().await == "redis" && b.lock_path().await == "redis"
    })
    .await;
    if !on {
        let state: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT generation, changed_by, reason FROM redis_path_state")
                .fetch_all(&a.db)
                .await
                .expect("state");
        let links: Vec<(String, bool)> =
            sqlx::query_as("SELECT replica, ok FROM replica_redis_links ORDER BY replica")
                .fetch_all(&a.db)
                .await
                .expect("links");
        let leases: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT job, holder, epoch FROM shard_leases ORDER BY job")
                .fetch_all(&a.db)
                .await
                .expect("leases");
        panic!(
            "no fast path on both replicas {when} (a: {}, b: {}): state {state:?}, links {links:?}, leases {leases:?}",
            a.lock_path().await,
            b.lock_path().await
        );
    }
}

async fn sale_through_a_partition_and_an_outage(coordinated: bool) -> Sale {
    let mut redis = RedisServer::start().expect("redis-server");
    let proxy = TcpProxy::start(redis.port).await.expect("proxy");
    let mut settings = fault_settings().await.expect("settings");
    settings.redis_url = redis.url();
    settings.lease_ttl_ms = 1500;
    settings.lease_renew_ms = 300;
    settings.path_sync_ms = 50;
    settings.unsafe_uncoordinated_redis_path = !coordinated;
    let a = Arc::new(TestApp::spawn(settings.clone()).await.expect("replica a"));
    // Replica b: the same database, Redis through the proxy.
    let mut sb = settings.clone();
    sb.database_url = a.settings.database_url.clone();
    sb.redis_url = proxy.redis_url();
    let b = Arc::new(
        TestApp::spawn_with_gateway(sb, a.gateway.clone())
            .await
            .expect("replica b"),
    );
    let show = a
        .seed_show(21, 20, chrono::Duration::days(2))
        .await
        .expect("seed");
    fast_path_on_both(&a, &b, "at the start").await;

    // Clients hold random pairs through either replica and give half of
    // them back, so seats keep turning over.
    let churn = Churn::start(&[a.clone(), b.clone()], &show, 8, true);

    tokio::time::sleep(Duration::from_millis(800)).await;
    // A partition: b loses Redis, a still reaches it.
    proxy.cut();
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.lock_path().await == "postgres_only"
        })
        .await,
        "b's breaker must open"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    proxy.restore();
    fast_path_on_both(&a, &b, "after the partition").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // An outage: Redis dies for everyone and comes back empty.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart().expect("restart redis");
    fast_path_on_both(&a, &b, "after the outage").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let statuses = churn.stop().await;

    let paths: Vec<(chrono::DateTime<chrono::Utc>, String, i64)> = sqlx::query_as(
        "SELECT created_at, path, path_generation FROM holds ORDER BY created_at, id",
    )
    .fetch_all(&a.db)
    .await
    .expect("holds");
    let generation: i64 = sqlx::query_scalar("SELECT generation FROM redis_path_state")
        .fetch_one(&a.db)
        .await
        .expect("generation");
    let report = check(&a.db, &redis.url(), std::slice::from_ref(&show))
        .await
        .expect("check");
    let (Ok(a), Ok(b)) = (Arc::try_unwrap(a), Arc::try_unwrap(b)) else {
        panic!("replicas still shared");
    };
    b.app.stop().await;
    a.stop().await;
    Sale {
        paths,
        generation,
        statuses,
        report,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_switch_between_redis_and_postgres_as_one() {
    let sale = sale_through_a_partition_and_an_outage(true).await;
    let unexpected = other_than(&sale.statuses, &[201, 409, 503]);
    assert!(
        unexpected.is_empty(),
        "only 201/409/503: {:?}",
        sale.statuses
    );
    assert!(
        sale.count("redis") > 0 && sale.count("postgres") > 0,
        "both paths were used: {} redis, {} postgres",
        sale.count("redis"),
        sale.count("postgres")
    );
    // Every hold went through the path of the generation it committed in.
    let wrong: Vec<_> = sale
        .paths
        .iter()
        .filter(|(_, p, g)| (p == "redis") != (g % 2 == 0))
        .collect();
    assert!(
        wrong.is_empty(),
        "holds off their generation's path: {wrong:?}"
    );
    // The partition and the outage each switched the shard down and up.
    assert!(sale.generation >= 4, "generation {}", sale.generation);
    let inside = sale.redis_holds_inside_postgres_runs(chrono::Duration::milliseconds(500));
    assert_eq!(
        inside, 0,
        "redis-path holds while a replica was on Postgres alone"
    );
    // Redis and Postgres agree seat by seat; no seat is in two live holds.
    assert_eq!(sale.report, Default::default());
}

/// The negative control: replicas on their own breakers. While b is cut
/// off, a keeps taking holds through Redis between b's Postgres-only
/// holds, which the check above must see.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_uncoordinated_replicas_mix_paths() {
    let sale = sale_through_a_partition_and_an_outage(false).await;
    let inside = sale.redis_holds_inside_postgres_runs(chrono::Duration::milliseconds(500));
    assert!(
        inside > 0,
        "without the shard-wide switch, a's Redis-path holds land among b's \
         Postgres-only ones ({} redis, {} postgres)",
        sale.count("redis"),
        sale.count("postgres")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_leaders_lease_is_taken_over_within_ten_seconds() {
    let settings = test_settings().await.expect("settings");
    let a = TestApp::spawn(settings.clone()).await.expect("replica a");
    // A leader that renewed its lease a moment ago and then died: its
    // lease runs for the default 5 s and nobody renews it.
    sqlx::query(
        "INSERT INTO shard_leases (job, holder, epoch, expires_at)
         VALUES ('redis-path', 'dead-replica', 100, now() + interval '5 seconds')
         ON CONFLICT (job) DO UPDATE
            SET holder = 'dead-replica', epoch = shard_leases.epoch + 100,
                expires_at = now() + interval '5 seconds', acquired_at = now()",
    )
    .execute(&a.db)
    .await
    .expect("plant the dead leader");
    let started = std::time::Instant::now();
    let taken = eventually(Duration::from_secs(10), || async {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM shard_leases WHERE job = 'redis-path'")
                .fetch_optional(&a.db)
                .await
                .expect("lease");
        holder.is_some_and(|h| h != "dead-replica")
    })
    .await;
    assert!(taken, "the lease must be taken over within 10 s");
    let waited = started.elapsed();
    // Not before the dead leader's lease ran out.
    assert!(
        waited >= Duration::from_secs(4),
        "taken over after {waited:?}"
    );
    a.stop().await;
}

/// A leader that paused past its lease cannot write: its fenced
/// transaction holds a takeover back while it runs, and after the
/// takeover its epoch matches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_leaders_writes_are_fenced() {
    use region_core::lease::{FenceError, Lease};
    let app = TestApp::default().await.expect("app");
    let ttl = Duration::from_millis(300);
    let one = Lease::new(app.db.clone(), "test-job", "one", ttl);
    let two = Lease::new(app.db.clone(), "test-job", "two", ttl);
    let term = one
        .acquire(Duration::ZERO)
        .await
        .expect("acquire")
        .expect("free");
    assert!(two
        .acquire(Duration::ZERO)
        .await
        .expect("acquire")
        .is_none());

    // `one` fences a transaction, then stalls in it past its lease.
    let mut tx = app.db.begin().await.expect("begin");
    term.fence(&mut tx).await.expect("still the leader");
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let taker = tokio::spawn(async move { two.acquire(Duration::ZERO).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !taker.is_finished(),
        "a takeover waits for the fenced transaction"
    );
    tx.commit().await.expect("commit");
    let new = taker
        .await
        .expect("join")
        .expect("acquire")
        .expect("taken over");
    assert_eq!(new.epoch, term.epoch + 1);

    // Woken up, `one` still thinks it leads; its next write is refused.
    let mut tx = app.db.begin().await.expect("begin");
    match term.fence(&mut tx).await {
        Err(FenceError::Lost { epoch, .. }) => assert_eq!(epoch, term.epoch),
        other => panic!("a stale term must be fenced: {other:?}"),
    }
    drop(tx);
    app.stop().await;
}
