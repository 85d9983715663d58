//! Buyers holding random pairs of adjacent seats in a loop (rows A-T,
//! seats 1-20 of a show seeded with at least 20 rows of 20), until told
//! to stop, for the fault tests that kill or cut Redis under load. Each
//! answer is counted by the phase the test says it is in.

use crate::{user, TestApp};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::seed::row_label;
use tokio::task::JoinHandle;

/// Answers by (phase, status); status 0 is no answer at all.
pub type Statuses = BTreeMap<(&'static str, u16), usize>;

/// Holds each buyer keeps at most with `give_back`: 8 pairs, so 8 buyers
/// keep at most 128 of the 400 seats held.
pub const KEPT_HOLDS: usize = 8;

/// The running buyers.
pub struct Churn {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<&'static str>>,
    statuses: Arc<Mutex<Statuses>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Churn {
    /// `clients` buyers on `show`, client `c` through `apps[c % n]`; with
    /// `give_back`, each gives half of its holds back at once and keeps at
    /// most [`KEPT_HOLDS`] of the rest (giving back its oldest), so seats
    /// keep turning over however long a fault lasts: a test that waits out
    /// a slow failover must not find the show sold out by its own buyers.
    /// The phase starts as `"before"`.
    pub fn start(apps: &[Arc<TestApp>], show: &str, clients: u64, give_back: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new("before"));
        let statuses: Arc<Mutex<Statuses>> = Arc::default();
        let tasks = (0..clients)
            .map(|c| {
                let app = apps[(c as usize) % apps.len()].clone();
                let (show, stop, phase, statuses) = (
                    show.to_owned(),
                    stop.clone(),
                    phase.clone(),
                    statuses.clone(),
                );
                tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(c);
                    let token = user(&format!("client-{c}"));
                    let mut kept = VecDeque::new();
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
                        let id = body["hold_id"].as_str().map(str::to_owned);
                        if let (true, 201, Some(id)) = (give_back, status, id) {
                            kept.push_back(id);
                            let give = if rng.gen_bool(0.5) {
                                kept.pop_back()
                            } else if kept.len() > KEPT_HOLDS {
                                kept.pop_front()
                            } else {
                                None
                            };
                            if let Some(id) = give {
                                let _ = app.on_hold(reqwest::Method::DELETE, &token, &id, "").await;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            phase,
            statuses,
            tasks,
        }
    }

    /// Answers from now on count under `phase`.
    pub fn phase(&self, phase: &'static str) {
        *self.phase.lock().expect("phase") = phase;
    }

    /// Stops the buyers and returns what they were answered.
    pub async fn stop(self) -> Statuses {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("buyer");
        }
        let statuses = self.statuses.lock().expect("stats").clone();
        statuses
    }
}

/// The answers other than `ok` (for an assertion's message).
pub fn other_than(statuses: &Statuses, ok: &[u16]) -> Vec<((&'static str, u16), usize)> {
    statuses
        .iter()
        .filter(|((_, s), _)| !ok.contains(s))
        .map(|(k, v)| (*k, *v))
        .collect()
}

/// After a Redis fault: the Redis at `redis_url` agrees with Postgres seat
/// by seat (every live hold re-asserted, no stale key), no seat is in two
/// live holds, and a new hold's lock lands there. Row U is left alone by
/// the churn (rows A-T), so the new hold is free.
pub async fn assert_recovered_on(app: &TestApp, redis_url: &str, show: &str) {
    assert_recovered_on_each(app, &[redis_url], show).await;
}

/// [`assert_recovered_on`] for seat locks kept on several Redis servers
/// (Redlock): each of `redis_urls` agrees with Postgres and has the new
/// hold's lock.
pub async fn assert_recovered_on_each(app: &TestApp, redis_urls: &[&str], show: &str) {
    for redis_url in redis_urls {
        let report = testkit::invariants::check(&app.db, redis_url, &[show.to_owned()])
            .await
            .expect("check");
        assert_eq!(
            report,
            Default::default(),
            "{redis_url} agrees with Postgres"
        );
    }
    let (s, body) = app
        .hold(&user("late"), show, &["U20", "U19"])
        .await
        .expect("hold");
    assert_eq!(s, 201, "{body}");
    for redis_url in redis_urls {
        let mut conn = redis::Client::open(*redis_url)
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let owner: Option<String> = redis::cmd("GET")
            .arg(format!("seat:{{{show}}}:U20"))
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(
            owner.as_deref(),
            body["hold_id"].as_str(),
            "the new lock is in {redis_url}"
        );
    }
}
