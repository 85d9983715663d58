//! The virtual waiting room around [`crate::scripts::ROOM`]: a sale's
//! stored settings, the operator's request to set them, the keys and
//! arguments of a join or status, and the status a user is shown — with
//! a signed admission pass once their turn has come.
//!
//! The arithmetic is `shared::waiting_room` (serving counter, wait
//! estimates, pre-queue draw) and the passes are `shared::admission`:
//! nothing here re-derives them. See `docs/edge.md` for the design and
//! the fairness argument.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use shared::admission::{self, PassClaims};
use shared::api::{SaleMode, SetSale, ShowSale, WaitingRoomSettings};
use shared::waiting_room::{seed_commitment, QueueState, SaleConfig};

use crate::config::Regions;
use crate::error::EdgeError;
use crate::rate_limit::{decode_gate, GateVerdict};
use crate::upstash::{Reply, UpstashError};

/// Most stale users one status call may drop (bounds the script's work).
pub const SWEEP_LIMIT: u32 = 20;

/// How long a sale's queue keys outlive its opening (and each join).
pub const KEEP_AFTER_MS: i64 = 2 * 86_400_000;

/// A sale as stored in Upstash under [`config_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    /// The city whose region sells the show.
    pub city: String,
    /// The waiting-room settings (`sale` is the show id).
    #[serde(flatten)]
    pub config: SaleConfig,
}

/// The operator's `PUT /v1/operator/sales/{show}` body: the city, and
/// either a flash sale's waiting room (`sale_mode` `flash_sale`, the
/// default) or `sale_mode: "open"` to end the sale.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleRequest {
    city: String,
    #[serde(default = "flash")]
    sale_mode: SaleMode,
    opens_at: Option<String>,
    rate_per_sec: Option<f64>,
    pass_ttl_s: Option<u32>,
    grace_s: Option<u32>,
}

fn flash() -> SaleMode {
    SaleMode::FlashSale
}

fn invalid(message: impl Into<String>) -> EdgeError {
    EdgeError::new(422, "invalid_sale", message)
}

/// A checked `PUT /v1/operator/sales/{show}`: what the edge asks the
/// show's region to store (the one copy of the sale).
#[derive(Debug, Clone, PartialEq)]
pub struct SaleWrite {
    /// The show's city.
    pub city: String,
    /// The region's `PUT /v1/operator/shows/{id}/sale` body.
    pub set: SetSale,
}

/// Parses and checks the operator's sale settings for `show`.
pub fn parse_sale(body: &[u8], regions: &Regions) -> Result<SaleWrite, EdgeError> {
    crate::auth::check_json(body)?;
    let req: SaleRequest = serde_json::from_slice(body)
        .map_err(|e| EdgeError::invalid_body(format!("not a sale: {e}")))?;
    if !regions.contains(&req.city) {
        return Err(invalid(format!("no region serves the city {:?}", req.city)));
    }
    let room = match (req.opens_at, req.rate_per_sec, req.pass_ttl_s, req.grace_s) {
        (None, None, None, None) => None,
        (Some(opens_at), Some(rate_per_sec), Some(pass_ttl_s), Some(grace_s)) => {
            let opens_at = DateTime::parse_from_rfc3339(&opens_at)
                .map_err(|_| invalid("opens_at must be an RFC 3339 time"))?
                .with_timezone(&Utc);
            Some(WaitingRoomSettings {
                opens_at,
                rate_per_sec,
                pass_ttl_s,
                grace_s,
            })
        }
        _ => {
            return Err(invalid(
                "a waiting room needs opens_at, rate_per_sec, pass_ttl_s and grace_s together",
            ))
        }
    };
    WaitingRoomSettings::check_with(req.sale_mode, room.as_ref()).map_err(invalid)?;
    Ok(SaleWrite {
        city: req.city,
        set: SetSale {
            sale_mode: req.sale_mode,
            waiting_room: room,
        },
    })
}

/// The waiting room derived from the region's stored sale (`None`: the
/// show is not in a flash sale).
pub fn sale_from_region(stored: &ShowSale) -> Option<Sale> {
    let room = stored.waiting_room.as_ref()?;
    (stored.sale_mode == SaleMode::FlashSale).then(|| Sale {
        city: stored.city.to_ascii_lowercase(),
        config: SaleConfig {
            sale: stored.show_id.to_string(),
            opens_at_ms: room.opens_at.timestamp_millis(),
            rate_per_sec: room.rate_per_sec,
            pass_ttl_s: room.pass_ttl_s,
            grace_s: room.grace_s,
        },
    })
}

/// How long the edge's copy of a sale (derived from the region's) lives
/// in Upstash before it is read from the region again: a change made
/// anywhere reaches every isolate within this (a change through the edge
/// at once).
pub const SALE_CACHE_MS: i64 = 60_000;

/// A sale's settings as the operator endpoints return them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaleView {
    /// Show id.
    pub sale: String,
    /// City code.
    pub city: String,
    /// RFC 3339.
    pub opens_at: String,
    /// Admissions per second.
    pub rate_per_sec: f64,
    /// Pass lifetime.
    pub pass_ttl_s: u32,
    /// Dropout grace.
    pub grace_s: u32,
    /// SHA-256 of the seed, once someone has joined.
    pub seed_commitment: Option<String>,
    /// Always `flash_sale` (the region's mode, which this was derived
    /// from).
    pub sale_mode: SaleMode,
}

impl Sale {
    /// The operator's view, with the seed's commitment if it exists.
    pub fn view(&self, seed: Option<&str>) -> SaleView {
        SaleView {
            sale: self.config.sale.clone(),
            city: self.city.clone(),
            opens_at: rfc3339(self.config.opens_at_ms),
            rate_per_sec: self.config.rate_per_sec,
            pass_ttl_s: self.config.pass_ttl_s,
            grace_s: self.config.grace_s,
            seed_commitment: seed.map(seed_commitment),
            sale_mode: SaleMode::FlashSale,
        }
    }
}

/// RFC 3339 (UTC, seconds) of a unix-ms instant.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn key(sale: &str, name: &str) -> String {
    // `{sale}` is a Redis Cluster hash tag: all of a sale's keys live in
    // one slot, so one script may touch them all.
    format!("wr:{{{sale}}}:{name}")
}

/// How long a sale's keys live from `now_ms`: until `KEEP_AFTER_MS` after
/// its opening plus a pass lifetime (refreshed by every join).
pub fn keep_ms(c: &SaleConfig, now_ms: i64) -> i64 {
    (c.opens_at_ms - now_ms).max(0) + KEEP_AFTER_MS + i64::from(c.pass_ttl_s) * 1000
}

/// Where a sale's settings are stored.
pub fn config_key(sale: &str) -> String {
    key(sale, "cfg")
}

/// Where the city of a sale's show is stored (as long as the room's
/// keys): the edge can read the sale from the region when its copy has
/// expired.
pub fn city_key(sale: &str) -> String {
    key(sale, "city")
}

/// The show whose sale a region operator call (`upstream`, the region
/// path) changes: `/v1/operator/shows/{id}/sale`.
pub fn sale_changed_by(upstream: &str) -> Option<String> {
    let path = upstream.split('?').next().unwrap_or(upstream);
    let id = path
        .strip_prefix("/v1/operator/shows/")?
        .strip_suffix("/sale")?;
    let parsed = shared::ShowId::parse(id).ok()?;
    Some(parsed.to_string())
}

/// Where a sale's seed is stored.
pub fn seed_key(sale: &str) -> String {
    key(sale, "seed")
}

/// The room script's keys 4–12 for a sale.
pub fn room_keys(sale: &str) -> Vec<String> {
    [
        "q", "seen", "seed", "bonus", "n", "drawn", "gone", "passes", "slot",
    ]
    .iter()
    .map(|n| key(sale, n))
    .collect()
}

/// Join or status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Take a place (keeps an existing one).
    Join,
    /// Read (and refresh the last-seen time).
    Status,
}

/// A pass id: the sale and a random part, so a pass reported completed
/// (`Admission-Completed: <pid>`) names the sale whose slot it frees.
pub fn pass_id(sale: &str, random_hex: &str) -> String {
    format!("{sale}:{random_hex}")
}

/// The sale of a pass id.
pub fn sale_of_pass(pid: &str) -> Option<&str> {
    pid.rsplit_once(':')
        .map(|(sale, _)| sale)
        .filter(|s| shared::ShowId::parse(s).is_ok())
}

/// The room script's ARGV 10–20 (the gate's 1–9 come first).
pub fn room_args(
    mode: Mode,
    user: &str,
    sale: &Sale,
    now_ms: i64,
    fresh_seed: &str,
    fresh_pid: &str,
) -> Vec<String> {
    let c = &sale.config;
    let keep = keep_ms(c, now_ms);
    vec![
        match mode {
            Mode::Join => "join",
            Mode::Status => "status",
        }
        .to_owned(),
        user.to_owned(),
        c.opens_at_ms.to_string(),
        c.served(now_ms).to_string(),
        (i64::from(c.grace_s) * 1000).to_string(),
        fresh_seed.to_owned(),
        fresh_pid.to_owned(),
        (i64::from(c.pass_ttl_s) * 1000).to_string(),
        SWEEP_LIMIT.to_string(),
        keep.to_string(),
        c.pass_spacing_ms().to_string(),
    ]
}

/// A pass as recorded when a user was first admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassRecord {
    /// When (unix ms).
    pub iat_ms: i64,
    /// Their 1-based place then.
    pub pos: u64,
    /// Pass id.
    pub pid: String,
}

impl PassRecord {
    /// Parses `iat_ms|pos|pid`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '|');
        Some(Self {
            iat_ms: parts.next()?.parse().ok()?,
            pos: parts.next()?.parse().ok()?,
            pid: parts.next().filter(|p| !p.is_empty())?.to_owned(),
        })
    }
}

/// What the room script reports for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomReply {
    /// 0-based place (None: not in the queue).
    pub rank: Option<u64>,
    /// Places given back so far.
    pub bonus: u64,
    /// The seed, once someone joined.
    pub seed: Option<String>,
    /// The pass record, once admitted.
    pub pass: Option<PassRecord>,
    /// Not in the queue because they stopped polling.
    pub dropped: bool,
    /// The serving counter the script used.
    pub served: u64,
}

/// Reads a room script reply: the gate's verdict and, when allowed, the
/// room's answer.
pub fn decode_room_reply(reply: &Reply) -> Result<(GateVerdict, Option<RoomReply>), UpstashError> {
    let items = reply.array()?;
    let bad = |what: &str| UpstashError::Protocol(format!("room reply: {what}"));
    let verdict = decode_gate(items.first().ok_or_else(|| bad("empty"))?, true)?;
    let Some(room) = items.get(1) else {
        return Ok((verdict, None));
    };
    let r = room.array()?;
    if r.len() != 6 {
        return Err(bad("not 6 items"));
    }
    let rank = r[0].int()?;
    let pass = match r[3].opt_str()? {
        Some(s) => Some(PassRecord::parse(s).ok_or_else(|| bad("pass record"))?),
        None => None,
    };
    Ok((
        verdict,
        Some(RoomReply {
            rank: u64::try_from(rank).ok(),
            bonus: u64::try_from(r[1].int()?).unwrap_or(0),
            seed: r[2].opt_str()?.map(str::to_owned),
            pass,
            dropped: r[4].int()? == 1,
            served: u64::try_from(r[5].int()?).unwrap_or(0),
        }),
    ))
}

/// A user's state, as the status endpoints report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Joined before opening; the order is drawn at opening.
    PreQueue,
    /// In line.
    Waiting,
    /// Their turn has come and their pass is issued in a moment
    /// (`pass_in_ms`): passes are spaced at the sale's rate.
    Ready,
    /// Their turn: the pass is in the status.
    Admitted,
    /// Not in the queue.
    NotJoined,
    /// Lost their place by not polling within the grace period.
    Dropped,
    /// Admitted, but the pass has lapsed; joining again queues at the back.
    Expired,
}

/// The status document (JSON, and what the HTML page shows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    /// Sale (show) id.
    pub sale: String,
    /// State.
    pub state: State,
    /// 1-based place in the queue.
    pub position: Option<u64>,
    /// Users ahead not yet admitted.
    pub ahead: Option<u64>,
    /// Estimated wait, lower bound, seconds.
    pub wait_min_s: u64,
    /// Estimated wait, upper bound, seconds.
    pub wait_max_s: u64,
    /// Poll again after this long (0: no need).
    pub refresh_after_s: u64,
    /// Opening time, RFC 3339.
    pub opens_at: String,
    /// SHA-256 of the pre-queue seed, published from the first join.
    pub seed_commitment: Option<String>,
    /// The seed itself, revealed once the sale is open.
    pub seed: Option<String>,
    /// The admission pass (send it as `Admission-Pass` on holds).
    pub pass: Option<String>,
    /// When the pass expires, RFC 3339.
    pub pass_expires_at: Option<String>,
    /// `ready`: milliseconds until the pass is issued (ask again then).
    pub pass_in_ms: Option<u64>,
}

/// Builds the status of `user` from the script's reply at `now_ms`,
/// signing the pass with `key` when admitted. The poll interval is capped
/// at a third of the grace period, so a user who polls as told is never
/// dropped.
pub fn status_view(
    sale: &Sale,
    user: &str,
    reply: &RoomReply,
    now_ms: i64,
    key: &[u8],
) -> StatusView {
    let c = &sale.config;
    let open = now_ms >= c.opens_at_ms;
    let mut v = StatusView {
        sale: c.sale.clone(),
        state: State::NotJoined,
        position: None,
        ahead: None,
        wait_min_s: 0,
        wait_max_s: 0,
        refresh_after_s: 0,
        opens_at: rfc3339(c.opens_at_ms),
        seed_commitment: reply.seed.as_deref().map(seed_commitment),
        seed: reply.seed.clone().filter(|_| open),
        pass: None,
        pass_expires_at: None,
        pass_in_ms: None,
    };
    let Some(rank) = reply.rank else {
        v.state = if reply.dropped {
            State::Dropped
        } else {
            State::NotJoined
        };
        return v;
    };
    if let Some(p) = reply.pass.as_ref().filter(|_| open) {
        v.position = Some(rank + 1);
        v.ahead = Some(0);
        // Dated to a slot still ahead (the script spaces issue instants
        // at the rate): not handed out before it.
        if p.iat_ms > now_ms {
            let wait = (p.iat_ms - now_ms) as u64;
            v.state = State::Ready;
            v.pass_in_ms = Some(wait);
            v.refresh_after_s = wait.div_ceil(1000);
            return v;
        }
        let iat = p.iat_ms.div_euclid(1000);
        let exp = iat + i64::from(c.pass_ttl_s);
        if now_ms.div_euclid(1000) >= exp {
            v.state = State::Expired;
            return v;
        }
        let claims = PassClaims {
            pid: p.pid.clone(),
            sub: user.to_owned(),
            sale: c.sale.clone(),
            pos: p.pos,
            iat,
            exp,
        };
        v.state = State::Admitted;
        v.pass = Some(admission::sign(key, &claims));
        v.pass_expires_at = Some(rfc3339(exp * 1000));
        return v;
    }
    let served = c.served(now_ms);
    let st = c.status(open.then_some(rank), served, now_ms);
    v.state = match st.state {
        QueueState::PreQueue => State::PreQueue,
        // The script records a pass whenever rank < served, with the same
        // counter; an admitted rank without one cannot happen, so show it
        // as next in line rather than invent a pass.
        QueueState::Waiting | QueueState::Admitted => State::Waiting,
    };
    v.position = st.position;
    v.ahead = st.ahead;
    v.wait_min_s = st.wait_min_s;
    v.wait_max_s = st.wait_max_s;
    v.refresh_after_s = st.refresh_after_s.clamp(1, u64::from(c.grace_s / 3).max(1));
    v
}

/// The completion script's keys and arguments for a pass id reported by
/// the region core (`None`: not one of our pass ids).
pub fn completion(pid: &str) -> Option<(Vec<String>, Vec<String>)> {
    let sale = sale_of_pass(pid)?;
    Some((
        vec![key(sale, "done"), key(sale, "bonus")],
        vec![pid.to_owned(), KEEP_AFTER_MS.to_string()],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::admission::check;

    const SHOW: &str = "01a2205a-d387-7029-933e-ebdbc50f0011";
    const KEY: &[u8] = b"dev-only-admission-key-change-me";

    pub(crate) fn sale() -> Sale {
        Sale {
            city: "mum".into(),
            config: SaleConfig {
                sale: SHOW.into(),
                opens_at_ms: 100_000,
                rate_per_sec: 2.0,
                pass_ttl_s: 300,
                grace_s: 30,
            },
        }
    }

    fn reply(rank: Option<u64>) -> RoomReply {
        RoomReply {
            rank,
            bonus: 0,
            seed: Some("seed".into()),
            pass: None,
            dropped: false,
            served: 0,
        }
    }

    // Long on purpose: one table of the operator's sale requests, each
    // with the refusal it must get, read top to bottom like the docs.
    #[test]
    fn the_operator_sets_a_sale() {
        let regions = Regions::parse(r#"{"mum":"http://x.example"}"#).unwrap();
        let body = br#"{"city":"mum","opens_at":"2030-01-15T10:00:00+05:30","rate_per_sec":50,"pass_ttl_s":300,"grace_s":60}"#;
        let w = parse_sale(body, &regions).unwrap();
        assert_eq!(w.city, "mum");
        assert_eq!(w.set.sale_mode, SaleMode::FlashSale);
        // What the region stores and answers is what the edge derives its
        // room from.
        let stored = ShowSale {
            show_id: shared::ShowId::parse(SHOW).unwrap(),
            city: "mum".into(),
            sale_mode: w.set.sale_mode,
            waiting_room: w.set.waiting_room.clone(),
        };
        let s = sale_from_region(&stored).unwrap();
        assert_eq!(s.config.opens_at_ms, 1_894_681_800_000);
        assert_eq!(s.config.sale, SHOW);
        assert_eq!(s.view(None).opens_at, "2030-01-15T04:30:00Z");
        let stored_json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Sale>(&stored_json).unwrap(), s);
        let open = ShowSale {
            sale_mode: SaleMode::Open,
            waiting_room: None,
            ..stored
        };
        assert_eq!(sale_from_region(&open), None);
        let end = parse_sale(br#"{"city":"mum","sale_mode":"open"}"#, &regions).unwrap();
        assert_eq!(end.set.waiting_room, None);
        let err = |b: &str| parse_sale(b.as_bytes(), &regions).unwrap_err().code;
        assert_eq!(
            err(r#"{"city":"mum","sale_mode":"flash_sale"}"#),
            "invalid_sale",
            "a flash sale without its waiting room"
        );
        assert_eq!(
            err(
                r#"{"city":"mum","sale_mode":"open","rate_per_sec":5,"opens_at":"2030-01-15T10:00:00Z","pass_ttl_s":300,"grace_s":60}"#
            ),
            "invalid_sale"
        );
        assert_eq!(err("{"), "malformed_json");
        assert_eq!(err(r#"{"city":"mum"}"#), "invalid_sale");
        let with = |field: &str, value: &str| {
            let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
            v[field] = serde_json::from_str(value).unwrap();
            err(&v.to_string())
        };
        assert_eq!(with("city", r#""xyz""#), "invalid_sale");
        assert_eq!(with("opens_at", r#""tomorrow""#), "invalid_sale");
        assert_eq!(with("rate_per_sec", "0"), "invalid_sale");
        assert_eq!(with("pass_ttl_s", "5"), "invalid_sale");
        assert_eq!(with("grace_s", "1"), "invalid_sale");
        assert_eq!(with("extra", "1"), "invalid_body");
    }

    #[test]
    fn a_region_write_to_a_sale_names_its_show() {
        assert_eq!(
            sale_changed_by(&format!("/v1/operator/shows/{SHOW}/sale")),
            Some(SHOW.to_owned())
        );
        assert_eq!(
            sale_changed_by(&format!("/v1/operator/shows/{SHOW}/sale?x=1")),
            Some(SHOW.to_owned())
        );
        assert_eq!(sale_changed_by(&format!("/v1/operator/shows/{SHOW}")), None);
        assert_eq!(sale_changed_by("/v1/operator/shows/nope/sale"), None);
        assert_eq!(sale_changed_by(&format!("/v1/shows/{SHOW}/sale")), None);
        assert_eq!(city_key(SHOW), format!("wr:{{{SHOW}}}:city"));
    }

    #[test]
    fn keys_share_one_hash_slot_and_args_follow_the_script() {
        let keys = room_keys(SHOW);
        assert_eq!(keys.len(), 9);
        assert!(keys
            .iter()
            .all(|k| k.starts_with(&format!("wr:{{{SHOW}}}:"))));
        assert_eq!(keys[0], format!("wr:{{{SHOW}}}:q"));
        let args = room_args(Mode::Join, "alice", &sale(), 101_000, "s33d", "pid");
        assert_eq!(
            &args[..9],
            ["join", "alice", "100000", "3", "30000", "s33d", "pid", "300000", "20"]
        );
        assert_eq!(args[9], (KEEP_AFTER_MS + 300_000).to_string());
        assert_eq!(args[10], "500", "passes 1000 / rate ms apart");
        let pid = pass_id(SHOW, "abcd");
        assert_eq!(sale_of_pass(&pid), Some(SHOW));
        assert_eq!(sale_of_pass("pass-alice"), None);
        let (k, a) = completion(&pid).unwrap();
        assert_eq!(
            k,
            [
                format!("wr:{{{SHOW}}}:done"),
                format!("wr:{{{SHOW}}}:bonus")
            ]
        );
        assert_eq!(a[0], pid);
        assert!(completion("foreign").is_none());
    }

    #[test]
    fn replies_decode() {
        let gate = Reply::Array([1, 1, 5, 0, 10, 1, 2, 0, 10].map(Reply::Int).to_vec());
        let r = Reply::Array(vec![
            gate.clone(),
            Reply::Array(vec![
                Reply::Int(4),
                Reply::Int(1),
                Reply::Str("seed".into()),
                Reply::Str("101000|5|pid:x".into()),
                Reply::Int(0),
                Reply::Int(7),
            ]),
        ]);
        let (v, room) = decode_room_reply(&r).unwrap();
        assert!(matches!(v, GateVerdict::Checked { .. }));
        let room = room.unwrap();
        assert_eq!(room.rank, Some(4));
        assert_eq!(
            room.pass,
            Some(PassRecord {
                iat_ms: 101_000,
                pos: 5,
                pid: "pid:x".into()
            })
        );
        let none = Reply::Array(vec![
            gate,
            Reply::Array(vec![
                Reply::Int(-1),
                Reply::Int(0),
                Reply::Nil,
                Reply::Nil,
                Reply::Int(1),
                Reply::Int(0),
            ]),
        ]);
        let room = decode_room_reply(&none).unwrap().1.unwrap();
        assert_eq!((room.rank, room.dropped, room.seed), (None, true, None));
        let refused = Reply::Array(vec![Reply::Array(vec![Reply::Int(-1), Reply::Int(1)])]);
        assert_eq!(decode_room_reply(&refused).unwrap().1, None);
    }

    #[test]
    fn before_opening_everyone_is_in_the_pre_queue_with_the_commitment() {
        let v = status_view(&sale(), "alice", &reply(Some(0)), 40_000, KEY);
        assert_eq!(v.state, State::PreQueue);
        assert_eq!(v.position, None);
        assert_eq!((v.wait_min_s, v.wait_max_s), (60, 60));
        assert_eq!(
            v.refresh_after_s, 10,
            "a quarter of the wait, capped at grace/3"
        );
        assert_eq!(
            v.seed_commitment.as_deref(),
            Some(&*seed_commitment("seed"))
        );
        assert_eq!(v.seed, None, "the seed stays secret until opening");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["state"], "pre_queue");
    }

    #[test]
    fn after_opening_waiting_then_admitted_with_a_pass() {
        let s = sale();
        let v = status_view(&s, "alice", &reply(Some(9)), 102_000, KEY);
        assert_eq!(v.state, State::Waiting);
        assert_eq!(v.seed.as_deref(), Some("seed"), "revealed at opening");
        // served(102 s) = floor(2 s * 2/s) + 1 = 5: ranks 0–4 admitted.
        assert_eq!((v.position, v.ahead), (Some(10), Some(4)));
        assert!(v.refresh_after_s >= 1 && v.refresh_after_s <= 10);
        let mut r = reply(Some(3));
        r.pass = Some(PassRecord {
            iat_ms: 101_500,
            pos: 4,
            pid: pass_id(SHOW, "ff"),
        });
        let v = status_view(&s, "alice", &r, 102_000, KEY);
        assert_eq!(v.state, State::Admitted);
        assert_eq!(v.refresh_after_s, 0);
        let pass = v.pass.unwrap();
        let claims = check(&[KEY], &pass, "alice", SHOW, 102).unwrap();
        assert_eq!((claims.pos, claims.iat, claims.exp), (4, 101, 401));
        assert_eq!(v.pass_expires_at.as_deref(), Some("1970-01-01T00:06:41Z"));
        // The same record gives the same pass on every poll.
        assert_eq!(
            status_view(&s, "alice", &r, 150_000, KEY).pass.unwrap(),
            pass
        );
        // It lapses.
        let v = status_view(&s, "alice", &r, 401_000, KEY);
        assert_eq!((v.state, v.pass), (State::Expired, None));
        // Dated to a slot still ahead: ready, no pass until then.
        let v = status_view(&s, "alice", &r, 101_200, KEY);
        assert_eq!((v.state, v.pass.as_deref()), (State::Ready, None));
        assert_eq!((v.pass_in_ms, v.refresh_after_s), (Some(300), 1));
        assert_eq!((v.position, v.ahead), (Some(4), Some(0)));
    }

    #[test]
    fn users_out_of_the_queue() {
        let v = status_view(&sale(), "alice", &reply(None), 102_000, KEY);
        assert_eq!(v.state, State::NotJoined);
        let mut r = reply(None);
        r.dropped = true;
        assert_eq!(
            status_view(&sale(), "alice", &r, 102_000, KEY).state,
            State::Dropped
        );
    }

    #[test]
    fn pass_records_parse() {
        assert_eq!(PassRecord::parse("1|2|a|b").unwrap().pid, "a|b");
        assert!(PassRecord::parse("1|2|").is_none());
        assert!(PassRecord::parse("x|2|p").is_none());
    }
}
