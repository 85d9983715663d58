//! Intruders: users who try to get round the queue during the sale
//! (direct region holds, forged, altered or stolen passes), and what
//! they were answered.

use crate::crowd::{code_of, unix_ms, Crowd, Kind};
use crate::edge::{self};
use shared::api::CreateHold;
use shared::token::Role;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use testkit::api::{Api, Method, Minter};

/// What the intruders achieved.
#[derive(Debug, Default)]
pub(super) struct Bypass {
    pub(super) attempts: u64,
    pub(super) accepted: u64,
    /// Control attempts: the same hold with a pass genuinely signed for
    /// the intruder (what only the waiting room can issue). They must be
    /// let through, or `accepted == 0` would prove nothing.
    pub(super) controls: u64,
    pub(super) controls_accepted: u64,
    /// `where status code` → count.
    pub(super) answers: BTreeMap<String, u64>,
    /// Why the intruders could not run, if they could not.
    pub(super) error: Option<String>,
}

impl Bypass {
    pub(super) fn failed(e: String) -> Self {
        Self {
            error: Some(e),
            ..Self::default()
        }
    }
}

/// Who the intruders are and what they can reach.
pub(super) struct Intruders<'a> {
    pub(super) region: &'a Api,
    pub(super) edge: &'a Api,
    pub(super) minter: &'a Minter,
    /// The run's admission key, for the control attempts only.
    pub(super) admission_key: &'a str,
    pub(super) tag: &'a str,
}

/// Intruders who never joined try to hold seats without being admitted:
/// straight at the region core (no pass, a forged pass, a stolen one) and
/// through the edge (no pass, forged, altered, stolen). Counted as
/// accepted when the pass check let the hold through. Each also makes one
/// control attempt with a pass genuinely signed for it, which must be
/// accepted (and is released at once).
pub(super) async fn intrude(crowd: &Crowd, who: &Intruders<'_>, n: usize) -> Bypass {
    // Genuine passes to steal, while seats are still free (a bypass would
    // then show as a 201).
    while crowd.admitted() < 8 && Instant::now() < crowd.deadline() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stolen = crowd.first_passes();
    if stolen.is_empty() {
        return Bypass::failed("nobody was admitted: no pass to steal".into());
    }
    // All at once, so they are done while most seats are still free.
    let each = (0..n).map(|i| intruder(crowd, who, i, &stolen[i % stolen.len()]));
    let mut out = Bypass::default();
    for b in futures::future::join_all(each).await {
        out.attempts += b.attempts;
        out.accepted += b.accepted;
        out.controls += b.controls;
        out.controls_accepted += b.controls_accepted;
        for (k, v) in b.answers {
            *out.answers.entry(k).or_default() += v;
        }
        if out.error.is_none() {
            out.error = b.error;
        }
    }
    out
}

// About 90 lines: one match arm per way round the queue, each a few
// lines; apart, the list of attempts would be harder to check.
/// Intruder `i`'s attempts, with `stolen` = (victim, their pass).
pub(super) async fn intruder(
    crowd: &Crowd,
    who: &Intruders<'_>,
    i: usize,
    stolen: &(String, String),
) -> Bypass {
    let mut out = Bypass::default();
    let show = &crowd.plan().show;
    let path = format!("/v1/shows/{show}/holds");
    let id = format!("{}-intruder-{i}", who.tag);
    let bearer = match who.minter.bearer(&id, Role::User) {
        Ok(b) => b,
        Err(e) => return Bypass::failed(format!("{e:#}")),
    };
    let edge = who.edge.at_ip(&edge::client_ip(1_000_000 + i));
    let now_s = unix_ms() / 1000;
    let (victim, genuine) = stolen;
    let forged = edge::forged_pass(&id, show, now_s);
    let altered = edge::altered_pass(genuine, &id, show, now_s);
    let control = shared::admission::sign(
        who.admission_key.as_bytes(),
        &shared::admission::PassClaims {
            pid: format!("{show}:control-{i}"),
            sub: id.clone(),
            sale: show.clone(),
            pos: 0,
            iat: now_s,
            exp: now_s + 60,
        },
    );
    // (what, through the edge, pass)
    let attempts: [(&str, bool, Option<&str>); 8] = [
        ("region no_pass", false, None),
        ("region forged", false, Some(&forged)),
        ("region stolen", false, Some(genuine)),
        ("edge no_pass", true, None),
        ("edge forged", true, Some(&forged)),
        ("edge altered", true, Some(&altered)),
        ("edge stolen", true, Some(genuine)),
        ("edge control", true, Some(&control)),
    ];
    for (what, via_edge, pass) in attempts {
        let body = CreateHold {
            seats: crowd.pick(),
        };
        let headers: Vec<(&str, &str)> = pass.map(|p| ("Admission-Pass", p)).into_iter().collect();
        let api = if via_edge { &edge } else { who.region };
        let send = api.send_with(Method::POST, &path, Some(&bearer), &headers, Some(&body));
        let r = if via_edge {
            crowd.call(Kind::Bypass, send).await
        } else {
            send.await
        };
        let key = match &r {
            Ok(r) => format!(
                "{what} {} {}",
                r.status.as_u16(),
                code_of(r).unwrap_or_default()
            ),
            Err(_) => format!("{what} transport"),
        };
        *out.answers.entry(key.trim_end().to_owned()).or_default() += 1;
        let Ok(r) = &r else { continue };
        let passed = edge::passed_pass_check(r);
        if r.status.is_success() {
            // Whoever got it, the seats go back at once.
            if let Ok(h) = r.json::<shared::api::Hold>() {
                let release = format!("/v1/holds/{}", h.hold_id);
                let _ = who
                    .region
                    .send(Method::DELETE, &release, Some(&bearer), None, None::<&()>)
                    .await;
            }
        }
        if what == "edge control" {
            out.controls += 1;
            out.controls_accepted += u64::from(passed);
            continue;
        }
        out.attempts += 1;
        if passed {
            out.accepted += 1;
            eprintln!(
                "loadgen: BYPASS ACCEPTED: {what} (intruder {id}, pass of {victim}): {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    out
}
