//! Sections 2 to 4 of the demo: a flash sale through the edge's waiting
//! room, printed as it goes, then what it proves: the order is the one the
//! seed committed to, nobody was let in before someone ahead, no seat was
//! sold twice, and the queue could not be got round.

use super::{Checks, DemoArgs, WonHold};
use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use loadgen::crowd::{self, code_of, unix_ms, Buyer, Crowd, Kind, Outcome, Plan, Record};
use loadgen::edge::{self, RoomStatus, SaleSettings};
use shared::api::{CreateHold, Show};
use shared::token::Role;
use shared::waiting_room::{prequeue_score, seed_commitment};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::api::{Api, Method, Minter};
use testkit::seed::row_label;

use super::{PER_ROW, ROWS};

/// Holds the first winners keep (not paid in the sale) for the release,
/// the extension and the step-by-step purchase.
const KEEP: usize = 3;
/// Longest wait between two polls of a buyer.
const POLL_CAP: Duration = Duration::from_secs(2);
/// Longest the sale runs after opening.
const SALE_LIMIT: Duration = Duration::from_secs(90);
/// Pass lifetime and dropout grace the demo's sale is set with.
const PASS_TTL_S: u32 = 600;
const GRACE_S: u32 = 30;

/// One attempt to get round the queue.
pub(super) struct Attempt {
    what: &'static str,
    answer: String,
    accepted: bool,
}

/// What the sale produced.
pub(super) struct SaleOutcome {
    /// Buyers who joined before opening.
    pub joined: usize,
    records: Vec<Record>,
    /// Holds the first winners kept.
    pub kept: Vec<WonHold>,
    /// Users told to wait after someone behind them was admitted.
    pub order_violations: u64,
    /// Admitted users whose place was not the committed draw's.
    draw_mismatches: u64,
    /// Users the draw could not be checked for (no place seen).
    unchecked: u64,
    commitment: Option<String>,
    seed: Option<String>,
    /// The intruder's attempts.
    pub bypass: Vec<Attempt>,
    /// Edge answers that were 429, 5xx or none, and all requests.
    odd_answers: (u64, u64),
}

impl SaleOutcome {
    /// Users admitted.
    pub fn admitted(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.admitted_at.is_some())
            .count()
    }

    /// Users who paid.
    pub fn buyers(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.outcome == Outcome::Bought)
            .count()
    }

    /// Seats the buyers paid for.
    pub fn booked_seats(&self) -> impl Iterator<Item = &str> {
        self.records
            .iter()
            .flat_map(|r| r.booked.iter().map(String::as_str))
    }

    /// Seats of the kept holds.
    pub fn held_seats(&self) -> impl Iterator<Item = &str> {
        self.kept
            .iter()
            .flat_map(|k| k.hold.seats.iter().map(String::as_str))
    }

    /// Seats sold.
    pub fn seats_sold(&self) -> usize {
        self.booked_seats().count()
    }

    /// Seats given to more than one buyer (bookings and kept holds).
    pub fn double_booked(&self) -> usize {
        let mut n: HashMap<&str, usize> = HashMap::new();
        for s in self.booked_seats().chain(self.held_seats()) {
            *n.entry(s).or_default() += 1;
        }
        n.values().filter(|c| **c > 1).count()
    }

    /// (429, 5xx or unanswered edge requests, all edge requests).
    pub fn unexpected_answers(&self) -> (u64, u64) {
        self.odd_answers
    }

    /// Bypass attempts the pass check let through.
    pub fn bypass_accepted(&self) -> usize {
        self.bypass.iter().filter(|a| a.accepted).count()
    }
}

/// Runs the sale, printing what happens. (About 90 lines: the sale's
/// phases in the order a reader follows them, set, join, open, buy while
/// an intruder tries, audit; each phase is a call of its own.)
pub(super) async fn run(
    args: &DemoArgs,
    edge_api: &Api,
    region: &Api,
    minter: &Minter,
    op: &str,
    show: &Show,
) -> anyhow::Result<SaleOutcome> {
    let show_id = show.id.to_string();
    let city = super::CITIES[0].code;
    let mut sale = SaleSettings {
        city: city.to_owned(),
        // Far away until everyone has joined.
        opens_at: edge::rfc3339(Utc::now() + ChronoDuration::hours(1)),
        rate_per_sec: args.rate,
        pass_ttl_s: PASS_TTL_S,
        grace_s: GRACE_S,
    };
    edge::put_sale(edge_api, op, &show_id, &sale).await?;
    println!(
        "   the operator sets the sale at the edge: {} admissions/s, passes valid {} s, places kept {} s without polling",
        args.rate, PASS_TTL_S, GRACE_S
    );

    let buyers = Buyer::many(args.users, "demo-buyer@demo.example", 4, minter, edge_api)?;
    let who: HashMap<String, (String, Api)> = buyers
        .iter()
        .map(|b| (b.id.clone(), (b.bearer.clone(), b.edge.clone())))
        .collect();
    let crowd = Crowd::new(Plan {
        city: city.to_owned(),
        show: show_id.clone(),
        rows: (0..ROWS).map(row_label).collect(),
        per_row: PER_ROW,
        max_group: 4,
        hold_tries: args.attempts_per_user.max(1),
        keep_unpaid: KEEP,
        poll_cap: POLL_CAP,
        concurrency: args.concurrency,
        key_prefix: "demo".into(),
    });

    let (joins, joined, commitment) = join_before_opening(&crowd, &buyers).await;

    let opens =
        (Utc::now() + ChronoDuration::seconds(args.open_delay_secs as i64 + 1)).trunc_subsecs(0);
    sale.opens_at = edge::rfc3339(opens);
    let view = edge::put_sale(edge_api, op, &show_id, &sale).await?;
    println!(
        "   the operator opens the sale at {} (in {} s); places are drawn at opening",
        view.opens_at,
        (opens - Utc::now()).num_seconds().max(0)
    );
    let opens_at_ms = opens.timestamp_millis();
    let until_open = Duration::from_millis((opens_at_ms - unix_ms()).max(0) as u64);
    crowd.set_deadline(Instant::now() + until_open + SALE_LIMIT);

    let buyers: Vec<(Buyer, bool)> = buyers
        .into_iter()
        .zip(joins.iter().map(Result::is_ok))
        .collect();
    let intruder = {
        let (crowd, region, edge_api) = (crowd.clone(), region.clone(), edge_api.clone());
        let bearer = minter.bearer(INTRUDER, Role::User)?;
        tokio::spawn(async move { intrude(&crowd, &region, &edge_api, &bearer).await })
    };
    let records = crowd.run(buyers).await;
    let bypass = intruder.await.unwrap_or_default();
    let stats = crowd.take_stats();
    let seed = crowd.revealed_seed();

    let (odd, total) = print_sale(
        &records,
        &stats,
        joined,
        opens_at_ms,
        seed.as_deref(),
        args.rate,
    );
    let (order_violations, draw_mismatches, unchecked) = audit_order(&records, seed.as_deref());
    let kept = won_holds(&records, &who);
    Ok(SaleOutcome {
        joined,
        records,
        kept,
        order_violations,
        draw_mismatches,
        unchecked,
        commitment,
        seed,
        bypass,
        odd_answers: (odd, total),
    })
}

/// Everyone joins while the sale is far off: all land in the pre-queue,
/// with no place yet, and are shown the seed's commitment. Returns each
/// join's answer, how many succeeded and the commitment.
async fn join_before_opening(
    crowd: &Crowd,
    buyers: &[Buyer],
) -> (Vec<anyhow::Result<RoomStatus>>, usize, Option<String>) {
    let started = Instant::now();
    let joins = crowd.join_all(buyers).await;
    let joined = joins.iter().filter(|j| j.is_ok()).count();
    let in_pre_queue = joins
        .iter()
        .filter(|j| j.as_ref().is_ok_and(|s| s.state == "pre_queue"))
        .count();
    let commitment = joins
        .iter()
        .find_map(|j| j.as_ref().ok().and_then(|s| s.seed_commitment.clone()));
    println!(
        "   {joined} of {} buyers join before opening ({:.1} s): {in_pre_queue} in the pre-queue, no place yet",
        buyers.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(Err(e)) = joins.iter().find(|j| j.is_err()) {
        println!("     a join failed: {e:#}");
    }
    println!(
        "   everyone is shown the seed's commitment, SHA-256 = {}",
        commitment.as_deref().unwrap_or("(none)")
    );
    (joins, joined, commitment)
}

/// What happened, in the order of the queue; returns (429, 5xx or
/// unanswered edge requests, all edge requests).
fn print_sale(
    records: &[Record],
    stats: &crowd::Stats,
    joined: usize,
    opens_at_ms: i64,
    seed: Option<&str>,
    rate: f64,
) -> (u64, u64) {
    let mut admitted: Vec<&Record> = records.iter().filter(|r| r.admitted_at.is_some()).collect();
    admitted.sort_by_key(|r| r.position);
    let last = admitted.iter().filter_map(|r| r.admitted_at).max();
    println!(
        "   the sale opened; the seed is revealed: {}",
        seed.unwrap_or("(not seen)")
    );
    println!("   first in line (each sees its pass at its next poll, so not quite in order):");
    for r in admitted.iter().take(5) {
        let after = r.admitted_at.map_or(0, |t| t - opens_at_ms) as f64 / 1000.0;
        let pass = r.pass.as_deref().unwrap_or("");
        println!(
            "     #{:<4} {}  has its pass {:+.2} s after opening: {}… ({} chars)",
            r.position.unwrap_or(0),
            r.id,
            after,
            pass.chars().take(24).collect::<String>(),
            pass.len()
        );
    }
    println!(
        "   {} of {joined} admitted within {:.1} s of opening, in line order (at most {} /s: the sale's rate caps the passes issued)",
        admitted.len(),
        last.map_or(0, |t| t - opens_at_ms) as f64 / 1000.0,
        rate
    );
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        *outcomes.entry(r.outcome.name()).or_default() += 1;
    }
    let bought_seats: usize = records.iter().map(|r| r.booked.len()).sum();
    let rest: Vec<String> = outcomes
        .iter()
        .filter(|(k, _)| !matches!(**k, "bought" | "holding"))
        .map(|(k, v)| format!("{v} {}", outcome_words(k)))
        .collect();
    println!(
        "   {} bought {} seats with their pass (hold, then pay, through the edge), {} keep their holds for steps 5-6{}",
        outcomes.get("bought").copied().unwrap_or(0),
        bought_seats,
        outcomes.get("holding").copied().unwrap_or(0),
        if rest.is_empty() {
            String::new()
        } else {
            format!("; {}", rest.join(", "))
        }
    );
    let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
    for f in records.iter().filter_map(|r| r.failure.as_deref()) {
        *failures.entry(f).or_default() += 1;
    }
    for (f, n) in failures.iter().take(5) {
        println!("     {n} × {f}");
    }
    let odd = stats.count(|k| {
        let status = k.split(' ').nth(1).unwrap_or("");
        status == "429" || status.starts_with('5') || status == "transport"
    });
    let total = stats.decisions + stats.transport_errors;
    println!(
        "   edge: {total} requests (join, status, hold, checkout, availability), p50 {:.1} ms, p99 {:.1} ms; {odd} answered 429/5xx or not at all",
        stats.all.value_at_quantile(0.5) as f64 / 1000.0,
        stats.all.value_at_quantile(0.99) as f64 / 1000.0,
    );

    (odd, total)
}

/// Checks the queue against the draw the seed committed to; returns
/// (order violations, draw mismatches, users never seen with a place).
fn audit_order(records: &[Record], seed: Option<&str>) -> (u64, u64, u64) {
    // The order the seed committed to: pre-queue users by SHA-1(seed:user)
    // (ties by id, as Redis orders equal scores).
    let mut draw: Vec<(u64, &str)> = match seed {
        Some(seed) => records
            .iter()
            .filter(|r| r.outcome != Outcome::JoinFailed)
            .map(|r| (prequeue_score(seed, &r.id), r.id.as_str()))
            .collect(),
        None => Vec::new(),
    };
    draw.sort_unstable();
    let rank: HashMap<&str, u64> = draw
        .iter()
        .enumerate()
        .map(|(i, (_, id))| (*id, i as u64))
        .collect();
    let mut draw_mismatches = 0;
    let mut unchecked = 0;
    for r in records {
        let seen = r.position.or_else(|| r.waiting.last().map(|w| w.position));
        match (seen, rank.get(r.id.as_str())) {
            (Some(p), Some(k)) if p == k + 1 => {}
            (Some(_), _) => draw_mismatches += 1,
            (None, _) => unchecked += 1,
        }
    }
    let order_violations = crowd::order_violations(records, &rank);
    (order_violations, draw_mismatches, unchecked)
}

/// The holds the winners kept for the walk-through, with each one's
/// token and edge client.
fn won_holds(records: &[Record], who: &HashMap<String, (String, Api)>) -> Vec<WonHold> {
    records
        .iter()
        .filter_map(|r| {
            let hold = r.hold.clone()?;
            let (bearer, api) = who.get(&r.id)?.clone();
            Some(WonHold {
                user: r.id.clone(),
                bearer,
                api,
                hold,
            })
        })
        .collect()
}

/// An outcome as the demo says it.
fn outcome_words(name: &str) -> &str {
    match name {
        "no_seats" => "found every seat group they tried taken",
        "sold_out" => "were told the show is sold out",
        "not_paid" => "held seats but their payment did not go through",
        "still_waiting" => "were still waiting when the demo stopped",
        "join_failed" => "could not join",
        other => other,
    }
}

/// The fairness checks.
pub(super) fn check_order(sale: &SaleOutcome, checks: &mut Checks) {
    let verified = match (&sale.seed, &sale.commitment) {
        (Some(seed), Some(c)) => seed_commitment(seed) == *c,
        _ => false,
    };
    checks.record(
        "the seed revealed at opening matches the commitment shown before it",
        verified,
        format!(
            "commitment {:?}, seed {:?}",
            sale.commitment.as_deref(),
            sale.seed.as_deref()
        ),
    );
    checks.record(
        "every buyer's place is the one the committed seed draws (SHA-1 of seed and id)",
        sale.draw_mismatches == 0 && sale.unchecked == 0,
        format!(
            "{} places differ, {} buyers never saw a place",
            sale.draw_mismatches, sale.unchecked
        ),
    );
    checks.record(
        "nobody was told to wait after someone behind them had been admitted",
        sale.order_violations == 0,
        format!("{} buyers admitted out of order", sale.order_violations),
    );
    checks.record(
        "every buyer who joined was admitted",
        sale.admitted() == sale.joined,
        format!("{} of {} admitted", sale.admitted(), sale.joined),
    );
}

/// Prints the intruder's attempts and checks none got through.
pub(super) fn report_bypass(sale: &SaleOutcome, checks: &mut Checks) {
    println!("   {INTRUDER} never joined the waiting room and tries to hold seats anyway:");
    for a in &sale.bypass {
        println!("     {:<52} -> {}", a.what, a.answer);
    }
    checks.record(
        "every attempt to get round the queue is refused by the pass check",
        !sale.bypass.is_empty() && sale.bypass_accepted() == 0,
        format!(
            "{} of {} attempts accepted",
            sale.bypass_accepted(),
            sale.bypass.len()
        ),
    );
}

const INTRUDER: &str = "demo-intruder";

/// The intruder's attempts, made once a few buyers hold passes (seats are
/// still free then: a hold let through would be a 201).
async fn intrude(crowd: &Arc<Crowd>, region: &Api, edge_api: &Api, bearer: &str) -> Vec<Attempt> {
    while crowd.admitted() < 3 && Instant::now() < crowd.deadline() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some((victim, genuine)) = crowd.first_passes().into_iter().next() else {
        return Vec::new();
    };
    let show = &crowd.plan().show;
    let forged = edge::forged_pass(INTRUDER, show, unix_ms() / 1000);
    let edge = edge_api.at_ip(&edge::client_ip(900_000));
    let path = format!("/v1/shows/{show}/holds");
    let what_stolen: &'static str = "through the edge, a winner's pass";
    // (what, through the edge, pass)
    let tries: [(&'static str, bool, Option<&str>); 5] = [
        ("straight to the region core, no pass", false, None),
        (
            "straight to the region core, a winner's pass",
            false,
            Some(&genuine),
        ),
        ("through the edge, no pass", true, None),
        ("through the edge, a forged pass", true, Some(&forged)),
        (what_stolen, true, Some(&genuine)),
    ];
    let mut out = Vec::new();
    for (what, via_edge, pass) in tries {
        let headers: Vec<(&str, &str)> = pass.map(|p| ("Admission-Pass", p)).into_iter().collect();
        let body = CreateHold {
            seats: crowd.pick(),
        };
        let api = if via_edge { &edge } else { region };
        let send = api.send_with(Method::POST, &path, Some(bearer), &headers, Some(&body));
        let r = if via_edge {
            crowd.call(Kind::Bypass, send).await
        } else {
            send.await
        };
        let (answer, accepted) = match &r {
            Ok(r) => {
                let accepted = edge::passed_pass_check(r);
                if r.status.is_success() {
                    // Not to be left holding seats it should never have had.
                    if let Ok(h) = r.json::<shared::api::Hold>() {
                        let _ = region
                            .send(
                                Method::DELETE,
                                &format!("/v1/holds/{}", h.hold_id),
                                Some(bearer),
                                None,
                                None::<&()>,
                            )
                            .await;
                    }
                }
                (
                    format!("{} {}", r.status.as_u16(), code_of(r).unwrap_or_default()),
                    accepted,
                )
            }
            Err(e) => (format!("no answer ({e})"), false),
        };
        let answer = if what == what_stolen {
            format!("{answer} (the pass is {victim}'s)")
        } else {
            answer
        };
        out.push(Attempt {
            what,
            answer,
            accepted,
        });
    }
    out
}
