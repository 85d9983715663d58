//! The edge's run-time controls, set through the operator API and read by
//! every isolate within seconds (no redeploy): the **deny list** (client
//! addresses, networks or users, each with a reason and an optional
//! expiry) and **peak mode** (stricter per-client limits; non-essential
//! reads served stale from the cache or refused with 503). Each control's
//! last change (who, when, before, after) is kept beside it.
//!
//! Stored in Upstash: the deny list as a hash (`edge:ctl:deny`, target →
//! entry JSON: an add or a removal is one `HSET`/`HDEL`, so two operators
//! editing at once lose nothing), peak mode as one JSON value
//! (`edge:ctl:peak`, replaced whole), and `…:last` for the last change.
//! Pure: parsing, checking, matching and the limits arithmetic; the I/O is
//! `wasm::controls`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use shared::client_ip::Cidr;

use crate::catalog::CacheKind;
use crate::error::EdgeError;
use crate::rate_limit::{Caller, ClassLimit, RouteClass};
use crate::waiting_room::rfc3339;

/// The deny list's hash.
pub const DENY_KEY: &str = "edge:ctl:deny";
/// Peak mode's value.
pub const PEAK_KEY: &str = "edge:ctl:peak";

/// Where a control's last change is kept.
pub fn last_key(control_key: &str) -> String {
    format!("{control_key}:last")
}

/// How often an isolate reads the controls again.
pub const REFRESH_MS: i64 = 2_000;

/// Most deny-list entries (the whole list is read every few seconds).
pub const MAX_DENY_ENTRIES: usize = 10_000;

/// Longest reason.
const MAX_REASON: usize = 500;

fn invalid(message: impl Into<String>) -> EdgeError {
    EdgeError::new(422, "invalid_control", message)
}

// ------------------------------------------------------------ deny list

/// What a deny-list entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    Net(Cidr),
    User(&'a str),
}

/// Parses a target as an operator writes it: an address, a CIDR, or
/// `user:<id>`. Returns it canonical (the hash field).
pub fn canonical_target(s: &str) -> Result<String, EdgeError> {
    let s = s.trim();
    if let Some(user) = s.strip_prefix("user:") {
        if user.is_empty() || user.len() > 200 || user.chars().any(char::is_control) {
            return Err(invalid(format!("{s:?}: user:<id> needs an id")));
        }
        return Ok(s.to_owned());
    }
    let cidr = Cidr::parse(s).map_err(invalid)?;
    // Canonical: the network's own address and its prefix, so
    // `10.0.0.7/8` and `10.0.0.0/8` are one entry.
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let ip: IpAddr = addr.parse().map_err(|_| invalid("bad address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = if prefix.is_empty() {
        max
    } else {
        prefix.parse().map_err(|_| invalid("bad prefix"))?
    };
    let net = match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    debug_assert!(cidr.contains(net));
    Ok(if prefix == max {
        net.to_string()
    } else {
        format!("{net}/{prefix}")
    })
}

fn target(s: &str) -> Option<Target<'_>> {
    match s.strip_prefix("user:") {
        Some(u) => Some(Target::User(u)),
        None => Cidr::parse(s).ok().map(Target::Net),
    }
}

/// One deny-list entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyEntry {
    /// Canonical target: `203.0.113.9`, `198.51.100.0/24`, `user:mallory`.
    pub target: String,
    /// Why (shown to operators, never to the client).
    pub reason: String,
    /// When it stops applying (unix ms), if ever.
    pub expires_at_ms: Option<i64>,
    /// The operator who added it (token subject).
    pub added_by: String,
    /// When (unix ms).
    pub added_at_ms: i64,
}

impl DenyEntry {
    fn live(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|t| t > now_ms)
    }

    /// The entry as operators read it.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.target,
            "reason": self.reason,
            "expires_at": self.expires_at_ms.map(rfc3339),
            "added_by": self.added_by,
            "added_at": rfc3339(self.added_at_ms),
        })
    }
}

/// The deny list as read from its hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList {
    /// By canonical target.
    pub entries: BTreeMap<String, DenyEntry>,
}

impl DenyList {
    /// Reads `HGETALL`'s flat `[field, value, …]` (entries that do not
    /// parse are skipped and named in the log by the caller).
    pub fn from_hash(flat: &[Option<&str>]) -> (Self, Vec<String>) {
        let mut out = Self::default();
        let mut bad = Vec::new();
        for pair in flat.chunks(2) {
            let (Some(Some(field)), Some(Some(value))) = (pair.first(), pair.get(1)) else {
                continue;
            };
            match serde_json::from_str::<DenyEntry>(value) {
                Ok(e) if target(&e.target).is_some() => {
                    out.entries.insert((*field).to_owned(), e);
                }
                _ => bad.push((*field).to_owned()),
            }
        }
        (out, bad)
    }

    /// The live entry denying `caller` from `ip`, if any.
    pub fn denies(&self, ip: &str, caller: &Caller<'_>, now_ms: i64) -> Option<&DenyEntry> {
        let ip: Option<IpAddr> = ip.parse().ok();
        self.entries.values().find(|e| {
            e.live(now_ms)
                && match target(&e.target) {
                    Some(Target::Net(n)) => ip.is_some_and(|ip| n.contains(ip)),
                    Some(Target::User(u)) => caller.user == Some(u),
                    None => false,
                }
        })
    }

    /// The live entries, as operators read them.
    pub fn view(&self, now_ms: i64) -> Vec<serde_json::Value> {
        self.entries
            .values()
            .filter(|e| e.live(now_ms))
            .map(DenyEntry::view)
            .collect()
    }

    /// Targets whose entries have expired (removed on the next change).
    pub fn expired(&self, now_ms: i64) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.live(now_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddJson {
    target: String,
    reason: String,
    expires_at: Option<String>,
    ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyChangeJson {
    #[serde(default)]
    add: Vec<AddJson>,
    #[serde(default)]
    remove: Vec<String>,
}

/// A checked change of the deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyChange {
    /// Entries to add (or replace).
    pub add: Vec<DenyEntry>,
    /// Canonical targets to remove.
    pub remove: Vec<String>,
}

/// Parses `PUT /v1/operator/edge/deny`: `{"add": [{"target", "reason",
/// "expires_at"?, "ttl_s"?}], "remove": [target, …]}`.
pub fn parse_deny_change(body: &[u8], who: &str, now_ms: i64) -> Result<DenyChange, EdgeError> {
    crate::auth::check_json(body)?;
    let req: DenyChangeJson = serde_json::from_slice(body)
        .map_err(|e| EdgeError::invalid_body(format!("not a deny-list change: {e}")))?;
    if req.add.is_empty() && req.remove.is_empty() {
        return Err(invalid("nothing to change: give add and/or remove"));
    }
    if req.add.len() + req.remove.len() > 1_000 {
        return Err(invalid("at most 1000 targets per change"));
    }
    let mut add = Vec::new();
    for a in req.add {
        let target = canonical_target(&a.target)?;
        let reason = a.reason.trim().to_owned();
        if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{target}: a reason of 1-{MAX_REASON} characters is required"
            )));
        }
        let expires_at_ms = match (a.expires_at, a.ttl_s) {
            (Some(_), Some(_)) => return Err(invalid("give expires_at or ttl_s, not both")),
            (Some(t), None) => Some(
                DateTime::parse_from_rfc3339(&t)
                    .map_err(|_| invalid("expires_at must be an RFC 3339 time"))?
                    .timestamp_millis(),
            ),
            (None, Some(s)) if (1..=366 * 86_400).contains(&s) => {
                Some(now_ms + i64::try_from(s).unwrap_or(0) * 1000)
            }
            (None, Some(_)) => return Err(invalid("ttl_s must be 1 s to 366 days")),
            (None, None) => None,
        };
        if expires_at_ms.is_some_and(|t| t <= now_ms) {
            return Err(invalid(format!("{target}: expires_at is in the past")));
        }
        add.push(DenyEntry {
            target,
            reason,
            expires_at_ms,
            added_by: who.to_owned(),
            added_at_ms: now_ms,
        });
    }
    let remove = req
        .remove
        .iter()
        .map(|t| canonical_target(t))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(both) = add.iter().find(|a| remove.contains(&a.target)) {
        return Err(invalid(format!(
            "{} is both added and removed",
            both.target
        )));
    }
    Ok(DenyChange { add, remove })
}

// ------------------------------------------------------------ peak mode

/// What peak mode does to non-essential reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonEssential {
    /// Served from the edge cache whatever its age; 503 if not cached.
    Stale,
    /// Refused: 503 with `Retry-After`.
    Off,
}

/// Peak mode as stored (and as `PUT /v1/operator/edge/peak` takes it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peak {
    /// On or off.
    pub enabled: bool,
    /// Per-client limits (users and IPs; every buyer class) are
    /// multiplied by this while on: 0.01–1.
    #[serde(default = "default_factor")]
    pub limit_factor: f64,
    /// Search and catalog browsing while on.
    #[serde(default = "default_non_essential")]
    pub non_essential: NonEssential,
    /// The `Retry-After` of a refused non-essential read, seconds.
    #[serde(default = "default_retry")]
    pub retry_after_s: u32,
}

fn default_factor() -> f64 {
    0.5
}
fn default_non_essential() -> NonEssential {
    NonEssential::Stale
}
fn default_retry() -> u32 {
    30
}

impl Default for Peak {
    fn default() -> Self {
        Self {
            enabled: false,
            limit_factor: default_factor(),
            non_essential: default_non_essential(),
            retry_after_s: default_retry(),
        }
    }
}

/// Parses and checks `PUT /v1/operator/edge/peak`.
pub fn parse_peak(body: &[u8]) -> Result<Peak, EdgeError> {
    crate::auth::check_json(body)?;
    let p: Peak = serde_json::from_slice(body)
        .map_err(|e| EdgeError::invalid_body(format!("not a peak-mode setting: {e}")))?;
    if !(p.limit_factor.is_finite() && (0.01..=1.0).contains(&p.limit_factor)) {
        return Err(invalid(
            "limit_factor must be 0.01–1 (it makes limits stricter)",
        ));
    }
    if !(1..=3_600).contains(&p.retry_after_s) {
        return Err(invalid("retry_after_s must be 1–3600"));
    }
    Ok(p)
}

/// Whether a cached read is essential to buying (served as usual in peak
/// mode): a show, its availability and seat map are; the city list, a
/// city's listings, titles and search are not.
pub fn essential(kind: CacheKind) -> bool {
    matches!(
        kind,
        CacheKind::Show | CacheKind::Availability | CacheKind::Seats
    )
}

/// 503 `peak_mode` for a non-essential read.
pub fn peak_refusal(p: &Peak) -> EdgeError {
    EdgeError::new(
        503,
        "peak_mode",
        "this read is paused during peak traffic; buying is not affected",
    )
    .retry_after(u64::from(p.retry_after_s))
}

fn scale(g: shared::rate_limit::Gcra, f: f64) -> shared::rate_limit::Gcra {
    // Rounded down, never below 1: stricter, never stopped.
    let s = |n: u32| ((f64::from(n) * f).floor() as u32).max(1);
    shared::rate_limit::Gcra {
        limit: s(g.limit),
        period_ms: g.period_ms,
        burst: s(g.burst),
    }
}

impl Peak {
    /// `limit` as peak mode makes it for `class`: the buyers' classes
    /// scaled by the factor; operators and failed-token counting as is.
    pub fn limit(&self, class: RouteClass, limit: &ClassLimit) -> ClassLimit {
        if !self.enabled || matches!(class, RouteClass::Operator | RouteClass::AuthFailure) {
            return *limit;
        }
        ClassLimit {
            user: scale(limit.user, self.limit_factor),
            ip: scale(limit.ip, self.limit_factor),
            ..*limit
        }
    }
}

// ------------------------------------------------------- both, and changes

/// The controls an isolate applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controls {
    /// The run-time deny list (the `DENY_LIST` var and the older
    /// `edge:deny` set apply too).
    pub deny: DenyList,
    /// Peak mode.
    pub peak: Peak,
}

/// A control's last change, kept under [`last_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastChange {
    /// The operator (token subject).
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
    /// The control before.
    pub before: serde_json::Value,
    /// The control after.
    pub after: serde_json::Value,
}

/// Reads a stored peak-mode value (absent or unreadable: off).
pub fn peak_from(stored: Option<&str>) -> Peak {
    stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn caller<'a>(user: Option<&'a str>) -> Caller<'a> {
        Caller {
            ip_bucket: "x",
            user,
        }
    }

    #[test]
    fn targets_are_canonical() {
        assert_eq!(canonical_target(" 203.0.113.9 ").unwrap(), "203.0.113.9");
        assert_eq!(canonical_target("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(canonical_target("10.1.2.3/32").unwrap(), "10.1.2.3");
        assert_eq!(canonical_target("2001:db8::7/64").unwrap(), "2001:db8::/64");
        assert_eq!(canonical_target("user:mallory").unwrap(), "user:mallory");
        for bad in ["", "user:", "10.0.0.0/33", "example.com", "10.0.0.1/x"] {
            assert_eq!(
                canonical_target(bad).unwrap_err().code,
                "invalid_control",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_change_is_checked() {
        let c = parse_deny_change(
            br#"{"add":[{"target":"198.51.100.7/24","reason":"scraper","ttl_s":60}],"remove":["user:bob"]}"#,
            "ops",
            NOW,
        )
        .unwrap();
        assert_eq!(c.add[0].target, "198.51.100.0/24");
        assert_eq!(c.add[0].expires_at_ms, Some(NOW + 60_000));
        assert_eq!(c.add[0].added_by, "ops");
        assert_eq!(c.remove, vec!["user:bob".to_owned()]);
        for bad in [
            &br#"{}"#[..],
            br#"{"add":[{"target":"1.2.3.4","reason":""}]}"#,
            br#"{"add":[{"target":"1.2.3.4","reason":"x","ttl_s":0}]}"#,
            br#"{"add":[{"target":"1.2.3.4","reason":"x","expires_at":"2000-01-01T00:00:00Z"}]}"#,
            br#"{"add":[{"target":"1.2.3.4","reason":"x"}],"remove":["1.2.3.4"]}"#,
            br#"{"add":[{"target":"nope","reason":"x"}]}"#,
        ] {
            let e = parse_deny_change(bad, "ops", NOW).unwrap_err();
            assert_eq!(e.status, 422, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_deny_change(br#"{"add":[],"extra":1}"#, "ops", NOW)
                .unwrap_err()
                .code,
            "invalid_body"
        );
    }

    #[test]
    fn entries_match_addresses_networks_and_users_until_they_expire() {
        let entry = |t: &str, exp: Option<i64>| {
            let e = DenyEntry {
                target: t.into(),
                reason: "r".into(),
                expires_at_ms: exp,
                added_by: "ops".into(),
                added_at_ms: NOW,
            };
            serde_json::to_string(&e).unwrap()
        };
        let (a, b, c) = (
            entry("198.51.100.0/24", None),
            entry("user:mallory", Some(NOW + 1000)),
            entry("203.0.113.9", Some(NOW - 1)),
        );
        let flat = [
            Some("198.51.100.0/24"),
            Some(a.as_str()),
            Some("user:mallory"),
            Some(b.as_str()),
            Some("203.0.113.9"),
            Some(c.as_str()),
            Some("junk"),
            Some("{"),
        ];
        let (list, bad) = DenyList::from_hash(&flat);
        assert_eq!(bad, vec!["junk".to_owned()]);
        assert!(list.denies("198.51.100.77", &caller(None), NOW).is_some());
        assert!(list.denies("198.51.101.1", &caller(None), NOW).is_none());
        assert!(list
            .denies("10.0.0.1", &caller(Some("mallory")), NOW)
            .is_some());
        assert!(list
            .denies("10.0.0.1", &caller(Some("mallory")), NOW + 1000)
            .is_none());
        assert!(
            list.denies("203.0.113.9", &caller(None), NOW).is_none(),
            "expired"
        );
        assert_eq!(list.expired(NOW), vec!["203.0.113.9".to_owned()]);
        assert_eq!(list.view(NOW).len(), 2);
    }

    #[test]
    fn peak_mode_makes_buyer_limits_stricter() {
        let p = parse_peak(br#"{"enabled":true,"limit_factor":0.5}"#).unwrap();
        assert_eq!(p.non_essential, NonEssential::Stale);
        let base = ClassLimit {
            user: shared::rate_limit::Gcra {
                limit: 10,
                period_ms: 1000,
                burst: 4,
            },
            ip: shared::rate_limit::Gcra {
                limit: 1,
                period_ms: 1000,
                burst: 1,
            },
            cost: 1,
            fail: crate::rate_limit::FailMode::Open,
        };
        let l = p.limit(RouteClass::Catalog, &base);
        assert_eq!((l.user.limit, l.user.burst), (5, 2));
        assert_eq!((l.ip.limit, l.ip.burst), (1, 1), "never below one");
        assert_eq!(p.limit(RouteClass::Operator, &base), base);
        assert_eq!(Peak::default().limit(RouteClass::Hold, &base), base);
        for bad in [
            &br#"{"enabled":true,"limit_factor":2}"#[..],
            br#"{"enabled":true,"limit_factor":0}"#,
            br#"{"enabled":true,"retry_after_s":0}"#,
        ] {
            assert_eq!(parse_peak(bad).unwrap_err().status, 422);
        }
        assert_eq!(
            parse_peak(br#"{"on":true}"#).unwrap_err().code,
            "invalid_body"
        );
        assert!(essential(CacheKind::Seats) && !essential(CacheKind::Search));
        assert_eq!(peak_from(Some("junk")), Peak::default());
    }
}
