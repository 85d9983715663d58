//! Redlock (issue 13, Q9): the seat locks over three independent Redis
//! servers (`REGION_REDLOCK_URLS`), the seat maps on the shard's Redis.
//!
//! - One lock server is killed under concurrent overlapping holds: the
//!   other two are a majority, so holds go on through Redis (the shard
//!   never switches to the Postgres-only path); no seat is held twice and
//!   both survivors agree with Postgres.
//! - Two of three are killed: no majority, so the breaker opens and the
//!   shard moves to the Postgres-only path; holds go on there. The two
//!   come back empty; the switch back re-asserts every live hold on all
//!   three, and the fast path resumes.
//! - The lock itself, with no Postgres behind it: a replica cut off from
//!   two of the three servers must not be granted a seat that the rest
//!   grant to someone else. Its negative control sets the quorum to one
//!   server (`REGION_UNSAFE_REDLOCK_QUORUM`) and sees the same seats
//!   locked twice.
//! - A lock server that restarts empty forgets the locks it held: two of
//!   the three restart after a hold was granted by a majority that
//!   included them, and a second client asks for the same seat. The
//!   restarted servers' grants don't count until the longest lock could
//!   have expired, so it is refused; its negative control (no recovery
//!   window) sees the seat locked twice. A full re-assertion's mark makes
//!   them trusted again at once.
//! - Start-up refuses any count of lock servers but 3 or 5.
//!
//! (docs/adr/0017.)

use e2e::churn::{assert_recovered_on_each, other_than, Churn};
use e2e::redis_server::RedisServer;
use e2e::{eventually, fault_settings, TestApp};
use region_core::path_switch;
use region_core::redis_path::seat_key;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Three private lock servers (the shared Redis keeps the seat maps).
fn three_servers() -> [RedisServer; 3] {
    [(); 3].map(|_| RedisServer::start().expect("redis-server"))
}

fn urls(servers: &[RedisServer]) -> Vec<String> {
    servers.iter().map(RedisServer::url).collect()
}

/// A region core whose seat locks go to `lock_urls`.
async fn spawn_with_redlock(lock_urls: Vec<String>, quorum: Option<usize>) -> TestApp {
    let mut settings = fault_settings().await.expect("settings");
    settings.redlock_urls = lock_urls;
    settings.unsafe_redlock_quorum = quorum;
    TestApp::spawn(settings).await.expect("app")
}

async fn stop(app: Arc<TestApp>) {
    match Arc::try_unwrap(app) {
        Ok(app) => app.stop().await,
        Err(_) => panic!("app still shared"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_go_on_through_the_quorum_when_one_server_dies() {
    let mut servers = three_servers();
    let app = Arc::new(spawn_with_redlock(urls(&servers), None).await);
    let show = app
        .seed_show(21, 20, chrono::Duration::days(2))
        .await
        .expect("seed");
    assert!(app.wait_for_fast_path().await, "fast path through Redlock");
    let generation = path_switch::read(&app.db).await.expect("generation");

    let churn = Churn::start(std::slice::from_ref(&app), &show, 6, true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    churn.phase("one_down");
    servers[0].kill();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let statuses = churn.stop().await;

    let bad = other_than(&statuses, &[201, 409]);
    assert!(bad.is_empty(), "only 201/409: {statuses:?}");
    assert!(
        statuses.get(&("one_down", 201)).copied().unwrap_or(0) > 0,
        "holds go on with one server down: {statuses:?}"
    );
    // And at speed: the dead server is left out, not waited for on every
    // hold (waiting out its timeout each time made it 20 times slower).
    let per_second = |phase: &str, secs: f64| {
        let n: usize = statuses
            .iter()
            .filter(|((p, _), _)| *p == phase)
            .map(|(_, n)| n)
            .sum();
        n as f64 / secs
    };
    assert!(
        per_second("one_down", 2.0) > per_second("before", 0.8) / 4.0,
        "a dead server does not slow every hold down: {statuses:?}"
    );
    assert_eq!(
        path_switch::read(&app.db).await.expect("generation"),
        generation,
        "the shard never left the fast path"
    );
    assert_eq!(app.lock_path().await, "redis");
    // No seat in two live holds; both survivors agree with Postgres and
    // take the next hold's lock.
    let survivors = urls(&servers[1..]);
    let survivors: Vec<&str> = survivors.iter().map(String::as_str).collect();
    assert_recovered_on_each(&app, &survivors, &show).await;
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_fall_back_to_postgres_when_a_majority_is_down() {
    let mut servers = three_servers();
    let app = Arc::new(spawn_with_redlock(urls(&servers), None).await);
    let show = app
        .seed_show(21, 20, chrono::Duration::days(2))
        .await
        .expect("seed");
    assert!(app.wait_for_fast_path().await, "fast path through Redlock");

    let churn = Churn::start(std::slice::from_ref(&app), &show, 6, true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    churn.phase("majority_down");
    servers[0].kill();
    servers[1].kill();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.lock_path().await == "postgres_only"
        })
        .await,
        "no quorum: the shard moves to the Postgres-only path"
    );
    churn.phase("postgres_only");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    churn.phase("back");
    // They come back empty (no persistence): the switch back re-asserts.
    servers[0].restart().expect("restart");
    servers[1].restart().expect("restart");
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.lock_path().await == "redis"
        })
        .await,
        "the fast path resumes once a majority answers"
    );
    churn.phase("after");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let statuses = churn.stop().await;

    let bad = other_than(&statuses, &[201, 409, 503]);
    assert!(bad.is_empty(), "only 201/409/503: {statuses:?}");
    for phase in ["postgres_only", "after"] {
        assert!(
            statuses.get(&(phase, 201)).copied().unwrap_or(0) > 0,
            "holds go on ({phase}): {statuses:?}"
        );
    }
    assert!(
        path_switch::read(&app.db).await.expect("generation") >= 2,
        "the shard went down and back up"
    );
    // All three (the two restarted empty) agree with Postgres seat by
    // seat, no seat is in two live holds, and a new lock is on all three.
    let all = urls(&servers);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_recovered_on_each(&app, &all, &show).await;
    stop(app).await;
}

/// The lock alone, no Postgres behind it (and no breaker: the quorum
/// count itself): a replica that reaches only the first lock server (its
/// other two addresses lead nowhere, as in a partition) tries each seat
/// first, then a replica that reaches all three. Returns how many seats
/// both were granted.
async fn seats_locked_by_both_sides_of_a_partition(quorum: Option<usize>) -> usize {
    let servers = three_servers();
    let nowhere: Vec<String> = (0..2)
        .map(|_| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            format!("redis://127.0.0.1:{port}")
        })
        .collect();
    let cut_off = spawn_with_redlock(
        vec![servers[0].url(), nowhere[0].clone(), nowhere[1].clone()],
        quorum,
    )
    .await;
    let whole = spawn_with_redlock(urls(&servers), quorum).await;
    let show = shared::ShowId(Uuid::now_v7());
    let ttl = Duration::from_secs(60);
    let (a, b) = (&cut_off.app.state.redis, &whole.app.state.redis);
    let (cut_off_lock, whole_lock) = (a.redlock().expect("on"), b.redlock().expect("on"));
    let granted = |r: &Result<Vec<usize>, _>| matches!(r, Ok(taken) if taken.is_empty());
    let mut both = 0;
    for n in 1..=20 {
        let keys = [seat_key(show, &format!("A{n}"))];
        let first = cut_off_lock
            .acquire(&keys, &Uuid::now_v7().to_string(), ttl)
            .await;
        let second = whole_lock
            .acquire(&keys, &Uuid::now_v7().to_string(), ttl)
            .await;
        if granted(&first) && granted(&second) {
            both += 1;
        }
    }
    cut_off.stop().await;
    whole.stop().await;
    both
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_of_the_servers_cannot_grant_a_lock() {
    assert_eq!(
        seats_locked_by_both_sides_of_a_partition(None).await,
        0,
        "no seat locked on both sides of the partition"
    );
}

/// The negative control: a quorum of one server, and the same seats are
/// locked on both sides of the partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_a_quorum_of_one_locks_seats_twice() {
    assert_eq!(
        seats_locked_by_both_sides_of_a_partition(Some(1)).await,
        20,
        "with a quorum of one, every seat is locked on both sides"
    );
}

#[tokio::test]
async fn only_three_or_five_lock_servers_pass_the_start_up_check() {
    let mut settings = fault_settings().await.expect("settings");
    let urls = |n: u16| -> Vec<String> {
        (0..n)
            .map(|i| format!("redis://127.0.0.1:{}", 7000 + i))
            .collect()
    };
    for n in [1, 2, 4, 6] {
        settings.redlock_urls = urls(n);
        let err = settings.validate().expect_err("refused");
        assert!(err.to_string().contains("REGION_REDLOCK_URLS"), "{err}");
    }
    for n in [0, 3, 5] {
        settings.redlock_urls = urls(n);
        settings.validate().expect("accepted");
    }
    // The negative control's quorum needs Redlock on.
    settings.redlock_urls = Vec::new();
    settings.unsafe_redlock_quorum = Some(1);
    let err = settings.validate().expect_err("refused");
    assert!(
        err.to_string().contains("REGION_UNSAFE_REDLOCK_QUORUM"),
        "{err}"
    );
}

/// One lock server restarted empty, one a hold's majority never reached:
/// together they could grant `h1`'s seat to `h2`. Returns whether they
/// did (tries for a few seconds, as a client would retry).
async fn granted_twice_after_a_restart(window: Duration) -> bool {
    use region_core::redlock::Redlock;
    let mut servers = three_servers();
    let lock = Redlock::new(&urls(&servers), Duration::from_millis(200))
        .expect("redlock")
        .with_recovery_window(window);
    let ttl = Duration::from_secs(30);
    let key = format!("seat:{{{}}}:A1", Uuid::new_v4());
    // The client meets all three (a first sight is trusted).
    let warm = format!("seat:{{{}}}:Z9", Uuid::new_v4());
    assert_eq!(lock.acquire(&[warm], "warm", ttl).await, Ok(vec![]));
    // h1 is granted by a majority of two: the third is down.
    servers[2].kill();
    let got = eventually(Duration::from_secs(5), || async {
        lock.acquire(std::slice::from_ref(&key), "h1", ttl).await == Ok(vec![])
    })
    .await;
    assert!(got, "h1 should be granted by the two servers that are up");
    // The third comes back, and one of h1's majority restarts empty.
    servers[2].restart().expect("restart");
    servers[1].restart().expect("restart");
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        if lock.acquire(std::slice::from_ref(&key), "h2", ttl).await == Ok(vec![]) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server that kept its memory still says h1.
    let mut c = redis::Client::open(servers[0].url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let owner: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("get");
    assert_eq!(owner.as_deref(), Some("h1"));

    // A full re-assertion (here its mark alone) makes the restarted ones
    // trusted at once: a free seat is granted through them again.
    servers[0].kill();
    let mut pipe = redis::pipe();
    Redlock::mark_reasserted(&mut pipe);
    let marked = eventually(Duration::from_secs(5), || async {
        lock.pipe_on_all(&pipe).await.is_ok()
    })
    .await;
    assert!(marked, "the mark should reach the two servers that are up");
    let free = format!("seat:{{{}}}:B1", Uuid::new_v4());
    let after = eventually(Duration::from_secs(5), || async {
        lock.acquire(std::slice::from_ref(&free), "h3", ttl).await == Ok(vec![])
    })
    .await;
    assert!(after, "re-asserted servers should grant again");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_empty_does_not_grant_a_held_seat_again() {
    assert!(
        !granted_twice_after_a_restart(Duration::from_secs(60)).await,
        "a seat was granted twice through a lock server that restarted empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_without_a_recovery_window_a_seat_is_granted_twice() {
    assert!(
        granted_twice_after_a_restart(Duration::ZERO).await,
        "without the recovery window the restarted servers should grant h2 (the gap this closes)"
    );
}
