//! Group commit (`region_core::group_commit`) against real Postgres, and
//! the checkout's use of it: jobs share transactions (`txid_current()`),
//! a failing job leaves nothing while the others of its batch commit, a
//! full queue is refused at once, and a purchase's confirmation (the
//! charge recorded, the booking, the key's answer) is written by one
//! savepoint of one transaction (one `xmin`). A kind that writes a whole
//! batch together does so in one statement, and a batch that fails
//! together is written job by job, leaving nothing of the attempt.

use e2e::money::{assert_money_safe, checkout};
use e2e::{user, TestApp};
use futures::future::BoxFuture;
use futures::FutureExt;
use region_core::error::ApiError;
use region_core::group_commit::{GroupCommit, Job, Sizing};
use sqlx::PgConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Writes two rows; fails after writing them when `fail`; job 0 first
/// waits at the gate (so the others queue behind it). With `together`,
/// a batch of them is written with one INSERT (`run_together`), `fail`
/// jobs left to run alone (and fail there); a batch holding a `spoil`
/// job fails together after writing, so the whole batch must run job by
/// job and the together attempt must leave nothing.
#[derive(Default)]
struct Probe {
    id: i32,
    fail: bool,
    spoil: bool,
    together: bool,
}

struct Gate {
    /// Job 0 says it is inside its batch.
    entered: Notify,
    /// Job 0 waits for a permit.
    open: Semaphore,
}

impl Gate {
    /// Job 0 stops here until the test lets it go.
    async fn pass(&self, ids: impl IntoIterator<Item = i32>) {
        if ids.into_iter().any(|id| id == 0) {
            self.entered.notify_one();
            self.open.acquire().await.expect("gate").forget();
        }
    }
}

async fn insert_rows(conn: &mut PgConnection, rows: Vec<i32>) -> Result<(), sqlx::Error> {
    // txid_current() is the top-level transaction's id (a savepoint's
    // rows carry their subtransaction's xmin).
    sqlx::query("INSERT INTO gc_probe (id, tx) SELECT unnest($1::int4[]), txid_current()")
        .bind(rows)
        .execute(conn)
        .await
        .map(|_| ())
}

impl Job for Probe {
    type Ctx = Gate;
    type Out = i32;

    fn shard(&self) -> u64 {
        0
    }

    fn run<'a>(
        &'a self,
        gate: &'a Gate,
        conn: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<i32, ApiError>> {
        async move {
            gate.pass([self.id]).await;
            insert_rows(conn, vec![self.id, self.id + 1000]).await?;
            if self.fail {
                return Err(ApiError::unprocessable("probe_failed", "on purpose"));
            }
            Ok(self.id)
        }
        .boxed()
    }

    fn after_commit<'a>(_: &'a Gate, _: &'a [i32]) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }

    fn run_together<'a>(
        gate: &'a Gate,
        conn: &'a mut PgConnection,
        jobs: &'a [&'a Self],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Option<i32>>>> {
        async move {
            if !jobs.iter().all(|j| j.together) {
                return Ok(jobs.iter().map(|_| None).collect());
            }
            gate.pass(jobs.iter().map(|j| j.id)).await;
            let rows = jobs
                .iter()
                .filter(|j| !j.fail)
                .flat_map(|j| [j.id, j.id + 1000])
                .collect();
            insert_rows(conn, rows).await?;
            anyhow::ensure!(!jobs.iter().any(|j| j.spoil), "spoilt on purpose");
            Ok(jobs.iter().map(|j| (!j.fail).then_some(j.id)).collect())
        }
        .boxed()
    }
}

async fn probe_db() -> sqlx::PgPool {
    let url = e2e::fresh_database().await.expect("database");
    let db = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query("CREATE TABLE gc_probe (id int PRIMARY KEY, tx bigint NOT NULL)")
        .execute(&db)
        .await
        .expect("table");
    db
}

fn gate() -> Arc<Gate> {
    Arc::new(Gate {
        entered: Notify::new(),
        open: Semaphore::new(0),
    })
}

/// A fresh probe table and one gated writer with `batch_max` and `queue`;
/// job 0 (`together` as given) is submitted and has entered its batch
/// (holding the writer) when this returns.
async fn gated_writer(
    batch_max: usize,
    queue: usize,
    together: bool,
) -> (
    sqlx::PgPool,
    Arc<Gate>,
    GroupCommit<Probe>,
    tokio::task::JoinHandle<Result<Result<i32, ApiError>, region_core::group_commit::Overloaded>>,
) {
    let db = probe_db().await;
    let gate = gate();
    let writers = GroupCommit::spawn(
        "probe",
        db.clone(),
        gate.clone(),
        Sizing {
            writers: 1,
            batch_max,
            queue,
        },
    );
    let first = {
        let w = writers.clone();
        tokio::spawn(async move {
            w.submit(Probe {
                together,
                ..Probe::default()
            })
            .await
        })
    };
    gate.entered.notified().await;
    (db, gate, writers, first)
}

/// What a run of probes left.
struct Run {
    /// Ids committed.
    ids: Vec<i32>,
    /// Transactions that wrote them.
    txs: i64,
    /// Distinct row versions' xmins after job 0's (a savepoint or a
    /// transaction each; one for a batch written together).
    writes_after_first: i64,
}

/// Runs jobs 0..n (every third failing; `together` as given; job `spoil`
/// spoiling its batch) through one writer with `batch_max`, job 0
/// holding the writer until the rest are queued.
async fn run_probes(n: i32, batch_max: usize, together: bool, spoil: Option<i32>) -> Run {
    let (db, gate, writers, first) = gated_writer(batch_max, 1024, together).await;
    let rest: Vec<_> = (1..n)
        .map(|id| {
            let w = writers.clone();
            tokio::spawn(async move {
                w.submit(Probe {
                    id,
                    fail: id % 3 == 0,
                    spoil: Some(id) == spoil,
                    together,
                })
                .await
            })
        })
        .collect();
    // Let the spawned submits reach the queue before job 0 lets go (a
    // late one only makes one more batch: the assertions allow for it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.open.add_permits(1);
    let mut answers = vec![first.await.expect("join")];
    for r in rest {
        answers.push(r.await.expect("join"));
    }
    for (id, a) in answers.iter().enumerate() {
        let a = a.as_ref().expect("queue has room");
        match (id % 3 == 0 && id != 0, a) {
            (true, Err(e)) => assert_eq!(e.code(), "probe_failed"),
            (false, Ok(got)) => assert_eq!(*got, id as i32),
            (fail, other) => panic!("job {id} (fail: {fail}) answered {other:?}"),
        }
    }
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .expect(sql)
        }
    };
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM gc_probe WHERE id < 1000 ORDER BY id")
        .fetch_all(&db)
        .await
        .expect("ids");
    let pairs = count(
        "SELECT count(*) FROM gc_probe a JOIN gc_probe b ON b.id = a.id + 1000 AND a.xmin = b.xmin",
    )
    .await;
    assert_eq!(pairs as usize, ids.len(), "a job's rows commit together");
    Run {
        ids,
        txs: count("SELECT count(DISTINCT tx) FROM gc_probe").await,
        writes_after_first: count(
            "SELECT count(DISTINCT xmin::text) FROM gc_probe WHERE id NOT IN (0, 1000)",
        )
        .await,
    }
}

/// The ids 0..n that do not fail.
fn landing(n: i32) -> Vec<i32> {
    (0..n).filter(|i| *i == 0 || i % 3 != 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_leaves_nothing_and_the_rest_commit_together() {
    let n = 30;
    let run = run_probes(n, 64, false, None).await;
    let expected = landing(n);
    assert_eq!(
        run.ids, expected,
        "failed jobs left nothing, the others all landed"
    );
    assert!(
        run.txs <= (expected.len() as i64) / 2,
        "{} jobs in {} transactions: not grouped",
        expected.len(),
        run.txs
    );
}

/// Negative control: with batches of one, the same jobs take one
/// transaction each, and the grouping check above would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_batches_of_one_commit_one_by_one() {
    let run = run_probes(12, 1, false, None).await;
    assert_eq!(run.txs, run.ids.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_at_once() {
    let (db, gate, writers, first) = gated_writer(1, 2, false).await;
    // Job 0 is in the writer; two more fill the queue.
    let queued: Vec<_> = (1..=2)
        .map(|id| {
            let w = writers.clone();
            tokio::spawn(async move {
                w.submit(Probe {
                    id,
                    ..Probe::default()
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = writers
        .submit(Probe {
            id: 3,
            ..Probe::default()
        })
        .await;
    assert!(refused.is_err(), "a full queue refuses, it does not wait");
    gate.open.add_permits(1);
    assert!(matches!(first.await.expect("join"), Ok(Ok(0))));
    for q in queued {
        assert!(matches!(q.await.expect("join"), Ok(Ok(_))));
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM gc_probe")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(n, 6, "the refused job wrote nothing");
}

/// Jobs written together share one statement's row versions (one xmin
/// for the whole batch after job 0's), and those the together path left
/// ran alone and failed without a trace. (The job-by-job runs above are
/// its negative control: there every job after the first has its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_written_together_and_what_it_leaves_runs_alone() {
    let n = 30;
    let run = run_probes(n, 64, true, None).await;
    assert_eq!(
        run.ids,
        landing(n),
        "failed jobs left nothing, the others landed"
    );
    assert!(
        run.writes_after_first <= 2,
        "{} jobs after the first in {} writes: not together",
        landing(n).len() - 1,
        run.writes_after_first
    );
}

/// Negative control and fallback at once: a batch that fails together
/// leaves nothing of that attempt, and every job then runs alone in its
/// own savepoint (one xmin each), the failing ones without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_together_is_written_job_by_job() {
    let n = 30;
    let run = run_probes(n, 64, true, Some(5)).await;
    let expected = landing(n);
    assert_eq!(run.ids, expected, "the spoilt attempt left nothing extra");
    assert!(
        run.writes_after_first >= (expected.len() - 2) as i64,
        "{} jobs in {} writes: the spoilt batch was not run job by job",
        expected.len() - 1,
        run.writes_after_first
    );
}

/// A show, and one hold of one seat for each of `buyers` buyers: their
/// (token, hold id).
async fn holds_of_buyers(app: &TestApp, buyers: usize) -> Vec<(String, String)> {
    let show = app
        .seed_show(2, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    let mut purchases = Vec::new();
    for i in 0..buyers {
        let token = user(&format!("buyer{i}"));
        let seat = format!("A{}", i + 1);
        let (s, hold) = app.hold(&token, &show, &[&seat]).await.expect("hold");
        assert_eq!(s, 201, "{hold}");
        purchases.push((token, hold["hold_id"].as_str().expect("id").to_owned()));
    }
    purchases
}

/// A purchase's confirmation is one unit: the charge recorded
/// (`payment.succeeded`), the booking confirmed (`booking.confirmed`)
/// and the key's answer carry the same `xmin` (one job's savepoint; two
/// transactions could never share it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purchase_is_confirmed_in_one_transaction() {
    // The relay marks events published (a later row version, another
    // xmin): off, so the events keep the xmin of the commit that wrote them.
    let mut settings = e2e::test_settings().await.expect("settings");
    settings.outbox_relay = false;
    let app = TestApp::spawn(settings).await.expect("app");
    let buyers = 8;
    let purchases = holds_of_buyers(&app, buyers).await;
    let answers = futures::future::join_all(
        purchases
            .iter()
            .map(|(token, hold)| checkout(&app, token, hold, "k1", "pm_card_ok")),
    )
    .await;
    for a in answers {
        let a = a.expect("answer");
        assert_eq!(a.status, 201, "{:?}", a.json);
    }
    let split = app
        .count(
            "SELECT count(*) FROM bookings b
               JOIN outbox paid ON paid.aggregate_id = b.payment_id
                               AND paid.event_type = 'payment.succeeded'
               JOIN outbox booked ON booked.aggregate_id = b.id
                                 AND booked.event_type = 'booking.confirmed'
               JOIN idempotency_keys k ON k.user_id = b.user_id AND k.key = 'k1'
              WHERE NOT (paid.xmin = b.xmin AND booked.xmin = b.xmin AND k.xmin = b.xmin)",
        )
        .await;
    assert_eq!(split, 0, "charge, booking and answer committed together");
    assert_eq!(
        app.count("SELECT count(*) FROM bookings").await,
        buyers as i64
    );
    let audit = assert_money_safe(&app, Duration::from_secs(20)).await;
    assert_eq!(audit.charges, buyers as u64);
    app.stop().await;
}

/// Buys `buyers` seats while the confirm writer is held: another session
/// locks `bookings`, so the first batch of confirmations waits on its
/// INSERT and the others queue behind it. Returns how many bookings were
/// made, and how many distinct xmins wrote them.
async fn confirm_while_held(protect: bool) -> (i64, i64) {
    let mut settings = e2e::test_settings().await.expect("settings");
    settings.checkout_writers = 1;
    settings.unsafe_disable_seat_protection = !protect;
    let app = TestApp::spawn(settings).await.expect("app");
    let buyers = 8;
    let purchases = holds_of_buyers(&app, buyers).await;
    let mut locker = app.db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE bookings IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .expect("lock");
    let app = Arc::new(app);
    let answers: Vec<_> = purchases
        .into_iter()
        .map(|(token, hold)| {
            let app = app.clone();
            tokio::spawn(async move { checkout(&app, &token, &hold, "k1", "pm_card_ok").await })
        })
        .collect();
    // Every charge made and waiting to be confirmed: the gateway answered
    // them all while the writer was stuck on the lock.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while app
        .count(
            "SELECT count(*) FROM pg_locks WHERE relation = 'bookings'::regclass AND NOT granted",
        )
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < until,
            "the writer never reached bookings"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    locker.commit().await.expect("unlock");
    for a in answers {
        let a = a.await.expect("join").expect("answer");
        assert_eq!(a.status, 201, "{:?}", a.json);
    }
    let booked = app.count("SELECT count(*) FROM bookings").await;
    let xmins = app
        .count("SELECT count(DISTINCT xmin::text) FROM bookings")
        .await;
    let audit = assert_money_safe(&app, Duration::from_secs(20)).await;
    assert_eq!(audit.charges, buyers as u64);
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
    (booked, xmins)
}

/// Confirmations that queued together are booked together: one statement
/// per step for the batch, so the bookings after the first batch's share
/// one row version's xmin (each booked alone would have its own
/// savepoint's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_confirmations_are_booked_together() {
    let (booked, xmins) = confirm_while_held(true).await;
    assert_eq!(booked, 8);
    assert!(xmins <= 3, "8 bookings written by {xmins} statements");
}

/// Negative control: with the together path off (it is skipped when the
/// seat protection is, the per-booking path then books blindly), the same
/// queued confirmations take a savepoint each, and the check above fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_control_confirmations_booked_one_by_one() {
    let (booked, xmins) = confirm_while_held(false).await;
    assert_eq!(booked, 8);
    assert_eq!(xmins, 8);
}

/// A booking confirmed by a batch answers with what the booking reads
/// back later. The batch builds its answer from what its one write
/// statement returned, not by reading the booking again, so this pins
/// that answer to the stored booking: its seats (held out of order here)
/// and their prices, the times, the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_booking_answers_what_the_booking_reads() {
    let app = TestApp::spawn(e2e::test_settings().await.expect("settings"))
        .await
        .expect("app");
    let show = app
        .seed_show(3, 10, chrono::Duration::days(3))
        .await
        .expect("show");
    let held = [["C3", "A1", "B2"], ["B5", "C4", "A6"], ["A9", "A8", "C7"]];
    let mut purchases = Vec::new();
    for (i, seats) in held.iter().enumerate() {
        let token = user(&format!("reader{i}"));
        let (s, hold) = app.hold(&token, &show, seats).await.expect("hold");
        assert_eq!(s, 201, "{hold}");
        purchases.push((token, hold["hold_id"].as_str().expect("id").to_owned()));
    }
    let answers = futures::future::join_all(
        purchases
            .iter()
            .map(|(token, hold)| checkout(&app, token, hold, "k1", "pm_card_ok")),
    )
    .await;
    for ((token, _), answer) in purchases.iter().zip(answers) {
        let answer = answer.expect("answer");
        assert_eq!(answer.status, 201, "{:?}", answer.json);
        let id = answer.json["id"].as_str().expect("booking id");
        let (s, stored) = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/bookings/{id}"),
                Some(token),
                None,
            )
            .await
            .expect("get");
        assert_eq!(s, 200, "{stored}");
        assert_eq!(
            answer.json, stored,
            "the checkout's answer and the booking differ"
        );
        let labels: Vec<&str> = stored["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .map(|s| s["label"].as_str().expect("label"))
            .collect();
        let mut sorted = labels.clone();
        sorted.sort_by_key(|l| (l.as_bytes()[0], l[1..].parse::<u32>().expect("number")));
        assert_eq!(labels, sorted, "seats in seat-map order");
    }
    app.stop().await;
}
