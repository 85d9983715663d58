//! A flash sale through the built Worker in workerd, over the Upstash
//! gateway, real Redis and a real region core.
//!
//! A thousand users join before opening; the sale opens at 200 users a
//! second; every user polls as the status tells them (but at least
//! every 2 s) until admitted. Checked from the users' side and from the server's
//! (the pass records in Redis):
//!
//! - before opening everyone is in the pre-queue, a second join changes
//!   nothing, and the seed's SHA-256 is published;
//! - after opening the seed is revealed, matches that commitment, and the
//!   queue order is exactly `prequeue_score(seed, user)`; late joiners
//!   queue behind everyone;
//! - nobody is admitted before opening, admission never runs ahead of the
//!   configured rate (counts against `rate · t + 1 + completed passes`),
//!   and never out of queue order;
//! - admitted users buy with their pass (hold 201, checkout 201), and a
//!   completed pass admits one more user, once;
//! - holds without a valid pass of the caller for that sale are refused
//!   at the edge and never reach the region; the region refuses them too.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use e2e::edge::{
    now_ms, Client, EdgeOptions, EdgeStack, Reply, SaleMode, SaleSettings, ADMISSION_KEY,
};
use futures::future::{FutureExt, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::admission::{sign, PassClaims};
use shared::waiting_room::prequeue_score;
use tokio::sync::Semaphore;

const CITY: &str = "mum";
/// Users in the pre-queue.
const USERS: u32 = 1000;
/// Users who join after opening (they must queue behind everyone).
const LATE: u32 = 2;
/// Admissions per second (integer, so the bound is exact integer math).
const RATE: i64 = 200;
const PASS_TTL_S: u32 = 10;
/// Long enough that nobody who polls drops out during the test.
const GRACE_S: u32 = 60;
/// The users at queue positions 1..=BUYERS buy a seat each.
const BUYERS: u64 = 8;
/// Requests in flight at once (the machine has two cores).
const IN_FLIGHT: usize = 48;
/// Users poll as `refresh_after_s` says, but at least this often.
const POLL_CAP: Duration = Duration::from_secs(2);
/// How far ahead of "now" the sale is re-set to open, once all joined.
const OPEN_IN_MS: i64 = 2000;

/// One status (or join) answer as a user saw it.
#[derive(Debug, Clone)]
struct Obs {
    t_send: i64,
    t_recv: i64,
    state: String,
    position: Option<u64>,
    ahead: Option<u64>,
    seed: Option<String>,
}

impl Obs {
    fn of(t_send: i64, r: &Reply) -> Self {
        Self {
            t_send,
            t_recv: now_ms(),
            state: r.body["state"].as_str().unwrap_or("?").to_owned(),
            position: r.body["position"].as_u64(),
            ahead: r.body["ahead"].as_u64(),
            seed: r.body["seed"].as_str().map(str::to_owned),
        }
    }
}

/// What one user did and saw after opening.
#[derive(Debug, Default)]
struct Fan {
    id: String,
    obs: Vec<Obs>,
    /// (received at, pass, position) of the first `admitted`.
    admitted: Option<(i64, String, u64)>,
    /// Position before and after a second join once in line.
    rejoin: Option<(u64, u64)>,
    /// Hold and checkout statuses, and whether the region's
    /// `Admission-Completed` leaked to the client.
    bought: Option<(u16, u16, bool)>,
}

/// `floor((t - opens)·RATE / 1000) + 1` for t ≥ opens: places the
/// serving counter has reached at `t` by the rate alone.
fn served_by_rate(t: i64, opens: i64) -> i64 {
    if t < opens {
        0
    } else {
        (t - opens) * RATE / 1000 + 1
    }
}

async fn status(stack: &EdgeStack, show: &str, who: &Client) -> Reply {
    stack
        .get(&format!("/v1/c/{CITY}/sales/{show}/status"), who)
        .await
}

/// `POST …/join` (no body: the token says who joins).
async fn join(stack: &EdgeStack, show: &str, who: &Client) -> Reply {
    let path = format!("/v1/c/{CITY}/sales/{show}/join");
    stack
        .send(stack.request(reqwest::Method::POST, &path, who))
        .await
}

/// A user after opening: polls until admitted (or the deadline), once in
/// line joins a second time if `rejoin`, and buys a seat if their place
/// is among the first [`BUYERS`].
async fn follow(
    stack: &EdgeStack,
    show: &str,
    who: Client,
    start_after: Duration,
    rejoin: bool,
    gate: &Semaphore,
    deadline: i64,
) -> Fan {
    let mut fan = Fan {
        id: who.id().to_owned(),
        ..Fan::default()
    };
    tokio::time::sleep(start_after).await;
    while now_ms() < deadline {
        let permit = gate.acquire().await.expect("semaphore");
        let t_send = now_ms();
        let r = status(stack, show, &who).await;
        drop(permit);
        assert_eq!(r.status, 200, "{} status: {r}", fan.id);
        let obs = Obs::of(t_send, &r);
        fan.obs.push(obs.clone());
        if obs.state == "admitted" {
            let pass = r.body["pass"]
                .as_str()
                .expect("an admitted status has a pass");
            let pos = obs.position.expect("an admitted status has a position");
            fan.admitted = Some((obs.t_recv, pass.to_owned(), pos));
            break;
        }
        if rejoin && obs.state == "waiting" && fan.rejoin.is_none() {
            let before = obs.position.expect("waiting has a position");
            let t_send = now_ms();
            let again = join(stack, show, &who).await;
            assert_eq!(again.status, 200, "second join: {again}");
            let again = Obs::of(t_send, &again);
            fan.rejoin = Some((before, again.position.unwrap_or(0)));
            fan.obs.push(again);
            continue;
        }
        let hint = r.body["refresh_after_s"].as_u64().unwrap_or(1).max(1);
        tokio::time::sleep(Duration::from_secs(hint).min(POLL_CAP)).await;
    }
    if let Some((_, pass, pos)) = &fan.admitted {
        if *pos <= BUYERS {
            let seat = format!("A{pos}");
            let hold = stack.hold(CITY, show, &who, &[&seat], Some(pass)).await;
            let paid = match hold.body["hold_id"].as_str() {
                Some(id) if hold.status == 201 => Some(stack.checkout(CITY, id, &who).await),
                _ => None,
            };
            fan.bought = Some((
                hold.status,
                paid.as_ref().map_or(0, |p| p.status),
                paid.as_ref()
                    .is_some_and(|p| p.header("Admission-Completed").is_some()),
            ));
        }
    }
    fan
}

async fn redis_int(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<i64>>(redis)
        .await
        .expect("GET")
        .unwrap_or(0)
}

fn claims_of(pass: &str) -> PassClaims {
    shared::admission::verify(&[ADMISSION_KEY.as_bytes()], pass, 0).expect("a genuine pass")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_are_admitted_in_draw_order_at_the_configured_rate_and_buy_only_with_a_pass(
) {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let region = stack.region(CITY);
    let show = stack
        .seed_show(CITY, 1, 20, SaleMode::FlashSale)
        .await
        .expect("show");
    let mut sale = SaleSettings {
        city: CITY.into(),
        opens_at_ms: now_ms() + 3_600_000,
        rate_per_sec: RATE as f64,
        pass_ttl_s: PASS_TTL_S,
        grace_s: GRACE_S,
    };
    let r = stack.put_sale(&show, &sale).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body["seed_commitment"], Value::Null, "nobody joined yet");

    // ---- before opening: everyone joins, concurrently.
    let fans: Vec<Client> = (0..USERS).map(Client::fan).collect();
    let joins: Vec<Reply> = futures::stream::iter(fans.iter().map(|f| join(&stack, &show, f)))
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    let mut commitments = BTreeMap::<String, u32>::new();
    for (f, r) in fans.iter().zip(&joins) {
        assert_eq!(r.status, 200, "{} join: {r}", f.id());
        assert_eq!(r.body["state"], "pre_queue", "{} join: {r}", f.id());
        assert_eq!(r.body["position"], Value::Null, "no place before the draw");
        assert_eq!(r.body["pass"], Value::Null);
        assert_eq!(
            r.body["seed"],
            Value::Null,
            "the seed is secret until opening"
        );
        let c = r.body["seed_commitment"].as_str().expect("commitment");
        *commitments.entry(c.to_owned()).or_default() += 1;
    }
    assert_eq!(
        commitments.len(),
        1,
        "one seed for the sale: {commitments:?}"
    );
    let commitment = commitments.into_keys().next().expect("one");
    let op = stack
        .get(&format!("/v1/operator/sales/{show}"), &Client::operator())
        .await;
    assert_eq!(op.body["seed_commitment"], commitment.as_str(), "{op}");

    // A second join before opening changes nothing.
    let again: Vec<Reply> =
        futures::stream::iter(fans.iter().step_by(10).map(|f| join(&stack, &show, f)))
            .buffered(IN_FLIGHT)
            .collect()
            .await;
    for r in &again {
        assert_eq!(
            (r.status, r.body["state"].as_str()),
            (200, Some("pre_queue")),
            "{r}"
        );
    }
    let mut redis = stack.redis().await.expect("redis");
    let queue = stack.key(&format!("wr:{{{show}}}:q"));
    let (card, at_zero): (u64, u64) = redis::pipe()
        .cmd("ZCARD")
        .arg(&queue)
        .cmd("ZCOUNT")
        .arg(&queue)
        .arg(0)
        .arg(0)
        .query_async(&mut redis)
        .await
        .expect("queue");
    assert_eq!(
        (card, at_zero),
        (u64::from(USERS), u64::from(USERS)),
        "each user once, all in the pre-queue"
    );
    let holds = format!("/v1/shows/{show}/holds");
    let r = stack.hold(CITY, &show, &fans[0], &["A1"], None).await;
    assert_eq!((r.status, r.code()), (403, Some("pass_required")), "{r}");

    // ---- opening: the sale is re-set to open shortly; users poll.
    sale.opens_at_ms = now_ms() + OPEN_IN_MS;
    let opens = sale.opens_at_ms;
    let r = stack.put_sale(&show, &sale).await;
    assert_eq!(r.status, 200, "{r}");
    let gate = Semaphore::new(IN_FLIGHT);
    let deadline = opens + i64::from(USERS + LATE) * 1000 / RATE + 60_000;
    // Late joiners, one after the other, once the sale is open.
    let late: Vec<Client> = (0..LATE)
        .map(|n| Client::user(&format!("late-{n}"), &format!("10.200.0.{n}")))
        .collect();
    let mut crowd: FuturesUnordered<LocalBoxFuture<'_, Vec<Fan>>> = fans
        .iter()
        .enumerate()
        .map(|(i, f)| {
            // First polls spread over a second: for one user in ten the
            // second before opening, for the others the one after.
            let second = if i % 10 == 0 {
                OPEN_IN_MS - 1000
            } else {
                OPEN_IN_MS
            };
            let start = Duration::from_millis((i as u64 * 7919) % 1000 + second as u64);
            let rejoin = i % 50 == 0;
            follow(&stack, &show, f.clone(), start, rejoin, &gate, deadline)
                .map(|f| vec![f])
                .boxed_local()
        })
        .collect();
    crowd.push(
        async {
            let open = Duration::from_millis((opens - now_ms()).max(0) as u64 + 200);
            tokio::time::sleep(open).await;
            for (n, l) in late.iter().enumerate() {
                let r = join(&stack, &show, l).await;
                assert_eq!(r.status, 200, "{r}");
                assert_eq!(
                    r.body["position"].as_u64(),
                    Some(u64::from(USERS) + n as u64 + 1),
                    "a late joiner queues behind the whole pre-queue, in arrival order: {r}"
                );
            }
            futures::future::join_all(late.iter().map(|l| {
                follow(
                    &stack,
                    &show,
                    l.clone(),
                    Duration::ZERO,
                    false,
                    &gate,
                    deadline,
                )
            }))
            .await
        }
        .boxed_local(),
    );
    let mut done = Vec::new();
    while let Some(fans) = crowd.next().await {
        done.extend(fans);
    }
    drop(crowd);
    let not_admitted: Vec<&str> = done
        .iter()
        .filter(|f| f.admitted.is_none())
        .map(|f| f.id.as_str())
        .collect();
    assert!(
        not_admitted.is_empty(),
        "{} users not admitted by the deadline: {:?}",
        not_admitted.len(),
        &not_admitted[..not_admitted.len().min(10)]
    );

    // ---- the draw: seed revealed after opening, matching the commitment.
    let mut seeds = BTreeMap::<Option<String>, u32>::new();
    let mut pre_open_polls = 0;
    for o in done.iter().flat_map(|f| &f.obs) {
        if o.t_recv < opens {
            pre_open_polls += 1;
            assert_eq!(o.seed, None, "the seed is secret until opening");
            assert_eq!(
                o.state, "pre_queue",
                "before opening everyone is in the pre-queue"
            );
        }
        if o.t_send >= opens {
            *seeds.entry(o.seed.clone()).or_default() += 1;
        }
    }
    assert_eq!(seeds.len(), 1, "one revealed seed: {seeds:?}");
    let seed = seeds
        .into_keys()
        .next()
        .flatten()
        .expect("the seed is revealed after opening");
    assert_eq!(
        hex::encode(Sha256::digest(seed.as_bytes())),
        commitment,
        "SHA-256 of the revealed seed is the commitment shown before opening"
    );
    let mut order: Vec<String> = fans.iter().map(|f| f.id().to_owned()).collect();
    // Redis orders equal scores by member, bytewise: so does (score, id).
    order.sort_by_cached_key(|id| (prequeue_score(&seed, id), id.clone()));
    order.extend(late.iter().map(|l| l.id().to_owned()));
    let rank: HashMap<&str, u64> = order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u64))
        .collect();
    let mut positions_checked = 0;
    for f in &done {
        for o in &f.obs {
            if let Some(p) = o.position {
                assert_eq!(
                    p,
                    rank[f.id.as_str()] + 1,
                    "{}'s place is the draw's (seed {seed}): {o:?}",
                    f.id
                );
                positions_checked += 1;
            }
        }
    }
    let rejoins: Vec<_> = done.iter().filter_map(|f| f.rejoin).collect();
    for (before, after) in &rejoins {
        assert_eq!(before, after, "a second join keeps the place");
    }

    // ---- admission order, seen by the users: nobody is admitted while
    // someone ahead of them is still told to wait.
    let by_id: HashMap<&str, &Fan> = done.iter().map(|f| (f.id.as_str(), f)).collect();
    let mut order_violations = 0;
    let mut first_admitted_behind = i64::MAX;
    for id in order.iter().rev() {
        let f = by_id[id.as_str()];
        let last_wait = f
            .obs
            .iter()
            // `ready`: their turn came, the pass is issued in a moment.
            .filter(|o| o.state != "admitted" && o.state != "ready")
            .map(|o| o.t_send)
            .max()
            .unwrap_or(i64::MIN);
        if last_wait > first_admitted_behind {
            order_violations += 1;
        }
        first_admitted_behind =
            first_admitted_behind.min(f.admitted.as_ref().map_or(i64::MAX, |a| a.0));
    }

    // ---- purchases with passes; completed passes give their slots back.
    let buyers: Vec<_> = done.iter().filter_map(|f| f.bought).collect();
    assert_eq!(buyers.len() as u64, BUYERS, "the first {BUYERS} places buy");
    for (hold, paid, leaked) in &buyers {
        assert_eq!((*hold, *paid), (201, 201), "hold and checkout with a pass");
        assert!(!leaked, "Admission-Completed is between edge and region");
    }
    let bonus_key = stack.key(&format!("wr:{{{show}}}:bonus"));
    let bonus = {
        // The completion runs after the checkout's response
        // (`ctx.wait_until`): poll, with a deadline.
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let b = redis_int(&mut redis, &bonus_key).await;
            if b == BUYERS as i64 || tokio::time::Instant::now() > until {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(
        bonus, BUYERS as i64,
        "each completed pass gives one place back"
    );
    assert_eq!(
        region.app().count("SELECT count(*) FROM bookings").await,
        BUYERS as i64
    );

    // ---- the rate, from the server's own records: `wr:{S}:passes` holds
    // user → `iat_ms|pos|pid` written when the user was first admitted.
    let passes: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(stack.key(&format!("wr:{{{show}}}:passes")))
        .query_async(&mut redis)
        .await
        .expect("passes");
    assert_eq!(
        passes.len(),
        order.len(),
        "one pass record per admitted user"
    );
    let mut admitted: Vec<(i64, u64, &str)> = passes
        .iter()
        .map(|(user, rec)| {
            let mut p = rec.splitn(3, '|');
            let iat: i64 = p.next().and_then(|v| v.parse().ok()).expect("iat");
            let pos: u64 = p.next().and_then(|v| v.parse().ok()).expect("pos");
            (iat, pos, user.as_str())
        })
        .collect();
    admitted.sort();
    let mut tightest = 0.0_f64;
    for (k, (iat, pos, user)) in admitted.iter().enumerate() {
        assert!(
            *iat >= opens,
            "{user} admitted {} ms before opening",
            opens - iat
        );
        assert_eq!(
            *pos,
            rank[user] + 1,
            "{user}'s pass records its place in the draw"
        );
        // The rate is a cap: completed passes add no places.
        let bound = served_by_rate(*iat, opens);
        assert!(
            (k as i64 + 1) <= bound && (*pos as i64) <= bound,
            "admission ahead of the rate: #{} (place {pos}) at +{} ms, bound {bound}",
            k + 1,
            iat - opens
        );
        if *iat > opens {
            tightest = tightest.max((k as f64) / ((iat - opens) as f64 * RATE as f64 / 1000.0));
        }
    }
    // The same bound on the serving counter each waiting user was shown
    // (position − 1 − ahead), at the latest instant the edge can have used.
    let mut shown_at = Vec::new();
    for o in done.iter().flat_map(|f| &f.obs) {
        if let (Some(p), Some(a), "waiting") = (o.position, o.ahead, o.state.as_str()) {
            let shown = (p - 1 - a) as i64;
            assert!(
                shown <= served_by_rate(o.t_recv + 1, opens),
                "serving counter {shown} ahead of the rate at +{} ms",
                o.t_recv - opens
            );
            if o.t_send >= opens {
                shown_at.push((
                    (o.t_send + o.t_recv) as f64 / 2.0 - opens as f64,
                    shown as f64,
                ));
            }
        }
    }
    // Reported, not asserted (they depend on how promptly users poll):
    // the serving counter's rate (least squares over what users were
    // shown) and how long after their turn users were admitted.
    let n = shown_at.len() as f64;
    let (mt, ms) = shown_at
        .iter()
        .fold((0.0, 0.0), |(a, b), (t, s)| (a + t / n, b + s / n));
    let (cov, var) = shown_at.iter().fold((0.0, 0.0), |(c, v), (t, s)| {
        (c + (t - mt) * (s - ms), v + (t - mt) * (t - mt))
    });
    let counter_rate = cov / var * 1000.0;
    let mut lags: Vec<i64> = admitted
        .iter()
        .map(|(iat, pos, _)| iat - (opens + (*pos as i64 - 1) * 1000 / RATE))
        .collect();
    lags.sort_unstable();
    let polls: usize = done.iter().map(|f| f.obs.len()).sum();
    println!(
        "{}",
        json!({
            "users": USERS + LATE, "configured_rate": RATE,
            "counter_rate": (counter_rate * 10.0).round() / 10.0,
            "admission_rate_error_pct": ((counter_rate / RATE as f64 - 1.0) * 1000.0).round() / 10.0,
            "max_admitted_vs_rate": (tightest * 1000.0).round() / 1000.0,
            "admission_lag_ms_p50": lags[lags.len() / 2], "admission_lag_ms_max": lags[lags.len() - 1],
            "order_violations": order_violations, "positions_checked": positions_checked,
            "rejoins": rejoins.len(), "status_polls": polls, "pre_open_polls": pre_open_polls,
            "bonus": bonus, "gateway_round_trips": stack.gateway_requests(),
        })
    );
    assert_eq!(order_violations, 0, "admission out of queue order");

    // ---- passes: bypassing the queue is refused at the edge, and the
    // region never sees the attempt.
    let first = by_id[order[0].as_str()];
    let last = by_id[order[order.len() - 1].as_str()];
    let (_, last_pass, _) = last.admitted.clone().expect("admitted");
    let (_, first_pass, _) = first.admitted.clone().expect("admitted");
    let mallory = Client::user("mallory", "10.201.0.1");
    let now_s = now_ms() / 1000;
    let forged = sign(
        b"not-the-admission-key-0123456789",
        &PassClaims {
            pid: format!("{show}:forged"),
            sub: "mallory".into(),
            sale: show.clone(),
            pos: 1,
            iat: now_s,
            exp: now_s + 300,
        },
    );
    assert!(
        claims_of(&last_pass).exp > now_s + 1,
        "the last pass is still valid"
    );
    let region_holds = region.proxy.count("POST", &holds);
    let region_total = region.proxy.total();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no pass", None, "pass_required"),
        (
            "another user's pass",
            Some(last_pass.clone()),
            "pass_wrong_user",
        ),
        ("a forged pass", Some(forged.clone()), "pass_invalid"),
        (
            "not a pass",
            Some("ap1.bm90LWEtcGFzcw.x".into()),
            "pass_malformed",
        ),
    ];
    for (what, pass, code) in &cases {
        let r = stack
            .hold(CITY, &show, &mallory, &["A20"], pass.as_deref())
            .await;
        assert_eq!((r.status, r.code()), (403, Some(*code)), "{what}: {r}");
    }
    // The first admitted user's own pass, once it has expired (its
    // lifetime is PASS_TTL_S; the sale outlasts it, so this rarely waits).
    let exp = claims_of(&first_pass).exp;
    let wait = (exp * 1000 + 50 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let owner = fans
        .iter()
        .find(|f| f.id() == first.id)
        .expect("the first user");
    let r = stack
        .hold(CITY, &show, owner, &["A20"], Some(&first_pass))
        .await;
    let st = status(&stack, &show, owner).await;
    assert_eq!(st.body["state"], "expired", "the status says so too: {st}");
    assert_eq!(
        (r.status, r.code()),
        (403, Some("pass_expired")),
        "an expired pass: {r}"
    );
    assert_eq!(
        region.proxy.count("POST", &holds),
        region_holds,
        "refused holds never reach the region"
    );
    assert_eq!(
        region.proxy.total(),
        region_total,
        "nothing reached the region"
    );

    // The region refuses a hold without a pass, or with a forged one, by
    // itself: the queue cannot be bypassed by calling it directly.
    let app = region.app();
    for (pass, code) in [
        (None, "pass_required"),
        (Some(forged.as_str()), "pass_invalid"),
    ] {
        let mut req = app
            .http
            .post(format!("{}{holds}", app.url))
            .bearer_auth(mallory.token.as_deref().expect("token"))
            .json(&json!({"seats": ["A20"]}));
        if let Some(p) = pass {
            req = req.header("Admission-Pass", p);
        }
        let resp = req.send().await.expect("direct hold");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some(code)),
            "direct: {body}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM holds").await,
        BUYERS as i64,
        "only the buyers' holds exist"
    );
    drop(redis);
    stack.stop().await;
}

/// A completed pass is recorded once and admits nobody extra (the rate is
/// a cap); a pass of one sale does not open another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_pass_is_recorded_once_and_admits_no_one_extra() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 10, SaleMode::FlashSale)
        .await
        .expect("show");
    let other = stack
        .seed_show(CITY, 1, 10, SaleMode::FlashSale)
        .await
        .expect("show");
    // Open, and so slow (one place per 1000 s) that only given-back
    // places can admit anyone after the first.
    for s in [&show, &other] {
        let r = stack
            .put_sale(
                s,
                &SaleSettings {
                    city: CITY.into(),
                    opens_at_ms: now_ms() - 1000,
                    rate_per_sec: 0.001,
                    pass_ttl_s: 300,
                    grace_s: 60,
                },
            )
            .await;
        assert_eq!(r.status, 200, "{r}");
    }
    let ann = Client::user("ann", "10.9.0.1");
    let bob = Client::user("bob", "10.9.0.2");
    let cat = Client::user("cat", "10.9.0.3");
    let r = join(&stack, &show, &ann).await;
    assert_eq!(
        (r.body["state"].as_str(), r.body["position"].as_u64()),
        (Some("admitted"), Some(1)),
        "{r}"
    );
    let pass = r.body["pass"].as_str().expect("pass").to_owned();
    let r = join(&stack, &show, &bob).await;
    assert_eq!(
        (
            r.body["state"].as_str(),
            r.body["position"].as_u64(),
            r.body["ahead"].as_u64()
        ),
        (Some("waiting"), Some(2), Some(0)),
        "{r}"
    );
    let r = join(&stack, &show, &cat).await;
    assert_eq!(
        (r.body["state"].as_str(), r.body["position"].as_u64()),
        (Some("waiting"), Some(3)),
        "{r}"
    );

    // ann's pass is for this sale only.
    let r = stack.hold(CITY, &other, &ann, &["A1"], Some(&pass)).await;
    assert_eq!((r.status, r.code()), (403, Some("pass_wrong_sale")), "{r}");

    let hold = stack.hold(CITY, &show, &ann, &["A1"], Some(&pass)).await;
    assert_eq!(hold.status, 201, "{hold}");
    let hold_id = hold.body["hold_id"].as_str().expect("hold id").to_owned();
    let key = uuid::Uuid::new_v4().to_string();
    let pay = |key: String| {
        let stack = &stack;
        let ann = &ann;
        let hold_id = &hold_id;
        async move {
            stack
                .send(
                    stack
                        .request(
                            reqwest::Method::POST,
                            &format!("/v1/c/{CITY}/holds/{hold_id}/checkout"),
                            ann,
                        )
                        .header("Idempotency-Key", key)
                        .json(&json!({"payment_method": "pm_card_ok"})),
                )
                .await
        }
    };
    let paid = pay(key.clone()).await;
    assert_eq!(paid.status, 201, "{paid}");
    assert_eq!(
        paid.header("Admission-Completed"),
        None,
        "kept between edge and region"
    );
    // The completion runs after the response (ctx.wait_until): poll until
    // it is recorded. It admits nobody extra: the configured rate is a cap
    // on admissions (issue 9.15), so bob still waits for the counter.
    let recorded = e2e::eventually(Duration::from_secs(10), || async {
        let mut redis = stack.redis().await.expect("redis");
        redis_int(&mut redis, &stack.key(&format!("wr:{{{show}}}:bonus"))).await == 1
    })
    .await;
    assert!(recorded, "the completed pass is recorded");
    assert_eq!(status(&stack, &show, &bob).await.body["state"], "waiting");
    // A replay of the same checkout reports the same pass again: no
    // second place is given back.
    // The replay makes one gate call and, since the region reports the
    // pass again, one completion call: wait for both, then look.
    let before = stack.gateway_requests();
    let replay = pay(key).await;
    assert_eq!(replay.status, 201, "{replay}");
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    let both = e2e::eventually(Duration::from_secs(10), || async {
        stack.gateway_requests() >= before + 2
    })
    .await;
    assert!(both, "the replay's completion call reached Upstash");
    let mut redis = stack.redis().await.expect("redis");
    let bonus = redis_int(&mut redis, &stack.key(&format!("wr:{{{show}}}:bonus"))).await;
    let done: i64 = redis::cmd("SCARD")
        .arg(stack.key(&format!("wr:{{{show}}}:done")))
        .query_async(&mut redis)
        .await
        .expect("done");
    assert_eq!((bonus, done), (1, 1), "one pass, recorded once");
    // Nobody moved up: cat still has bob ahead.
    let r = status(&stack, &show, &cat).await;
    assert_eq!(
        (r.body["state"].as_str(), r.body["ahead"].as_u64()),
        (Some("waiting"), Some(1)),
        "{r}"
    );
    drop(redis);
    stack.stop().await;
}
