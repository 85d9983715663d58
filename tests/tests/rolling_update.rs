//! A rolling update under booking load (issue 14): two replicas of one
//! shard (real `region-core` processes on one database and one Redis),
//! buyers holding, paying and releasing seats through a load balancer
//! that, like a Kubernetes Service, sends each request to a ready
//! replica. Each replica in turn is taken out of the rotation (the
//! endpoint removal that the pod's `preStop` pause waits for), sent
//! SIGTERM while requests are still running on it, left to drain and
//! exit, started again and put back once `/readyz` answers.
//!
//! To be sure the drain has work to do, the payment gateway is frozen
//! (SIGSTOP) just before each SIGTERM, so checkouts are held open inside
//! the replica, and resumed a moment after: those checkouts must still
//! be answered, by the replica that is shutting down.
//!
//! What must hold: no request fails (no 5xx, no connection error), every
//! hold a buyer was given and kept is still live in Postgres with its
//! seats locked in Redis, every booking confirmed is there, and no seat is
//! held twice. The negative control does the same with SIGKILL instead
//! of SIGTERM and sees the running checkouts fail: the drain is what
//! saves them.

use e2e::region_process::{region_core_spec, ShardParts};
use e2e::sandbox_process::SandboxProcess;
use e2e::{fresh_database, token};
use rand::{Rng, SeedableRng};
use region_core::auth::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::api::Api;
use testkit::process::{free_port, ServiceProcess};
use testkit::redis_server::RedisServer;
use testkit::seed;
use uuid::Uuid;

const ROWS: usize = 30;
const PER_ROW: u16 = 20;
const BUYERS: u64 = 8;
/// Holds a buyer keeps at most (giving back its oldest): 8 buyers keep at
/// most 96 of the 600 seats, so the show never sells out mid-test.
const KEPT: usize = 6;
const READY: Duration = Duration::from_secs(30);
/// Longer than the region core's own drain (10 s) plus its background
/// jobs' shutdown: the `terminationGracePeriodSeconds` of the test.
const GRACE: Duration = Duration::from_secs(25);

/// The load balancer: replicas in rotation, and the checkouts each one
/// is answering right now.
struct Endpoints {
    urls: Vec<String>,
    ready: Vec<AtomicBool>,
    next: AtomicUsize,
    checkouts_running: Vec<AtomicUsize>,
}

impl Endpoints {
    fn new(urls: Vec<String>) -> Self {
        let n = urls.len();
        Self {
            urls,
            ready: (0..n).map(|_| AtomicBool::new(true)).collect(),
            next: AtomicUsize::new(0),
            checkouts_running: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// The next ready replica, round robin.
    fn pick(&self) -> Option<usize> {
        let n = self.urls.len();
        (0..n)
            .map(|_| self.next.fetch_add(1, Ordering::Relaxed) % n)
            .find(|&i| self.ready[i].load(Ordering::SeqCst))
    }

    fn set_ready(&self, i: usize, ready: bool) {
        self.ready[i].store(ready, Ordering::SeqCst);
    }
}

/// What the buyers were answered and what they still own.
#[derive(Default)]
struct Tally {
    /// Answers by status (0: no answer, the connection failed).
    statuses: BTreeMap<u16, usize>,
    /// The first few failures, for the assertion message.
    failures: Vec<String>,
    /// Holds given and kept (not released, not paid for).
    kept: Vec<String>,
    /// Bookings confirmed (each checkout answered 201).
    bookings: Vec<String>,
}

impl Tally {
    fn count(&mut self, what: &str, status: u16, body: &Value) {
        *self.statuses.entry(status).or_default() += 1;
        if (status == 0 || status >= 500) && self.failures.len() < 10 {
            self.failures.push(format!("{what}: {status} {body}"));
        }
    }

    fn failed(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s == 0 || **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A buyer's way to the shard: the balancer, a client, a token.
struct Client {
    lb: Arc<Endpoints>,
    http: reqwest::Client,
    who: String,
}

impl Client {
    /// One request through the balancer: status (0 when it got no
    /// answer) and body. `checkout` counts it among the replica's running
    /// checkouts while it runs.
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        checkout: bool,
    ) -> (u16, Value) {
        let Some(i) = self.lb.pick() else {
            return (0, json!("no replica in rotation"));
        };
        if checkout {
            self.lb.checkouts_running[i].fetch_add(1, Ordering::SeqCst);
        }
        let auth = format!("Bearer {}", self.who);
        let answer = Api::with_client(&self.lb.urls[i], self.http.clone())
            .send(method, path, Some(&auth), key, body.as_ref())
            .await;
        if checkout {
            self.lb.checkouts_running[i].fetch_sub(1, Ordering::SeqCst);
        }
        match answer {
            Ok(r) => (
                r.status.as_u16(),
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            ),
            Err(e) => (0, json!(format!("{e:#}"))),
        }
    }
}

/// A buyer: holds two adjacent seats, then pays (2 in 5), releases (1 in
/// 5) or keeps them, until told to stop.
async fn buyer(
    n: u64,
    lb: Arc<Endpoints>,
    show: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let client = Client {
        lb,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        who: token(&format!("buyer-{n}"), Role::User),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    let mut kept = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        let row = seed::row_label(rng.gen_range(0..ROWS));
        let s = rng.gen_range(1..PER_ROW);
        let seats = json!({ "seats": [format!("{row}{s}"), format!("{row}{}", s + 1)] });
        let path = format!("/v1/shows/{show}/holds");
        let (status, body) = client
            .send(Method::POST, &path, None, Some(seats), false)
            .await;
        tally.lock().expect("tally").count("hold", status, &body);
        let Some(hold) = body["hold_id"].as_str().filter(|_| status == 201) else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let hold = hold.to_owned();
        let roll = rng.gen_range(0..5);
        if roll < 2 {
            let key = Uuid::new_v4().to_string();
            let path = format!("/v1/holds/{hold}/checkout");
            let pay = json!({ "payment_method": "pm_card_ok" });
            let (status, body) = client
                .send(Method::POST, &path, Some(&key), Some(pay), true)
                .await;
            let mut t = tally.lock().expect("tally");
            t.count("checkout", status, &body);
            if status == 201 {
                let id = body["id"].as_str().expect("a booking answers with its id");
                t.bookings.push(id.to_owned());
            }
        } else if roll < 3 {
            let path = format!("/v1/holds/{hold}");
            let (status, body) = client.send(Method::DELETE, &path, None, None, false).await;
            tally.lock().expect("tally").count("release", status, &body);
        } else {
            kept.push_back(hold);
            if kept.len() > KEPT {
                let oldest: String = kept.pop_front().expect("oldest");
                let path = format!("/v1/holds/{oldest}");
                let (status, body) = client.send(Method::DELETE, &path, None, None, false).await;
                tally.lock().expect("tally").count("release", status, &body);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tally.lock().expect("tally").kept.extend(kept);
}

/// Two replicas of one shard, their gateway, Redis and database.
struct Shard {
    replicas: Vec<ServiceProcess>,
    lb: Arc<Endpoints>,
    gateway: SandboxProcess,
    redis: RedisServer,
    db: sqlx::PgPool,
    show: String,
}

impl Shard {
    async fn start() -> Self {
        let redis = RedisServer::start().expect("redis");
        let database_url = fresh_database().await.expect("database");
        let gateway = SandboxProcess::start(None).await.expect("gateway");
        let mut replicas = Vec::new();
        for i in 0..2 {
            let port = free_port().expect("port");
            let shard = ShardParts {
                database_url: &database_url,
                redis_url: &redis.url(),
                gateway_url: &gateway.url,
                shard_code: "RUP",
            };
            let extra = [
                ("REGION_REPLICA_ID", format!("rup-{i}")),
                ("REGION_HOLD_TTL_SECS", "600".into()),
            ];
            let spec = region_core_spec(port, &shard, &extra).expect("region-core binary");
            replicas.push(ServiceProcess::start(spec, READY).await.expect("replica"));
        }
        let lb = Arc::new(Endpoints::new(
            replicas.iter().map(|r| r.url().to_owned()).collect(),
        ));
        let show = seed_show(&lb.urls[0]).await;
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&database_url)
            .await
            .expect("db");
        Self {
            replicas,
            lb,
            gateway,
            redis,
            db,
            show,
        }
    }

    /// Starts the buyers.
    fn load(&self) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let buyers = (0..BUYERS)
            .map(|n| {
                tokio::spawn(buyer(
                    n,
                    self.lb.clone(),
                    self.show.clone(),
                    stop.clone(),
                    tally.clone(),
                ))
            })
            .collect();
        Load {
            stop,
            tally,
            buyers,
        }
    }

    /// Freezes the gateway until replica `i` has checkouts running (they
    /// wait on the charge), then takes it out of the rotation: the
    /// checkouts now running there are the drain's work. Their number.
    async fn hold_checkouts_open_on(&self, i: usize) -> usize {
        self.gateway.freeze();
        // Checkouts already past their charge finish on their own; the
        // ones that reach the gateway from now on wait for it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.lb.checkouts_running[i].load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no checkout reached replica {i}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.lb.set_ready(i, false);
        // Let requests already routed there arrive (the endpoint removal's
        // propagation, which `preStop` waits out in Kubernetes).
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.lb.checkouts_running[i].load(Ordering::SeqCst)
    }

    /// Starts replica `i` again and puts it back once ready.
    async fn bring_back(&mut self, i: usize) -> Duration {
        let started = Instant::now();
        self.replicas[i].restart(READY).await.expect("restart");
        self.lb.set_ready(i, true);
        started.elapsed()
    }

    /// Every kept hold live in Postgres, every booking confirmed, and
    /// Redis agreeing with Postgres seat by seat.
    async fn assert_nothing_lost(&self, t: &Tally) {
        let kept: Vec<Uuid> = t.kept.iter().map(|h| h.parse().expect("uuid")).collect();
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM holds WHERE id = ANY($1) AND state = 'ACTIVE' AND expires_at > now()",
        )
        .bind(&kept)
        .fetch_one(&self.db)
        .await
        .expect("holds");
        assert_eq!(live as usize, kept.len(), "every kept hold is live");
        let bookings: Vec<Uuid> = t
            .bookings
            .iter()
            .map(|b| b.parse().expect("uuid"))
            .collect();
        let confirmed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE id = ANY($1) AND status = 'CONFIRMED'",
        )
        .bind(&bookings)
        .fetch_one(&self.db)
        .await
        .expect("bookings");
        assert_eq!(
            confirmed as usize,
            t.bookings.len(),
            "every confirmed booking is there"
        );
        let report = testkit::invariants::check(
            &self.db,
            &self.redis.url(),
            std::slice::from_ref(&self.show),
        )
        .await
        .expect("check");
        assert_eq!(report, Default::default(), "Redis agrees with Postgres");
    }
}

/// The running buyers.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    buyers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for b in self.buyers {
            b.await.expect("buyer");
        }
        Arc::try_unwrap(self.tally)
            .ok()
            .expect("buyers done")
            .into_inner()
            .expect("tally")
    }
}

async fn seed_show(url: &str) -> String {
    let api = Api::new(url).expect("api");
    let op = format!("Bearer {}", token("rolling-operator", Role::Operator));
    let city = seed::ensure_city(&api, &op, "rup", "Rolling City")
        .await
        .expect("city");
    let place = seed::ensure_place(
        &api,
        &op,
        &city,
        "Rolling Arena",
        "Asia/Kolkata",
        "Main",
        &seed::grid(ROWS, PER_ROW, |_| "REGULAR"),
    )
    .await
    .expect("place");
    let movie = seed::create_movie(&api, &op, "Rolling", 120, "en")
        .await
        .expect("movie");
    let starts = chrono::Utc::now() + chrono::Duration::days(2);
    seed::create_show(
        &api,
        &op,
        place.screen_id,
        movie,
        starts,
        &[("REGULAR", 25_000)],
        "INR",
    )
    .await
    .expect("show")
    .id
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_under_load_fails_no_request_and_loses_no_hold() {
    let mut shard = Shard::start().await;
    let load = shard.load();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut steps = Vec::new();
    for i in 0..2 {
        let running = shard.hold_checkouts_open_on(i).await;
        assert!(running > 0, "checkouts wait on the frozen gateway");
        let signalled = Instant::now();
        shard.replicas[i].signal("-TERM");
        // The drain must wait for them: they are answered once the
        // gateway answers.
        tokio::time::sleep(Duration::from_millis(500)).await;
        shard.gateway.resume();
        let exit = shard.replicas[i].terminate(GRACE).await;
        let drained = signalled.elapsed();
        assert!(
            exit.is_some_and(|s| s.success()),
            "replica {i} exits by itself, cleanly, within the grace period: {exit:?}"
        );
        let back = shard.bring_back(i).await;
        steps.push(json!({
            "replica": i,
            "checkouts_running_at_sigterm": running,
            "drain_ms": drained.as_millis() as u64,
            "ready_again_ms": back.as_millis() as u64,
        }));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let t = load.finish().await;
    println!(
        "ROLLING: {}",
        json!({ "steps": steps, "answers": t.statuses, "kept_holds": t.kept.len(), "bookings": t.bookings.len() })
    );
    assert_eq!(t.failed(), 0, "no request failed: {:?}", t.failures);
    assert!(
        !t.bookings.is_empty() && !t.kept.is_empty(),
        "the load bought and held"
    );
    shard.assert_nothing_lost(&t).await;
}

/// The negative control: the same, with SIGKILL for SIGTERM (a pod killed
/// without its grace period). The checkouts running on the killed
/// replica get no answer: it is the drain that answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_a_killed_replica_fails_its_running_requests() {
    let mut shard = Shard::start().await;
    let load = shard.load();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = shard.hold_checkouts_open_on(0).await;
    shard.replicas[0].kill().await;
    shard.gateway.resume();
    shard.bring_back(0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = load.finish().await;
    println!(
        "ROLLING (SIGKILL): {}",
        json!({ "checkouts_running_at_sigkill": running, "answers": t.statuses, "failed": t.failed() })
    );
    assert!(running > 0);
    assert!(
        t.failed() > 0,
        "checkouts running on a killed replica fail: {:?}",
        t.statuses
    );
}
