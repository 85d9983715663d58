//! A crowd of simulated buyers in a flash sale through the edge Worker:
//! each joins the sale's waiting room, polls its status as told
//! (`refresh_after_s`, capped), and once admitted holds seats with its
//! admission pass and pays, every request through the edge. Used by
//! `loadgen flash-sale` (the benchmark) and `loadgen demo`.
//!
//! Requests go out in a bounded number of slots (`Plan::concurrency`);
//! latencies are measured from the moment a request leaves, not from when
//! its user wanted to send it. What each user saw is kept in a [`Record`]
//! (the serving counter of every `waiting` answer, when the pass came, the
//! hold and the booking), from which admission order and rate are
//! checked afterwards.

use crate::edge::{Room, RoomStatus};
use crate::openloop::micros_histogram;
use crate::purchase::{self, Paid, Patience};
use crate::report::ms;
use anyhow::Context;
use chrono::Utc;
use hdrhistogram::Histogram;
use rand::Rng;
use reqwest::StatusCode;
use shared::api::{Availability, CreateHold, Hold};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use testkit::api::{Api, Method, RawResponse};
use tokio::sync::Semaphore;

/// Unix milliseconds (the Worker stamps passes with the same clock).
pub fn unix_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A poisoned lock still holds usable data (a panicked user task must not
/// hide everyone else's).
pub fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an edge request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Join the waiting room.
    Join,
    /// Waiting-room status.
    Status,
    /// Hold seats with a pass.
    Hold,
    /// Pay.
    Checkout,
    /// Availability (cached at the edge).
    Availability,
    /// The whole seat map (cached at the edge).
    SeatMap,
    /// Giving a hold back.
    Release,
    /// The operator's sale settings.
    Operator,
    /// An intruder's hold through the edge.
    Bypass,
}

impl Kind {
    /// Lowercase name, for the answer counts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Status => "status",
            Self::Hold => "hold",
            Self::Checkout => "checkout",
            Self::Availability => "availability",
            Self::SeatMap => "seats",
            Self::Release => "release",
            Self::Operator => "operator",
            Self::Bypass => "bypass",
        }
    }
}

/// Every edge request the crowd sent.
pub struct Stats {
    /// Latency of every answered request.
    pub all: Histogram<u64>,
    by_kind: BTreeMap<Kind, Histogram<u64>>,
    /// `kind status [code]` → count (`kind transport` for no answer).
    pub answers: BTreeMap<String, u64>,
    /// Requests the edge answered (its decisions).
    pub decisions: u64,
    /// Requests with no answer.
    pub transport_errors: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    fn new() -> Self {
        Self {
            all: micros_histogram(),
            by_kind: BTreeMap::new(),
            answers: BTreeMap::new(),
            decisions: 0,
            transport_errors: 0,
        }
    }

    /// Records one request (`status` None: no answer).
    pub fn record(
        &mut self,
        kind: Kind,
        latency: Duration,
        status: Option<u16>,
        code: Option<&str>,
    ) {
        let Some(status) = status else {
            self.transport_errors += 1;
            *self
                .answers
                .entry(format!("{} transport", kind.name()))
                .or_default() += 1;
            return;
        };
        let us = latency.as_micros() as u64;
        self.decisions += 1;
        self.all.saturating_record(us);
        self.by_kind
            .entry(kind)
            .or_insert_with(micros_histogram)
            .saturating_record(us);
        let key = match code {
            Some(c) => format!("{} {status} {c}", kind.name()),
            None => format!("{} {status}", kind.name()),
        };
        *self.answers.entry(key).or_default() += 1;
    }

    /// Latency quantile of one kind, ms.
    pub fn quantile(&self, kind: Kind, q: f64) -> Option<f64> {
        self.by_kind.get(&kind).map(|h| ms(h.value_at_quantile(q)))
    }

    /// Answers whose `kind status [code]` key matches.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> u64 {
        self.answers
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(_, v)| v)
            .sum()
    }
}

/// The error code of an answer that is not a success.
pub fn code_of(r: &RawResponse) -> Option<String> {
    (!r.status.is_success()).then(|| r.failure().code)
}

/// A simulated user.
pub struct Buyer {
    /// Token subject: the id the waiting room queues.
    pub id: String,
    /// `Bearer <jwt>`.
    pub bearer: String,
    /// The edge, as this user (its own client address).
    pub edge: Api,
}

impl Buyer {
    /// `n` buyers named `<prefix>-<i>` (`i` zero-padded to `width`), each
    /// with a user token and the edge as seen from an address of its own.
    /// A prefix with a domain (`buyer@demo.example`) names them as e-mail
    /// addresses (`buyer-0001@demo.example`), which the region core mails.
    pub fn many(
        n: usize,
        prefix: &str,
        width: usize,
        minter: &testkit::api::Minter,
        edge_api: &Api,
    ) -> anyhow::Result<Vec<Self>> {
        (0..n)
            .map(|i| {
                let id = match prefix.split_once('@') {
                    Some((local, domain)) => format!("{local}-{i:0width$}@{domain}"),
                    None => format!("{prefix}-{i:0width$}"),
                };
                Ok(Buyer {
                    bearer: minter.bearer(&id, shared::token::Role::User)?,
                    edge: edge_api.at_ip(&crate::edge::client_ip(i)),
                    id,
                })
            })
            .collect()
    }
}

/// How a user's sale ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Paid: a booking.
    Bought,
    /// Holds seats and was told not to pay (the demo keeps a few holds).
    Holding,
    /// Admitted, but the edge or the availability said sold out.
    SoldOut,
    /// Admitted, but every seat group tried was taken.
    NoSeats,
    /// Admitted, held seats, but the payment did not book.
    NotPaid,
    /// Lost the place by not polling.
    Dropped,
    /// The pass lapsed.
    Expired,
    /// Still waiting when the sale's time ran out.
    StillWaiting,
    /// Could not join.
    JoinFailed,
    /// Anything else (see `Record::failure`).
    Failed,
}

impl Outcome {
    /// Lowercase name, for the outcome counts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bought => "bought",
            Self::Holding => "holding",
            Self::SoldOut => "sold_out",
            Self::NoSeats => "no_seats",
            Self::NotPaid => "not_paid",
            Self::Dropped => "dropped",
            Self::Expired => "expired",
            Self::StillWaiting => "still_waiting",
            Self::JoinFailed => "join_failed",
            Self::Failed => "failed",
        }
    }
}

/// A `waiting` answer after opening.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    /// Unix ms the request was sent.
    pub sent_ms: i64,
    /// Unix ms the answer arrived.
    pub recv_ms: i64,
    /// The user's 1-based place.
    pub position: u64,
    /// The serving counter the Worker computed (`position - 1 - ahead`):
    /// places admitted by the rate plus places given back.
    pub served: u64,
}

/// What one user saw.
#[derive(Debug, Clone)]
pub struct Record {
    /// The user's id.
    pub id: String,
    /// Every `waiting` answer after opening.
    pub waiting: Vec<Waiting>,
    /// Unix ms the first `admitted` answer arrived.
    pub admitted_at: Option<i64>,
    /// The place the `admitted` answer gave.
    pub position: Option<u64>,
    /// The pass.
    pub pass: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The hold, when kept unpaid ([`Outcome::Holding`]).
    pub hold: Option<Hold>,
    /// Seats of the user's booking.
    pub booked: Vec<String>,
    /// The booking.
    pub booking: Option<uuid::Uuid>,
    /// Unix ms the booking's answer arrived.
    pub booked_at_ms: Option<i64>,
    /// What ended the user's sale in failure.
    pub failure: Option<String>,
}

impl Record {
    /// A user who has not joined yet.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            waiting: Vec::new(),
            admitted_at: None,
            position: None,
            pass: None,
            outcome: Outcome::StillWaiting,
            hold: None,
            booked: Vec::new(),
            booking: None,
            booked_at_ms: None,
            failure: None,
        }
    }

    /// Ends the user's sale in failure.
    pub fn fail(&mut self, why: String) {
        self.outcome = Outcome::Failed;
        self.failure = Some(why);
    }
}

/// How the crowd buys.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The city the show is sold in.
    pub city: String,
    /// The flash-sale show.
    pub show: String,
    /// Row labels of its screen.
    pub rows: Vec<String>,
    /// Seats per row.
    pub per_row: u16,
    /// A buyer asks for 1..=max_group adjacent seats.
    pub max_group: u16,
    /// Seat groups tried before giving up.
    pub hold_tries: usize,
    /// The first this many buyers to hold seats keep the hold unpaid.
    pub keep_unpaid: usize,
    /// Longest wait between two polls.
    pub poll_cap: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// The checkout idempotency keys' prefix.
    pub key_prefix: String,
}

/// The crowd's shared state.
pub struct Crowd {
    plan: Plan,
    room: Room,
    permits: Semaphore,
    stats: Mutex<Stats>,
    /// When users stop waiting.
    deadline: Mutex<Instant>,
    admitted: AtomicUsize,
    kept: AtomicUsize,
    /// (user, pass) of the first admitted users.
    first_passes: Mutex<Vec<(String, String)>>,
    /// The seed, as the first status after opening revealed it.
    revealed_seed: Mutex<Option<String>>,
}

/// Longest `Retry-After` a buyer honours on a hold.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What a hold's answer means to a buyer.
#[derive(Debug)]
pub enum HoldAnswer {
    /// 201: the seats are the buyer's.
    Held(Hold),
    /// 409 `seats_unavailable`: someone was quicker.
    Taken,
    /// 409 `sold_out`: the edge's short-circuit saw no free seat.
    SoldOut,
    /// 429 or 503: ask again after this (the `Retry-After`, bounded).
    Busy(Duration),
}

/// How many users' passes are kept for [`Crowd::first_passes`].
const KEEP_PASSES: usize = 32;

impl Crowd {
    /// A crowd buying per `plan`; nobody waits past an hour until
    /// [`Crowd::set_deadline`].
    pub fn new(plan: Plan) -> Arc<Self> {
        Arc::new(Self {
            room: Room::new(&plan.city, &plan.show),
            permits: Semaphore::new(plan.concurrency.max(1)),
            plan,
            stats: Mutex::new(Stats::new()),
            deadline: Mutex::new(Instant::now() + Duration::from_secs(3600)),
            admitted: AtomicUsize::new(0),
            kept: AtomicUsize::new(0),
            first_passes: Mutex::new(Vec::new()),
            revealed_seed: Mutex::new(None),
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// When users stop waiting.
    pub fn deadline(&self) -> Instant {
        *locked(&self.deadline)
    }

    /// Users still waiting at `at` give up.
    pub fn set_deadline(&self, at: Instant) {
        *locked(&self.deadline) = at;
    }

    /// Users admitted so far.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Relaxed)
    }

    /// (user, pass) of the first users admitted.
    pub fn first_passes(&self) -> Vec<(String, String)> {
        locked(&self.first_passes).clone()
    }

    /// The seed the waiting room revealed after opening.
    pub fn revealed_seed(&self) -> Option<String> {
        locked(&self.revealed_seed).clone()
    }

    /// The requests sent so far (and a fresh count from now on).
    pub fn take_stats(&self) -> Stats {
        std::mem::take(&mut *locked(&self.stats))
    }

    /// A random group of adjacent seats.
    pub fn pick(&self) -> Vec<String> {
        let mut rng = rand::thread_rng();
        let row = &self.plan.rows[rng.gen_range(0..self.plan.rows.len())];
        let n = rng.gen_range(1..=self.plan.max_group.min(self.plan.per_row));
        let first = rng.gen_range(1..=self.plan.per_row - n + 1);
        (first..first + n).map(|k| format!("{row}{k}")).collect()
    }

    /// Sends one edge request in a slot and records it.
    pub async fn call(
        &self,
        kind: Kind,
        request: impl Future<Output = anyhow::Result<RawResponse>>,
    ) -> anyhow::Result<RawResponse> {
        self.timed_call(kind, request).await.0
    }

    /// [`Crowd::call`], also returning when the request was sent and when
    /// its answer arrived (unix ms; the wait for a slot not included).
    pub async fn timed_call(
        &self,
        kind: Kind,
        request: impl Future<Output = anyhow::Result<RawResponse>>,
    ) -> (anyhow::Result<RawResponse>, i64, i64) {
        let _slot = match self.permits.acquire().await {
            Ok(slot) => slot,
            Err(e) => return (Err(e.into()), unix_ms(), unix_ms()),
        };
        let sent_ms = unix_ms();
        let sent = Instant::now();
        let r = request.await;
        let latency = sent.elapsed();
        let recv_ms = unix_ms();
        let (status, code) = match &r {
            Ok(resp) => (Some(resp.status.as_u16()), code_of(resp)),
            Err(e) => {
                if locked(&self.stats).transport_errors < 5 {
                    eprintln!("loadgen: {} request without an answer: {e:#}", kind.name());
                }
                (None, None)
            }
        };
        locked(&self.stats).record(kind, latency, status, code.as_deref());
        (r, sent_ms, recv_ms)
    }

    /// Every buyer joins (a 429 or 503 is retried as told, a few times);
    /// the answers in the buyers' order.
    pub async fn join_all(&self, buyers: &[Buyer]) -> Vec<anyhow::Result<RoomStatus>> {
        use futures::StreamExt;
        futures::stream::iter(buyers)
            .map(|b| self.join(b))
            .buffered(self.plan.concurrency.max(1))
            .collect()
            .await
    }

    async fn join(&self, b: &Buyer) -> anyhow::Result<RoomStatus> {
        for _ in 0..5 {
            let r = self
                .call(Kind::Join, self.room.join(&b.edge, &b.bearer))
                .await?;
            match r.status.as_u16() {
                200 => return r.json().context("a join answer"),
                429 | 503 => {
                    let wait = r.retry_after().unwrap_or(Duration::from_secs(1));
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(r.failure().into()),
            }
        }
        anyhow::bail!("{} could not join after 5 tries", b.id)
    }

    /// Runs every buyer's sale (those whose join failed are recorded as
    /// such) until all are done or the deadline passes; the records in the
    /// buyers' order.
    pub async fn run(self: &Arc<Self>, buyers: Vec<(Buyer, bool)>) -> Vec<Record> {
        let tasks: Vec<_> = buyers
            .into_iter()
            .map(|(b, joined)| {
                let crowd = self.clone();
                let id = b.id.clone();
                let task = tokio::spawn(async move {
                    if !joined {
                        let mut r = Record::new(&b.id);
                        r.outcome = Outcome::JoinFailed;
                        return r;
                    }
                    crowd.user_sale(&b).await
                });
                (id, task)
            })
            .collect();
        let mut records = Vec::with_capacity(tasks.len());
        for (id, t) in tasks {
            records.push(t.await.unwrap_or_else(|e| {
                let mut r = Record::new(&id);
                r.fail(format!("user task failed: {e}"));
                r
            }));
        }
        records
    }

    /// One user: poll until admitted (or out), then hold and pay.
    async fn user_sale(&self, b: &Buyer) -> Record {
        let mut rec = Record::new(&b.id);
        if let Some(pass) = self.wait_for_pass(b, &mut rec).await {
            self.buy(b, &pass, &mut rec).await;
        }
        rec
    }

    // About 90 lines: a user's wait in the queue, one loop whose state
    // would otherwise be threaded between functions.
    /// Polls the waiting room as told until the user is admitted (the
    /// pass) or out (`None`; `rec` says how).
    pub async fn wait_for_pass(&self, b: &Buyer, rec: &mut Record) -> Option<String> {
        // The first polls are spread over a second, as real users' are.
        let jitter = rand::thread_rng().gen_range(0..1000);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let pass = loop {
            if Instant::now() >= self.deadline() {
                rec.outcome = Outcome::StillWaiting;
                return None;
            }
            let (r, sent_ms, recv_ms) = self
                .timed_call(Kind::Status, self.room.status(&b.edge, &b.bearer))
                .await;
            let Ok(r) = r else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            if r.status != StatusCode::OK {
                // 429 (polled too fast) or 503 (edge state unavailable):
                // wait as told, and ask again.
                let wait = r.retry_after().unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(wait.min(self.plan.poll_cap)).await;
                continue;
            }
            let s: RoomStatus = match r.json() {
                Ok(s) => s,
                Err(e) => {
                    rec.fail(format!("status JSON: {e}"));
                    return None;
                }
            };
            if s.seed.is_some() {
                let mut seen = locked(&self.revealed_seed);
                if seen.is_none() {
                    seen.clone_from(&s.seed);
                }
            }
            match s.state.as_str() {
                "admitted" => {
                    rec.admitted_at = Some(recv_ms);
                    rec.position = s.position;
                    match s.pass {
                        Some(p) => break p,
                        None => {
                            rec.fail("admitted without a pass".into());
                            return None;
                        }
                    }
                }
                // Our turn; the pass is issued in a moment (passes are
                // spaced at the sale's rate): ask again then. Not a
                // "waiting" answer: nobody behind us is ahead of us.
                "ready" => {
                    let wait = Duration::from_millis(s.pass_in_ms.unwrap_or(1_000).max(1));
                    tokio::time::sleep(wait.min(self.plan.poll_cap)).await;
                }
                "waiting" | "pre_queue" => {
                    if let (Some(p), Some(a)) = (s.position, s.ahead) {
                        rec.waiting.push(Waiting {
                            sent_ms,
                            recv_ms,
                            position: p,
                            served: p.saturating_sub(1 + a),
                        });
                    }
                    let told = Duration::from_secs(s.refresh_after_s.max(1));
                    tokio::time::sleep(told.min(self.plan.poll_cap)).await;
                }
                "dropped" => {
                    rec.outcome = Outcome::Dropped;
                    return None;
                }
                "expired" => {
                    rec.outcome = Outcome::Expired;
                    return None;
                }
                other => {
                    rec.fail(format!("state {other}"));
                    return None;
                }
            }
        };
        if self.admitted.fetch_add(1, Ordering::Relaxed) < KEEP_PASSES {
            locked(&self.first_passes).push((b.id.clone(), pass.clone()));
        }
        rec.pass = Some(pass.clone());
        Some(pass)
    }

    /// An admitted user holds seats with the pass and pays.
    async fn buy(&self, b: &Buyer, pass: &str, rec: &mut Record) {
        let Some(hold) = self.hold(b, pass, rec).await else {
            return;
        };
        if self.kept.fetch_add(1, Ordering::Relaxed) < self.plan.keep_unpaid {
            rec.outcome = Outcome::Holding;
            rec.hold = Some(hold);
            return;
        }
        // No slot for a purchase: its requests are spaced by Retry-After
        // waits, and a slot held across them would stall the whole crowd
        // behind a few hung charges.
        let run = purchase::pay(
            &b.edge,
            &b.bearer,
            hold.hold_id,
            &self.plan.key_prefix,
            Patience::default(),
        )
        .await;
        self.record_checkout(&run);
        match run.outcome {
            Paid::Booked { booking, .. } => {
                rec.outcome = Outcome::Bought;
                rec.booked = booking.seats.iter().map(|s| s.label.clone()).collect();
                rec.booking = Some(booking.id);
                rec.booked_at_ms = Some(unix_ms());
            }
            other => {
                rec.outcome = Outcome::NotPaid;
                rec.failure = Some(format!("checkout: {other:?}"));
            }
        }
    }

    /// Counts a purchase's requests with the crowd's other requests.
    pub fn record_checkout(&self, run: &purchase::CheckoutRun) {
        let mut stats = locked(&self.stats);
        for a in &run.attempts {
            let code = (a.code != "booked").then_some(a.code.as_str());
            stats.record(Kind::Checkout, a.latency, a.status, code);
        }
    }

    /// Holds a random group of seats with the pass, trying other groups
    /// while seats are left.
    async fn hold(&self, b: &Buyer, pass: &str, rec: &mut Record) -> Option<Hold> {
        for _ in 0..self.plan.hold_tries {
            match self.hold_once(b, pass, self.pick()).await {
                Ok(HoldAnswer::Held(h)) => return Some(h),
                Ok(HoldAnswer::SoldOut) => {
                    rec.outcome = Outcome::SoldOut;
                    return None;
                }
                // A buyer whose seats went looks at what is left (a cached
                // read at the edge, which also tells the edge when all
                // are gone).
                Ok(HoldAnswer::Taken) => {
                    if self.sold_out(b).await {
                        rec.outcome = Outcome::SoldOut;
                        return None;
                    }
                }
                Ok(HoldAnswer::Busy(wait)) => tokio::time::sleep(wait).await,
                Err(why) => {
                    rec.fail(why);
                    return None;
                }
            }
        }
        rec.outcome = Outcome::NoSeats;
        None
    }

    /// One hold of `seats` with the pass, and what its answer means to a
    /// buyer; `Err` says why the buyer's sale failed.
    pub async fn hold_once(
        &self,
        b: &Buyer,
        pass: &str,
        seats: Vec<String>,
    ) -> Result<HoldAnswer, String> {
        let path = format!("/v1/shows/{}/holds", self.plan.show);
        let body = CreateHold { seats };
        let headers = [("Admission-Pass", pass)];
        let send = b
            .edge
            .send_with(Method::POST, &path, Some(&b.bearer), &headers, Some(&body));
        let r = self
            .call(Kind::Hold, send)
            .await
            .map_err(|e| format!("hold: {e:#}"))?;
        match (r.status.as_u16(), code_of(&r).as_deref()) {
            (201, _) => r
                .json::<Hold>()
                .map(HoldAnswer::Held)
                .map_err(|e| format!("hold JSON: {e}")),
            (409, Some("sold_out")) => Ok(HoldAnswer::SoldOut),
            (409, Some("seats_unavailable")) => Ok(HoldAnswer::Taken),
            (429 | 503, _) => {
                let wait = r.retry_after().unwrap_or(Duration::from_secs(1));
                Ok(HoldAnswer::Busy(wait.min(MAX_RETRY_AFTER)))
            }
            (status, code) => Err(format!("hold {status} {}", code.unwrap_or(""))),
        }
    }

    /// Whether the show's availability, read through the edge, is 0.
    async fn sold_out(&self, b: &Buyer) -> bool {
        let path = format!("/v1/shows/{}/availability", self.plan.show);
        let send = b.edge.send(Method::GET, &path, None, None, None::<&()>);
        match self.call(Kind::Availability, send).await {
            Ok(r) if r.status == StatusCode::OK => {
                r.json::<Availability>().is_ok_and(|a| a.available == 0)
            }
            _ => false,
        }
    }
}

/// Users told "waiting" in answer to a request sent after a user behind
/// them had already been told "admitted" (counted once per user).
///
/// Sound, not just likely: B's admission was decided before A asked, the
/// serving counter never goes back, and A is ahead of B, so A's answer had
/// to be "admitted" too. `rank` is each user's place in the final queue,
/// whose relative order never changes (users only leave, or join at the
/// back); users not in it are skipped.
pub fn order_violations(records: &[Record], rank: &HashMap<&str, u64>) -> u64 {
    let mut admitted: Vec<(i64, u64)> = records
        .iter()
        .filter_map(|r| Some((r.admitted_at?, *rank.get(r.id.as_str())?)))
        .collect();
    admitted.sort_unstable();
    let times: Vec<i64> = admitted.iter().map(|a| a.0).collect();
    // furthest[i]: the furthest-back place among the first i+1 admitted.
    let furthest: Vec<u64> = admitted
        .iter()
        .scan(0, |max, (_, r)| {
            *max = (*max).max(*r);
            Some(*max)
        })
        .collect();
    records
        .iter()
        .filter(|rec| {
            let Some(&mine) = rank.get(rec.id.as_str()) else {
                return false;
            };
            rec.waiting.iter().any(|w| {
                let before = times.partition_point(|t| *t < w.sent_ms);
                before > 0 && furthest[before - 1] > mine
            })
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, admitted_at: Option<i64>, waiting_sent: &[i64]) -> Record {
        let mut r = Record::new(id);
        r.admitted_at = admitted_at;
        r.waiting = waiting_sent
            .iter()
            .map(|t| Waiting {
                sent_ms: *t,
                recv_ms: *t + 1,
                position: 1,
                served: 0,
            })
            .collect();
        r
    }

    #[test]
    fn a_user_told_to_wait_after_someone_behind_was_admitted_is_a_violation() {
        let rank: HashMap<&str, u64> = [("a", 0), ("b", 1), ("c", 2)].into();
        // In order: a admitted at 100, b at 200; c asked at 150 (only a,
        // ahead of it, was in) and waited.
        let fine = [
            record("a", Some(100), &[50]),
            record("b", Some(200), &[50, 150]),
            record("c", None, &[150, 250]),
        ];
        assert_eq!(order_violations(&fine, &rank), 0);
        // c was admitted at 100, a was told to wait at 150: out of order.
        let bad = [
            record("a", Some(300), &[150]),
            record("b", None, &[]),
            record("c", Some(100), &[]),
        ];
        assert_eq!(order_violations(&bad, &rank), 1);
        // Asked at the same instant as c's admission arrived: not provably
        // after it.
        let tie = [record("a", Some(300), &[100]), record("c", Some(100), &[])];
        assert_eq!(order_violations(&tie, &rank), 0);
    }
}
