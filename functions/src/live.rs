//! The live seat map at the edge (issue 11), the pure part: which Durable
//! Object serves a viewer, what an object does with each frame the region
//! core sends it, how long it waits before reconnecting, and the polling
//! fallback's cache key and `ETag` checks. The runtime glue is
//! `wasm::live` (the object) and `wasm::poll` (the fallback).
//!
//! One object per (city, show, bucket) keeps ONE socket to the city's
//! region core and fans every frame out to its viewers, so the region's
//! cost grows with the number of objects, never with viewers. A show's
//! viewers are spread over `LIVE_BUCKETS` objects because one object takes
//! at most 32,768 hibernatable sockets (docs/adr/0011).

use shared::live::{encode_map, Frame, LiveError, Replica, VERSION};
use shared::seat::set_seat_state;
use shared::ShowId;

use crate::error::EdgeError;

/// `LIVE_BUCKETS` when unset: one object per show, so a local run has
/// exactly one upstream socket per show. Production sets more.
pub const DEFAULT_BUCKETS: u32 = 1;

/// The most `LIVE_BUCKETS` may be: each bucket is one region socket per
/// show, and 1,024 × 32,768 viewers is far beyond any show.
pub const MAX_BUCKETS: u32 = 1024;

/// The Durable Object binding (`wrangler.toml`, `serve.mjs`).
pub const BINDING: &str = "LIVE_SHOWS";

/// The bucket of a viewer: a stable hash of its client address (so a
/// reconnecting viewer lands on the object that already has its show's
/// copy) modulo `buckets`. FNV-1a: tiny, and good enough to spread
/// addresses evenly; nothing depends on it being unguessable.
pub fn bucket(client: &str, buckets: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(buckets.max(1))) as u32
}

/// The name of the object serving `show` of `city` for `bucket`: one
/// instance worldwide per name.
pub fn object_name(city: &str, show: &str, bucket: u32) -> String {
    format!("live:{city}:{show}:{bucket}")
}

/// The region core's socket URL for `show` (`base` is the region's
/// http(s) base URL from `REGIONS`).
pub fn upstream_url(base: &str, show: &str) -> String {
    format!("{base}/v1/shows/{show}/live")
}

/// The sockets of `show` on each of a shard's replicas, space-separated
/// (what the live object is told, and keeps through hibernation).
pub fn upstream_urls(bases: &[String], show: &str) -> String {
    bases
        .iter()
        .map(|b| upstream_url(b, show))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The replica to connect to on the `turn`-th attempt: they take turns,
/// so a replica that died is left for the next.
pub fn pick_upstream(urls: &str, turn: usize) -> &str {
    let all: Vec<&str> = urls.split(' ').filter(|u| !u.is_empty()).collect();
    match all.len() {
        0 => urls,
        n => all[turn % n],
    }
}

/// `since=N` from a query string: `Ok(None)` when absent (a plain seat-map
/// read), 400 `bad_query` when it is not a whole number.
pub fn since(query: Option<&str>) -> Result<Option<u64>, EdgeError> {
    let Some(q) = query else { return Ok(None) };
    let mut found = None;
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("since=") {
            let n = v
                .parse::<u64>()
                .map_err(|_| EdgeError::new(400, "bad_query", "since must be a whole number"))?;
            found = Some(n);
        }
    }
    Ok(found)
}

/// The strong `ETag` the region core gives a seat-map state: its
/// sequence number in quotes.
pub fn etag(seq: u64) -> String {
    format!("\"{seq}\"")
}

/// Whether `If-None-Match` (a list, possibly weak tags, or `*`) names
/// `etag`. Weak comparison, as RFC 9110 asks for `If-None-Match`.
pub fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(header) = if_none_match else {
        return false;
    };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = bare(etag);
    header
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == want)
}

/// The micro-cache key of a poll: per location (origin), city, show and
/// `since`. Not versioned like catalog keys: a poll answer lives one
/// second and an operator edit does not change seat states.
pub fn poll_key(origin: &str, city: &str, show: &str, since: u64) -> String {
    format!("{origin}/__edge/live/{city}/{show}/since/{since}")
}

/// Whether a poll is answered 304: the region said so (a stored answer
/// without a body is its 304), or the client already has the `ETag`.
pub fn not_modified(region_304: bool, etag: Option<&str>, if_none_match: Option<&str>) -> bool {
    region_304 || etag.is_some_and(|t| etag_matches(if_none_match, t))
}

/// The poll micro-cache's lifetime: one second, never served stale.
pub const POLL_TTL: crate::catalog::Ttl = crate::catalog::Ttl { ttl_s: 1, swr_s: 0 };

/// What an object does with a text frame from the region core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is for the viewers: it waits in the relay's outgoing frames
    /// until [`Relay::take_outgoing`].
    Relay,
    /// Old news (already in the copy) or not a frame: send nothing.
    Drop,
    /// The stream is broken (a gap, a frame of another show or version):
    /// send nothing, and reconnect upstream for a fresh snapshot.
    Reconnect(LiveError),
}

/// An object's copy of its show's seat map, kept from the region core's
/// frames, from which every new viewer gets a snapshot at once.
#[derive(Debug, Clone)]
pub struct Relay {
    show: ShowId,
    replica: Replica,
    degraded: bool,
    /// The snapshot of the current copy, as sent; rebuilt lazily after a
    /// delta (joins are rarer than deltas on a busy show).
    snapshot: Option<String>,
    /// Frames for the viewers not yet sent. While the object is busy
    /// sending (thousands of viewers), the region's next deltas join the
    /// last one waiting here, so a busy object sends fewer, larger frames
    /// instead of falling further behind with every frame.
    outgoing: Vec<Outgoing>,
}

/// A frame waiting to be sent, with the region's own text until a later
/// delta joins it.
#[derive(Debug, Clone)]
struct Outgoing {
    frame: Frame,
    text: Option<String>,
}

impl Relay {
    /// A relay for `show` with nothing yet.
    pub fn new(show: ShowId) -> Self {
        Self {
            show,
            replica: Replica::new(show),
            degraded: false,
            snapshot: None,
            outgoing: Vec::new(),
        }
    }

    /// The show.
    pub fn show(&self) -> ShowId {
        self.show
    }

    /// The sequence number of the copy (None before the first snapshot).
    pub fn seq(&self) -> Option<u64> {
        self.replica.seq()
    }

    /// Applies a text frame from upstream and says what to do with it.
    pub fn on_upstream(&mut self, text: &str) -> Verdict {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            return Verdict::Drop;
        };
        let before = self.replica.seq();
        if let Err(e) = self.replica.apply(&frame) {
            if self.replica.seq().is_none() {
                // The copy was dropped (a gap): never hand out the old one.
                self.snapshot = None;
            }
            return Verdict::Reconnect(e);
        }
        match &frame {
            Frame::Snapshot { degraded, .. } => {
                self.degraded = *degraded;
                // The region's own text is the snapshot of the copy.
                self.snapshot = Some(text.to_owned());
                // It supersedes whatever waits to be sent.
                self.outgoing.clear();
            }
            Frame::Delta { .. } if self.replica.seq() == before => return Verdict::Drop,
            Frame::Delta { .. } => {
                self.snapshot = None;
                if let Some(last) = self.outgoing.last_mut() {
                    if last.frame.join(&frame) {
                        last.text = None;
                        return Verdict::Relay;
                    }
                }
            }
        }
        self.outgoing.push(Outgoing {
            frame,
            text: Some(text.to_owned()),
        });
        Verdict::Relay
    }

    /// The frames to send every viewer now, in order: each frame the
    /// region sent since the last call, with deltas that follow each other
    /// joined into one.
    pub fn take_outgoing(&mut self) -> Vec<String> {
        self.outgoing
            .drain(..)
            .filter_map(|o| o.text.or_else(|| serde_json::to_string(&o.frame).ok()))
            .collect()
    }

    /// The current copy as one snapshot frame (None before the first).
    pub fn snapshot(&mut self) -> Option<String> {
        if self.snapshot.is_none() {
            let seq = self.replica.seq()?;
            let seats = self.replica.seats();
            let mut map = Vec::with_capacity(seats.len().div_ceil(4));
            for (ordinal, state) in seats.iter().enumerate() {
                set_seat_state(&mut map, ordinal, *state);
            }
            let frame = Frame::Snapshot {
                v: VERSION,
                show: self.show,
                seq,
                seats: seats.len() as u32,
                map: encode_map(&map),
                degraded: self.degraded,
            };
            self.snapshot = serde_json::to_string(&frame).ok();
        }
        self.snapshot.clone()
    }
}

/// The wait before reconnecting to the region core: doubling from
/// `base_ms` to `max_ms`, at least what a 503's `Retry-After` asked for,
/// spread by `jitter` (0..1) so the objects of a region that restarts do
/// not all come back in the same millisecond.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    next_ms: u64,
}

impl Backoff {
    /// Starts at `base_ms`, never waits longer than `max_ms`.
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Self {
            base_ms,
            max_ms,
            next_ms: base_ms,
        }
    }

    /// A connection worked (a frame arrived): the next failure starts over.
    pub fn reset(&mut self) {
        self.next_ms = self.base_ms;
    }

    /// The wait after a resync (close 4000, or a broken stream): none the
    /// first time since frames last flowed, so viewers get the fresh
    /// snapshot at once; then as after a failure, so a region that keeps
    /// asking is not hammered.
    pub fn after_resync(&mut self, jitter: f64) -> u64 {
        let fresh = self.next_ms == self.base_ms;
        let wait = self.after_failure(None, jitter);
        if fresh {
            0
        } else {
            wait
        }
    }

    /// The wait after a failure; `retry_after_ms` is the region's ask.
    pub fn after_failure(&mut self, retry_after_ms: Option<u64>, jitter: f64) -> u64 {
        let wait = self
            .next_ms
            .max(retry_after_ms.unwrap_or(0))
            .min(self.max_ms);
        self.next_ms = (self.next_ms * 2).min(self.max_ms);
        // Up to +50 %, never below the region's ask.
        wait + (wait as f64 * 0.5 * jitter.clamp(0.0, 1.0)) as u64
    }
}

/// Why an upstream socket closed, as the object sees it.
pub fn close_is_resync(code: u16) -> bool {
    // The region core's "you are too slow, take a snapshot again".
    code == 4000
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::SeatState;

    fn show() -> ShowId {
        ShowId(uuid::Uuid::from_u128(42))
    }

    fn snapshot(seq: u64, seats: &[SeatState], degraded: bool) -> String {
        let mut map = Vec::new();
        for (o, s) in seats.iter().enumerate() {
            set_seat_state(&mut map, o, *s);
        }
        serde_json::to_string(&Frame::Snapshot {
            v: VERSION,
            show: show(),
            seq,
            seats: seats.len() as u32,
            map: encode_map(&map),
            degraded,
        })
        .unwrap()
    }

    fn delta(from: u64, to: u64, changes: Vec<(u32, SeatState)>) -> String {
        serde_json::to_string(&Frame::Delta {
            v: VERSION,
            show: show(),
            from,
            to,
            changes,
        })
        .unwrap()
    }

    fn viewer_of(text: &str) -> Replica {
        let mut r = Replica::new(show());
        r.apply(&serde_json::from_str(text).unwrap()).unwrap();
        r
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("10.0.0.1", 1), 0);
        assert_eq!(bucket("10.0.0.1", 0), 0, "0 buckets means one");
        assert_eq!(bucket("10.0.0.1", 16), bucket("10.0.0.1", 16));
        let mut seen = [0u32; 8];
        for n in 0..8000 {
            seen[bucket(&format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255), 8) as usize] +=
                1;
        }
        // Even enough: every bucket within 25 % of the mean.
        assert!(seen.iter().all(|c| (750..=1250).contains(c)), "{seen:?}");
        assert_eq!(
            object_name("mum", "s", 3),
            "live:mum:s:3",
            "city, show and bucket make the name"
        );
        assert_eq!(
            upstream_url("http://127.0.0.1:8080", "s"),
            "http://127.0.0.1:8080/v1/shows/s/live"
        );
    }

    #[test]
    fn a_new_viewer_gets_the_copy_as_one_snapshot() {
        let mut relay = Relay::new(show());
        assert_eq!(relay.snapshot(), None, "nothing before the region speaks");
        let first = snapshot(5, &[SeatState::Available; 3], false);
        assert_eq!(relay.on_upstream(&first), Verdict::Relay);
        assert_eq!(relay.snapshot().as_deref(), Some(first.as_str()));
        let d = delta(6, 7, vec![(1, SeatState::Held), (2, SeatState::Booked)]);
        assert_eq!(relay.on_upstream(&d), Verdict::Relay);
        // A viewer joining now sees seq 7 with both changes.
        let joined = viewer_of(&relay.snapshot().unwrap());
        assert_eq!(joined.seq(), Some(7));
        assert_eq!(
            joined.seats(),
            vec![SeatState::Available, SeatState::Held, SeatState::Booked]
        );
        // And the deltas after it apply to that copy.
        let mut joined = joined;
        let next = delta(8, 8, vec![(1, SeatState::Available)]);
        assert_eq!(relay.on_upstream(&next), Verdict::Relay);
        joined.apply(&serde_json::from_str(&next).unwrap()).unwrap();
        assert_eq!(
            joined.seats(),
            viewer_of(&relay.snapshot().unwrap()).seats()
        );
    }

    #[test]
    fn frames_that_wait_are_joined_and_a_snapshot_supersedes_them() {
        let mut relay = Relay::new(show());
        let first = snapshot(5, &[SeatState::Available; 3], false);
        relay.on_upstream(&first);
        assert_eq!(relay.take_outgoing(), vec![first.clone()]);
        assert!(relay.take_outgoing().is_empty(), "taken once");
        // One delta waiting goes out as the region wrote it.
        let d6 = delta(6, 6, vec![(0, SeatState::Held)]);
        relay.on_upstream(&d6);
        assert_eq!(relay.take_outgoing(), vec![d6.clone()]);
        // Three waiting go out as one frame that a viewer of seq 6 applies
        // to reach the relay's copy.
        let mut viewer = viewer_of(&first);
        viewer.apply(&serde_json::from_str(&d6).unwrap()).unwrap();
        relay.on_upstream(&delta(7, 8, vec![(1, SeatState::Held)]));
        relay.on_upstream(&delta(9, 9, vec![(0, SeatState::Available)]));
        relay.on_upstream(&delta(10, 12, vec![(2, SeatState::Booked)]));
        let out = relay.take_outgoing();
        assert_eq!(out.len(), 1, "{out:?}");
        let joined: Frame = serde_json::from_str(&out[0]).unwrap();
        assert!(matches!(
            joined,
            Frame::Delta {
                from: 7,
                to: 12,
                ..
            }
        ));
        viewer.apply(&joined).unwrap();
        assert_eq!(
            viewer.seats(),
            viewer_of(&relay.snapshot().unwrap()).seats()
        );
        // A snapshot supersedes the deltas still waiting before it.
        relay.on_upstream(&delta(13, 13, vec![(1, SeatState::Available)]));
        let again = snapshot(20, &[SeatState::Booked; 3], true);
        relay.on_upstream(&again);
        let d21 = delta(21, 21, vec![(0, SeatState::Available)]);
        relay.on_upstream(&d21);
        assert_eq!(relay.take_outgoing(), vec![again, d21]);
    }

    #[test]
    fn the_live_object_takes_turns_over_the_replicas() {
        let urls = upstream_urls(&["http://a".to_owned(), "http://b".to_owned()], "s");
        assert_eq!(urls, "http://a/v1/shows/s/live http://b/v1/shows/s/live");
        assert_eq!(pick_upstream(&urls, 0), "http://a/v1/shows/s/live");
        assert_eq!(pick_upstream(&urls, 1), "http://b/v1/shows/s/live");
        assert_eq!(pick_upstream(&urls, 2), "http://a/v1/shows/s/live");
    }

    #[test]
    fn old_frames_and_noise_are_dropped_and_a_gap_reconnects() {
        let mut relay = Relay::new(show());
        assert!(matches!(
            relay.on_upstream(&delta(1, 1, vec![])),
            Verdict::Reconnect(LiveError::NoSnapshot)
        ));
        relay.on_upstream(&snapshot(5, &[SeatState::Available; 2], false));
        assert_eq!(relay.on_upstream(&delta(4, 5, vec![])), Verdict::Drop);
        assert_eq!(relay.on_upstream("not json"), Verdict::Drop);
        assert!(matches!(
            relay.on_upstream(&delta(7, 7, vec![])),
            Verdict::Reconnect(LiveError::Gap { expected: 6, .. })
        ));
        assert_eq!(relay.snapshot(), None, "a broken copy is never handed out");
        // The fresh snapshot after reconnecting replaces it, degraded or not.
        let again = snapshot(9, &[SeatState::Held, SeatState::Available], true);
        assert_eq!(relay.on_upstream(&again), Verdict::Relay);
        assert_eq!(relay.seq(), Some(9));
        let json: serde_json::Value = serde_json::from_str(&relay.snapshot().unwrap()).unwrap();
        assert_eq!(json["degraded"], true);
        relay.on_upstream(&delta(10, 10, vec![(0, SeatState::Available)]));
        let json: serde_json::Value = serde_json::from_str(&relay.snapshot().unwrap()).unwrap();
        assert_eq!(
            (json["seq"].as_u64(), json["degraded"].as_bool()),
            (Some(10), Some(true))
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_honours_retry_after() {
        let mut b = Backoff::new(250, 10_000);
        assert_eq!(b.after_failure(None, 0.0), 250);
        assert_eq!(b.after_failure(None, 0.0), 500);
        assert_eq!(b.after_failure(Some(3_000), 0.0), 3_000);
        assert_eq!(b.after_failure(None, 1.0), 3_000, "2000 + 50 % jitter");
        for _ in 0..10 {
            b.after_failure(None, 0.0);
        }
        assert_eq!(b.after_failure(None, 0.0), 10_000);
        b.reset();
        assert_eq!(b.after_failure(None, 0.0), 250);
        b.reset();
        assert_eq!(b.after_resync(0.0), 0, "the first resync is immediate");
        assert_eq!(b.after_resync(0.0), 500, "a second one in a row waits");
        assert!(close_is_resync(4000) && !close_is_resync(1000));
    }

    #[test]
    fn since_and_etags() {
        assert_eq!(since(None).unwrap(), None);
        assert_eq!(since(Some("x=1")).unwrap(), None);
        assert_eq!(since(Some("since=41")).unwrap(), Some(41));
        assert_eq!(since(Some("a=b&since=0")).unwrap(), Some(0));
        assert_eq!(since(Some("since=-1")).unwrap_err().code, "bad_query");
        assert_eq!(since(Some("since=")).unwrap_err().code, "bad_query");
        assert_eq!(etag(41), "\"41\"");
        assert!(etag_matches(Some("\"41\""), "\"41\""));
        assert!(etag_matches(Some("W/\"41\""), "\"41\""));
        assert!(etag_matches(Some("\"3\", \"41\""), "\"41\""));
        assert!(etag_matches(Some("*"), "\"41\""));
        assert!(!etag_matches(Some("\"40\""), "\"41\""));
        assert!(!etag_matches(None, "\"41\""));
        assert!(not_modified(true, Some("\"41\""), None));
        assert!(not_modified(false, Some("\"41\""), Some("\"41\"")));
        assert!(!not_modified(false, Some("\"42\""), Some("\"41\"")));
        assert!(!not_modified(false, None, Some("*")));
        assert_ne!(
            poll_key("https://e", "mum", "s", 1),
            poll_key("https://e", "mum", "s", 2)
        );
    }
}
