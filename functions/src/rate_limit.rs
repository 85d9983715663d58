//! Rate limiting at the edge, per route class, for the caller's IP and
//! (when the request has a verified token) their user id, by GCRA
//! (`shared::rate_limit`) in one Redis script per decision
//! ([`crate::scripts::GATE`]). This module holds the configuration, the
//! script's arguments and the reading of its reply, the deny list, and
//! the in-isolate cache of callers already refused, which answers a
//! blocked client without a Redis call until its retry time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Deserialize;
use shared::rate_limit::{headers, retry_after_secs, Gcra, RateDecision};

use crate::auth::ip_bucket;
use crate::error::EdgeError;
use crate::upstash::{Reply, UpstashError};

/// The Redis set of denied callers (`ip:<bucket>`, `user:<id>`).
pub const DENY_SET: &str = "edge:deny";

/// Routes are limited by class; each class has its own limits and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteClass {
    /// Cached catalog reads.
    Catalog,
    /// Creating a hold.
    Hold,
    /// Paying for a hold.
    Checkout,
    /// Joining a waiting room.
    Join,
    /// Polling a waiting room (JSON or the HTML page).
    Status,
    /// Everything else forwarded to a region (bookings, holds, …).
    Api,
    /// Operator endpoints.
    Operator,
    /// Failed token checks, per client IP: a token guesser gets 429.
    AuthFailure,
}

impl RouteClass {
    /// Every class.
    pub const ALL: [Self; 8] = [
        Self::Catalog,
        Self::Hold,
        Self::Checkout,
        Self::Join,
        Self::Status,
        Self::Api,
        Self::Operator,
        Self::AuthFailure,
    ];

    /// The class's name in `RATE_LIMITS` and in Redis keys.
    pub fn name(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Hold => "hold",
            Self::Checkout => "checkout",
            Self::Join => "join",
            Self::Status => "status",
            Self::Api => "api",
            Self::Operator => "operator",
            Self::AuthFailure => "auth_failure",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// What a route does when Upstash cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Let the request through unlimited.
    Open,
    /// Refuse it: 503 + `Retry-After`.
    Closed,
}

/// The limits of one route class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLimit {
    /// Per user (verified token subject).
    pub user: Gcra,
    /// Per IP bucket.
    pub ip: Gcra,
    /// What one request of this class spends (weighted requests).
    pub cost: u32,
    /// Without Upstash.
    pub fail: FailMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GcraJson {
    limit: u32,
    period_ms: u64,
    burst: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassJson {
    limit: u32,
    period_ms: u64,
    burst: u32,
    cost: Option<u32>,
    fail: Option<FailMode>,
    ip: Option<GcraJson>,
}

/// Without an explicit `ip` limit, an IP gets this many times the user
/// limit: several users may share one address (NAT, mobile carriers).
pub const IP_FACTOR: u32 = 10;

const fn gcra(limit: u32, period_ms: u64, burst: u32) -> Gcra {
    Gcra {
        limit,
        period_ms,
        burst,
    }
}

fn times(g: Gcra, k: u32) -> Gcra {
    gcra(
        g.limit.saturating_mul(k),
        g.period_ms,
        g.burst.saturating_mul(k),
    )
}

fn checked(g: Gcra, cost: u32, what: &str) -> Result<Gcra, String> {
    if g.limit == 0 || g.period_ms == 0 || g.burst == 0 {
        return Err(format!(
            "{what}: limit, period_ms and burst must be at least 1"
        ));
    }
    if cost > g.burst {
        return Err(format!(
            "{what}: a cost of {cost} above the burst of {} could never pass",
            g.burst
        ));
    }
    Ok(g)
}

/// The limits of every class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    classes: BTreeMap<RouteClass, ClassLimit>,
}

impl Default for RateLimits {
    fn default() -> Self {
        let class = |user: Gcra, fail| ClassLimit {
            user,
            ip: times(user, IP_FACTOR),
            cost: 1,
            fail,
        };
        use FailMode::{Closed, Open};
        Self {
            classes: BTreeMap::from([
                (RouteClass::Catalog, class(gcra(20, 1_000, 40), Open)),
                (RouteClass::Hold, class(gcra(5, 1_000, 10), Closed)),
                (RouteClass::Checkout, class(gcra(2, 1_000, 5), Closed)),
                (RouteClass::Join, class(gcra(1, 1_000, 3), Closed)),
                (RouteClass::Status, class(gcra(2, 1_000, 6), Closed)),
                (RouteClass::Api, class(gcra(10, 1_000, 20), Open)),
                (RouteClass::Operator, class(gcra(20, 1_000, 40), Open)),
                // Failures carry no user: only the IP limit applies (30 a
                // minute); open when Redis is down (the 401 still stands).
                (
                    RouteClass::AuthFailure,
                    ClassLimit {
                        ip: gcra(30, 60_000, 30),
                        ..class(gcra(30, 60_000, 30), Open)
                    },
                ),
            ]),
        }
    }
}

impl RateLimits {
    /// Parses `RATE_LIMITS`: `{"hold": {"limit": 5, "period_ms": 1000,
    /// "burst": 10, "cost": 1, "fail": "closed", "ip": {…}}, …}`. Classes
    /// left out keep their defaults; `cost` defaults to 1, `fail` to the
    /// class's default, `ip` to [`IP_FACTOR`] × the user limit.
    pub fn parse(json: &str) -> Result<Self, String> {
        let given: BTreeMap<String, ClassJson> = serde_json::from_str(json)
            .map_err(|e| format!("not a JSON object of class limits: {e}"))?;
        let mut out = Self::default();
        for (name, c) in given {
            let class = RouteClass::parse(&name).ok_or_else(|| {
                let names: Vec<_> = RouteClass::ALL.iter().map(|c| c.name()).collect();
                format!("unknown class {name:?} (classes: {})", names.join(", "))
            })?;
            let cost = c.cost.unwrap_or(1);
            if cost == 0 {
                return Err(format!("{name}: cost must be at least 1"));
            }
            let user = checked(gcra(c.limit, c.period_ms, c.burst), cost, &name)?;
            let ip = match c.ip {
                Some(g) => checked(gcra(g.limit, g.period_ms, g.burst), cost, &name)?,
                None => times(user, IP_FACTOR),
            };
            let default_fail = out.get(class).fail;
            out.classes.insert(
                class,
                ClassLimit {
                    user,
                    ip,
                    cost,
                    fail: c.fail.unwrap_or(default_fail),
                },
            );
        }
        Ok(out)
    }

    /// The limits of `class`.
    pub fn get(&self, class: RouteClass) -> &ClassLimit {
        // Every class is present: `default()` fills them all and `parse`
        // only replaces entries.
        &self.classes[&class]
    }
}

/// Callers refused outright, from the `DENY_LIST` var (the Redis set
/// [`DENY_SET`] holds the ones added at run time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList {
    ips: HashSet<String>,
    users: HashSet<String>,
}

impl DenyList {
    /// Parses entries separated by commas or whitespace: `ip:<address>`,
    /// `user:<id>`, or a bare IP address.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let (kind, value) = entry.split_once(':').unwrap_or(("ip", entry));
            let (kind, value) = if entry.parse::<IpAddr>().is_ok() {
                ("ip", entry)
            } else {
                (kind, value)
            };
            match kind {
                "ip" => {
                    value
                        .parse::<IpAddr>()
                        .map_err(|_| format!("{entry:?} is not an IP address"))?;
                    out.ips.insert(ip_bucket(value));
                }
                "user" if !value.is_empty() => {
                    out.users.insert(value.to_owned());
                }
                _ => return Err(format!("{entry:?}: use ip:<address> or user:<id>")),
            }
        }
        Ok(out)
    }

    /// Whether the caller is denied by the configured list.
    pub fn denies(&self, caller: &Caller<'_>) -> bool {
        self.ips.contains(caller.ip_bucket) || caller.user.is_some_and(|u| self.users.contains(u))
    }
}

/// Who a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// [`ip_bucket`] of the client IP.
    pub ip_bucket: &'a str,
    /// The verified user id, if the request has a token.
    pub user: Option<&'a str>,
}

impl Caller<'_> {
    /// The Redis key of the IP limit of `class`.
    pub fn ip_key(&self, class: RouteClass) -> String {
        format!("rl:{}:ip:{}", class.name(), self.ip_bucket)
    }

    /// The Redis key of the user limit of `class`.
    pub fn user_key(&self, class: RouteClass) -> Option<String> {
        self.user.map(|u| format!("rl:{}:u:{u}", class.name()))
    }

    fn deny_members(&self) -> (String, String) {
        (
            format!("ip:{}", self.ip_bucket),
            format!("user:{}", self.user.unwrap_or("")),
        )
    }
}

/// The gate's keys and arguments: KEYS = deny set, IP key, user key (or a
/// placeholder), then `context` keys; ARGV as documented on the script.
pub fn gate_keys_args(
    class: RouteClass,
    limit: &ClassLimit,
    caller: &Caller<'_>,
    now_ms: i64,
    context: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut keys = vec![
        DENY_SET.to_owned(),
        caller.ip_key(class),
        caller
            .user_key(class)
            .unwrap_or_else(|| format!("rl:{}:u:-", class.name())),
    ];
    keys.extend(context.iter().cloned());
    let (ip_member, user_member) = caller.deny_members();
    let args = vec![
        now_ms.to_string(),
        limit.cost.to_string(),
        limit.ip.emission_ms().to_string(),
        limit.ip.burst_offset_ms().to_string(),
        limit.user.emission_ms().to_string(),
        limit.user.burst_offset_ms().to_string(),
        if caller.user.is_some() { "1" } else { "0" }.to_owned(),
        ip_member,
        user_member,
    ];
    (keys, args)
}

/// Which of the caller's identities a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The IP bucket.
    Ip,
    /// The user.
    User,
}

/// What the gate script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// On the deny list.
    Denied(Who),
    /// Checked against the limits (allowed only if both allowed).
    Checked {
        /// The IP key's decision.
        ip: RateDecision,
        /// The user key's decision (requests with a token).
        user: Option<RateDecision>,
    },
}

fn key_decision(items: &[Reply]) -> Result<RateDecision, UpstashError> {
    let n = |i: usize| items[i].int();
    let nonneg = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(RateDecision {
        allowed: n(0)? == 1,
        new_tat_ms: None,
        remaining: u32::try_from(n(1)?.max(0)).unwrap_or(u32::MAX),
        retry_after_ms: nonneg(n(2)?),
        reset_after_ms: nonneg(n(3)?),
    })
}

/// Reads the gate's part of a reply (`gate()`'s table).
pub fn decode_gate(reply: &Reply, has_user: bool) -> Result<GateVerdict, UpstashError> {
    let items = reply.array()?;
    let first = items
        .first()
        .ok_or_else(|| UpstashError::Protocol("an empty gate reply".into()))?
        .int()?;
    if first == -1 {
        let who = match items.get(1).map(Reply::int).transpose()? {
            Some(2) => Who::User,
            _ => Who::Ip,
        };
        return Ok(GateVerdict::Denied(who));
    }
    if items.len() != 9 {
        return Err(UpstashError::Protocol(format!(
            "a gate reply of {} items",
            items.len()
        )));
    }
    Ok(GateVerdict::Checked {
        ip: key_decision(&items[1..5])?,
        user: if has_user {
            Some(key_decision(&items[5..9])?)
        } else {
            None
        },
    })
}

/// Reads a [`crate::scripts::GATE`] reply: the verdict and the context
/// values (present when allowed).
pub fn decode_gate_reply(
    reply: &Reply,
    has_user: bool,
) -> Result<(GateVerdict, Vec<Option<String>>), UpstashError> {
    let items = reply.array()?;
    let gate = items
        .first()
        .ok_or_else(|| UpstashError::Protocol("an empty reply".into()))?;
    let verdict = decode_gate(gate, has_user)?;
    let context = items[1..]
        .iter()
        .map(|r| r.opt_str().map(|s| s.map(str::to_owned)))
        .collect::<Result<_, _>>()?;
    Ok((verdict, context))
}

/// What to do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Go ahead; add these `RateLimit-*` headers to the response.
    Allowed(Vec<(&'static str, String)>),
    /// Refuse with this error; remember these keys as refused until the
    /// given time, so the next attempts cost no Redis call.
    Refused(EdgeError, Vec<(String, Refusal)>),
}

/// A refusal remembered in the isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Refused until then (unix ms).
    pub until_ms: i64,
    /// What to answer meanwhile.
    pub kind: RefusalKind,
}

/// Why a remembered key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Over its limit: 429.
    Limited {
        /// `RateLimit-Limit` (the burst).
        limit: u32,
        /// When the key is back to a full burst (unix ms).
        reset_at_ms: i64,
    },
    /// On the deny list: 403.
    Denied,
}

/// How long a deny-list hit is remembered in the isolate. Removing
/// someone from the list takes effect within this time.
pub const DENY_MEMORY_MS: i64 = 30_000;

/// The in-isolate memory key for a deny-list hit.
pub fn deny_memory_key(caller: &Caller<'_>, who: Who) -> String {
    match who {
        Who::Ip => format!("deny:ip:{}", caller.ip_bucket),
        Who::User => format!("deny:user:{}", caller.user.unwrap_or("")),
    }
}

fn rate_limited(limit: &Gcra, d: &RateDecision) -> EdgeError {
    let mut e = EdgeError::new(429, "rate_limited", "too many requests, retry later");
    e.headers.extend(headers(limit, d));
    e.retry_after(retry_after_secs(d))
}

/// Turns the gate's verdict into what to do: the binding limit (the one
/// refusing, else the one closest to running out) gives the headers.
pub fn outcome(
    class: RouteClass,
    limit: &ClassLimit,
    caller: &Caller<'_>,
    verdict: &GateVerdict,
    now_ms: i64,
) -> Outcome {
    let (ip, user) = match verdict {
        GateVerdict::Denied(who) => {
            let refusal = Refusal {
                until_ms: now_ms + DENY_MEMORY_MS,
                kind: RefusalKind::Denied,
            };
            return Outcome::Refused(
                EdgeError::denied(),
                vec![(deny_memory_key(caller, *who), refusal)],
            );
        }
        GateVerdict::Checked { ip, user } => (ip, user),
    };
    let mut keyed = vec![(caller.ip_key(class), &limit.ip, ip)];
    if let (Some(key), Some(d)) = (caller.user_key(class), user) {
        keyed.push((key, &limit.user, d));
    }
    let refused: Vec<_> = keyed.iter().filter(|(_, _, d)| !d.allowed).collect();
    if let Some((_, g, d)) = refused.iter().max_by_key(|(_, _, d)| d.retry_after_ms) {
        let remember = refused
            .iter()
            .map(|(key, g, d)| {
                let refusal = Refusal {
                    until_ms: now_ms + d.retry_after_ms as i64,
                    kind: RefusalKind::Limited {
                        limit: g.burst.max(1),
                        reset_at_ms: now_ms + d.reset_after_ms as i64,
                    },
                };
                (key.clone(), refusal)
            })
            .collect();
        return Outcome::Refused(rate_limited(g, d), remember);
    }
    let (_, g, d) = keyed
        .iter()
        .min_by_key(|(_, _, d)| d.remaining)
        .expect("the IP key is always checked");
    Outcome::Allowed(headers(g, d).into_iter().collect())
}

/// What a route does when the gate could not be asked.
pub fn on_unavailable(limit: &ClassLimit) -> Result<(), EdgeError> {
    match limit.fail {
        FailMode::Open => Ok(()),
        FailMode::Closed => Err(EdgeError::edge_state_unavailable()),
    }
}

/// Refusals remembered in the isolate, so a client that keeps knocking
/// after a 429 or a deny costs no Redis call until its retry time.
/// Bounded: when full, the entry that expires first makes room.
#[derive(Debug, Default)]
pub struct RefusalMemory {
    entries: HashMap<String, Refusal>,
}

/// Most refusals remembered per isolate.
pub const REFUSAL_MEMORY_CAP: usize = 10_000;

impl RefusalMemory {
    /// The answer for a request whose keys include a remembered refusal.
    pub fn check(&mut self, keys: &[String], now_ms: i64) -> Option<EdgeError> {
        let mut worst: Option<Refusal> = None;
        for key in keys {
            match self.entries.get(key) {
                Some(r) if r.until_ms > now_ms => {
                    let denied = matches!(r.kind, RefusalKind::Denied);
                    let later = worst.is_none_or(|w| r.until_ms > w.until_ms);
                    if denied || later {
                        worst = Some(*r);
                    }
                    if denied {
                        break;
                    }
                }
                Some(_) => {
                    self.entries.remove(key);
                }
                None => {}
            }
        }
        let r = worst?;
        Some(match r.kind {
            RefusalKind::Denied => EdgeError::denied(),
            RefusalKind::Limited { limit, reset_at_ms } => {
                let secs = |ms: i64| (ms.max(0) as u64).div_ceil(1000);
                let mut e = EdgeError::new(429, "rate_limited", "too many requests, retry later");
                e.headers.extend([
                    ("RateLimit-Limit", limit.to_string()),
                    ("RateLimit-Remaining", "0".to_string()),
                    ("RateLimit-Reset", secs(reset_at_ms - now_ms).to_string()),
                ]);
                e.retry_after(secs(r.until_ms - now_ms))
            }
        })
    }

    /// Remembers a refusal.
    pub fn remember(&mut self, key: String, refusal: Refusal, now_ms: i64) {
        if self.entries.len() >= REFUSAL_MEMORY_CAP && !self.entries.contains_key(&key) {
            self.entries.retain(|_, r| r.until_ms > now_ms);
            if self.entries.len() >= REFUSAL_MEMORY_CAP {
                if let Some(first) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, r)| r.until_ms)
                    .map(|(k, _)| k.clone())
                {
                    self.entries.remove(&first);
                }
            }
        }
        self.entries.insert(key, refusal);
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The keys to look up in [`RefusalMemory`] for a request.
pub fn memory_keys(class: RouteClass, caller: &Caller<'_>) -> Vec<String> {
    let mut keys = vec![deny_memory_key(caller, Who::Ip), caller.ip_key(class)];
    if let Some(k) = caller.user_key(class) {
        keys.push(deny_memory_key(caller, Who::User));
        keys.push(k);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Caller<'static> = Caller {
        ip_bucket: "203.0.113.9",
        user: Some("alice"),
    };

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Plays the gate script in Rust with `shared`'s arithmetic: what the
    /// script must compute (the Redis test checks it does).
    fn simulate(
        limit: &ClassLimit,
        tats: &mut (Option<i64>, Option<i64>),
        has_user: bool,
        now: i64,
    ) -> GateVerdict {
        let ip = limit.ip.decide(tats.0, now, limit.cost);
        let user = has_user.then(|| limit.user.decide(tats.1, now, limit.cost));
        if ip.allowed && user.is_none_or(|u| u.allowed) {
            tats.0 = ip.new_tat_ms;
            if let Some(u) = &user {
                tats.1 = u.new_tat_ms;
            }
        }
        let strip = |d: RateDecision| RateDecision {
            new_tat_ms: None,
            ..d
        };
        GateVerdict::Checked {
            ip: strip(ip),
            user: user.map(strip),
        }
    }

    #[test]
    fn config_parses_with_defaults_and_checks() {
        let l = RateLimits::parse(
            r#"{"hold":{"limit":5,"period_ms":1000,"burst":10,"cost":2,"fail":"open"},
                "catalog":{"limit":100,"period_ms":1000,"burst":100,"ip":{"limit":1,"period_ms":1000,"burst":1}}}"#,
        )
        .unwrap();
        let hold = l.get(RouteClass::Hold);
        assert_eq!((hold.cost, hold.fail), (2, FailMode::Open));
        assert_eq!(
            hold.ip,
            gcra(50, 1_000, 100),
            "ip defaults to 10x the user limit"
        );
        assert_eq!(l.get(RouteClass::Catalog).ip, gcra(1, 1_000, 1));
        assert_eq!(
            l.get(RouteClass::Catalog).fail,
            FailMode::Open,
            "class default"
        );
        assert_eq!(
            l.get(RouteClass::Join),
            RateLimits::default().get(RouteClass::Join)
        );
        for bad in [
            r#"{"nope":{"limit":1,"period_ms":1,"burst":1}}"#,
            r#"{"hold":{"limit":0,"period_ms":1000,"burst":1}}"#,
            r#"{"hold":{"limit":1,"period_ms":1000,"burst":2,"cost":3}}"#,
            r#"{"hold":{"limit":1,"period_ms":1000,"burst":2,"extra":1}}"#,
            r#"{"hold":{"limit":1,"period_ms":1000,"burst":2,"fail":"maybe"}}"#,
            "[]",
        ] {
            assert!(RateLimits::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deny_list_entries() {
        let d = DenyList::parse("ip:198.51.100.7, user:mallory 2001:db8::1").unwrap();
        let c = |ip, user| Caller {
            ip_bucket: ip,
            user,
        };
        assert!(d.denies(&c("198.51.100.7", None)));
        assert!(d.denies(&c("1.1.1.1", Some("mallory"))));
        let v6 = ip_bucket("2001:db8::5");
        assert!(d.denies(&c(&v6, None)), "IPv6 by its /64");
        assert!(!d.denies(&c("1.1.1.1", Some("alice"))));
        assert!(DenyList::parse("ip:nope").is_err());
        assert!(DenyList::parse("host:x").is_err());
        assert_eq!(DenyList::parse("").unwrap(), DenyList::default());
    }

    #[test]
    fn the_gate_arguments_follow_the_script_contract() {
        let limit = RateLimits::default().get(RouteClass::Hold).to_owned();
        let (keys, args) = gate_keys_args(
            RouteClass::Hold,
            &limit,
            &ALICE,
            1_000,
            &["edge:catalog:v".into()],
        );
        assert_eq!(
            keys,
            [
                "edge:deny",
                "rl:hold:ip:203.0.113.9",
                "rl:hold:u:alice",
                "edge:catalog:v"
            ]
        );
        assert_eq!(
            args,
            [
                "1000",
                "1",
                "20",
                "2000",
                "200",
                "2000",
                "1",
                "ip:203.0.113.9",
                "user:alice"
            ]
        );
        let anon = Caller {
            ip_bucket: "1.2.3.4",
            user: None,
        };
        let (keys, args) = gate_keys_args(RouteClass::Catalog, &limit, &anon, 0, &[]);
        assert_eq!(keys[2], "rl:catalog:u:-");
        assert_eq!(args[6], "0");
    }

    #[test]
    fn replies_decode_both_keys_and_the_context() {
        let r = Reply::Array(vec![
            Reply::Array([1, 1, 9, 0, 100, 1, 4, 0, 600].map(Reply::Int).to_vec()),
            Reply::Str("7".into()),
            Reply::Nil,
        ]);
        let (v, ctx) = decode_gate_reply(&r, true).unwrap();
        let GateVerdict::Checked { ip, user } = v else {
            panic!("{v:?}")
        };
        assert!(ip.allowed && user.unwrap().allowed);
        assert_eq!((ip.remaining, user.unwrap().remaining), (9, 4));
        assert_eq!(ctx, vec![Some("7".to_string()), None]);
        let denied = Reply::Array(vec![Reply::Array(vec![Reply::Int(-1), Reply::Int(2)])]);
        assert_eq!(
            decode_gate_reply(&denied, true).unwrap().0,
            GateVerdict::Denied(Who::User)
        );
        assert!(decode_gate_reply(&Reply::Array(vec![]), true).is_err());
        assert!(decode_gate(&Reply::Array(vec![Reply::Int(1)]), true).is_err());
    }

    #[test]
    fn both_keys_must_allow_and_the_binding_one_gives_the_headers() {
        // Users: 10/s burst 5; IPs: 10/s burst 8.
        let limit = ClassLimit {
            user: gcra(10, 1_000, 5),
            ip: gcra(10, 1_000, 8),
            cost: 1,
            fail: FailMode::Closed,
        };
        let mut tats = (None, None);
        for i in 0..5 {
            let v = simulate(&limit, &mut tats, true, 0);
            let Outcome::Allowed(h) = outcome(RouteClass::Hold, &limit, &ALICE, &v, 0) else {
                panic!("request {i}")
            };
            // The user key is closer to its limit: its numbers are shown.
            assert_eq!(header(&h, "RateLimit-Limit"), Some("5"));
            assert_eq!(
                header(&h, "RateLimit-Remaining"),
                Some(&*(4 - i).to_string())
            );
        }
        let v = simulate(&limit, &mut tats, true, 0);
        let Outcome::Refused(e, remember) = outcome(RouteClass::Hold, &limit, &ALICE, &v, 0) else {
            panic!("over the user limit")
        };
        assert_eq!((e.status, e.code), (429, "rate_limited"));
        assert_eq!(header(&e.headers, "Retry-After"), Some("1"));
        assert_eq!(header(&e.headers, "RateLimit-Remaining"), Some("0"));
        assert_eq!(remember.len(), 1);
        assert_eq!(remember[0].0, "rl:hold:u:alice");
        assert_eq!(remember[0].1.until_ms, 100);
        // The refusal spent nothing from the IP key: another user on the
        // same IP still has 3 of its 8 (5 were spent by alice).
        assert_eq!(tats.0, Some(500));
        let bob = Caller {
            user: Some("bob"),
            ..ALICE
        };
        let mut bob_tats = (tats.0, None);
        for _ in 0..3 {
            let v = simulate(&limit, &mut bob_tats, true, 0);
            assert!(matches!(
                outcome(RouteClass::Hold, &limit, &bob, &v, 0),
                Outcome::Allowed(_)
            ));
        }
        let v = simulate(&limit, &mut bob_tats, true, 0);
        let Outcome::Refused(_, remember) = outcome(RouteClass::Hold, &limit, &bob, &v, 0) else {
            panic!("the IP is used up")
        };
        assert_eq!(remember[0].0, "rl:hold:ip:203.0.113.9");
    }

    #[test]
    fn weighted_requests_and_anonymous_callers() {
        let limit = ClassLimit {
            user: gcra(10, 1_000, 5),
            ip: gcra(10, 1_000, 6),
            cost: 3,
            fail: FailMode::Open,
        };
        let anon = Caller {
            ip_bucket: "1.2.3.4",
            user: None,
        };
        let mut tats = (None, None);
        let v = simulate(&limit, &mut tats, false, 0);
        let Outcome::Allowed(h) = outcome(RouteClass::Catalog, &limit, &anon, &v, 0) else {
            panic!()
        };
        assert_eq!(header(&h, "RateLimit-Remaining"), Some("3"));
        assert!(matches!(
            outcome(
                RouteClass::Catalog,
                &limit,
                &anon,
                &simulate(&limit, &mut tats, false, 0),
                0
            ),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            outcome(
                RouteClass::Catalog,
                &limit,
                &anon,
                &simulate(&limit, &mut tats, false, 0),
                0
            ),
            Outcome::Refused(..)
        ));
    }

    #[test]
    fn refusals_are_remembered_until_their_retry_time() {
        let mut m = RefusalMemory::default();
        let keys = memory_keys(RouteClass::Hold, &ALICE);
        assert_eq!(m.check(&keys, 0), None);
        m.remember(
            "rl:hold:u:alice".into(),
            Refusal {
                until_ms: 1_500,
                kind: RefusalKind::Limited {
                    limit: 5,
                    reset_at_ms: 2_000,
                },
            },
            0,
        );
        let e = m.check(&keys, 100).unwrap();
        assert_eq!(e.status, 429);
        assert_eq!(header(&e.headers, "Retry-After"), Some("2"));
        assert_eq!(header(&e.headers, "RateLimit-Reset"), Some("2"));
        assert_eq!(m.check(&keys, 1_500), None, "expired");
        assert!(m.is_empty(), "expired entries are dropped when seen");
        // A deny wins over a rate limit.
        m.remember(
            deny_memory_key(&ALICE, Who::Ip),
            Refusal {
                until_ms: 30_000,
                kind: RefusalKind::Denied,
            },
            0,
        );
        assert_eq!(m.check(&keys, 10).unwrap().code, "denied");
        // Another class on the same IP is not limited by the hold key, but
        // a deny covers every class.
        let other = memory_keys(RouteClass::Catalog, &ALICE);
        assert_eq!(m.check(&other, 10).unwrap().code, "denied");
    }

    #[test]
    fn refusal_memory_is_bounded() {
        let mut m = RefusalMemory::default();
        let r = |until_ms| Refusal {
            until_ms,
            kind: RefusalKind::Denied,
        };
        for i in 0..REFUSAL_MEMORY_CAP as i64 {
            m.remember(format!("k{i}"), r(1_000 + i), 0);
        }
        m.remember("new".into(), r(5_000), 0);
        assert_eq!(m.len(), REFUSAL_MEMORY_CAP);
        assert!(
            m.check(&["k0".into()], 0).is_none(),
            "the soonest to expire made room"
        );
        assert!(m.check(&["new".into()], 0).is_some());
    }

    #[test]
    fn fail_modes() {
        let l = RateLimits::default();
        assert!(on_unavailable(l.get(RouteClass::Catalog)).is_ok());
        let e = on_unavailable(l.get(RouteClass::Hold)).unwrap_err();
        assert_eq!((e.status, e.code), (503, "edge_state_unavailable"));
        assert_eq!(header(&e.headers, "Retry-After"), Some("1"));
    }
}
