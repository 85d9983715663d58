//! One show's live feed in this process: a task that listens to the
//! show's Redis channel, keeps the current map, gathers changes into
//! deltas (`shared::live::Coalescer`) and broadcasts each frame, encoded
//! once, to every socket of the show here. Its cost grows with the shows
//! watched (one Pub/Sub connection each), never with the viewers.
//!
//! Order of operations that keeps viewers exact: subscribe first, then
//! read the snapshot (map and number together); messages numbered at or
//! below the snapshot's are already in it, the next must follow on, and
//! anything else (a lost message, a map Redis dropped, a reconnect) makes
//! the feed take a new snapshot and send it to every viewer.
//!
//! While Redis is unavailable the feed reads the map from Postgres every
//! `live_degraded_snapshot_ms` and sends it as a `degraded` snapshot.
//!
//! This module holds the feed's state; `task` runs it.

use super::history::{Catchup, History};
use shared::live::{encode_map, Frame, VERSION};
use shared::seat::set_seat_state;
use shared::{SeatState, ShowId};
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

/// How many recent deltas a feed keeps for pollers.
const HISTORY: usize = 256;

/// A show's seat map and the number of the last change it includes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The change number (0 when read from Postgres alone: unknown).
    pub seq: u64,
    /// 2 bits per seat by ordinal.
    pub map: Vec<u8>,
    /// Read from Postgres alone because Redis is unavailable.
    pub degraded: bool,
}

/// A frame as sent: JSON, encoded once for every socket.
pub type Text = Arc<str>;

/// One show's feed (shared by its sockets, its pollers and its task).
pub struct Feed {
    show: ShowId,
    seats: u32,
    current: Mutex<Current>,
    tx: broadcast::Sender<Text>,
    ready: watch::Sender<bool>,
    /// Sockets attached (changed under the hub's lock).
    pub(super) watchers: AtomicUsize,
    /// Last poll, in ms since `epoch` (changed under the hub's lock).
    pub(super) last_poll_ms: AtomicI64,
    epoch: Instant,
}

/// The feed's copy of the map: every change it has heard, sent or not.
struct Current {
    seq: u64,
    map: Vec<u8>,
    degraded: bool,
    /// The snapshot frame of this state, once encoded.
    encoded: Option<Text>,
    history: History,
}

/// What a poller gets.
pub enum Poll {
    /// Unchanged since the poller's number (304).
    NotModified(String),
    /// A frame and its ETag.
    Frame(Text, String),
}

impl Feed {
    pub(super) fn new(show: ShowId, seats: u32, buffer: usize) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        let (ready, _) = watch::channel(false);
        Self {
            show,
            seats,
            current: Mutex::new(Current {
                seq: 0,
                map: Vec::new(),
                degraded: false,
                encoded: None,
                history: History::new(show, HISTORY, 0),
            }),
            tx,
            ready,
            watchers: AtomicUsize::new(0),
            last_poll_ms: AtomicI64::new(0),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Waits (up to `wait`) for the feed's first snapshot.
    pub async fn ready(&self, wait: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The current snapshot and a receiver of every frame after it, taken
    /// together so nothing falls between them.
    pub fn join(&self) -> (Text, broadcast::Receiver<Text>) {
        let mut cur = self.lock();
        let snapshot = self.encoded_snapshot(&mut cur);
        (snapshot, self.tx.subscribe())
    }

    /// What a poller at `since` needs.
    pub fn poll(&self, since: u64, if_none_match: Option<&str>) -> Poll {
        let mut cur = self.lock();
        let etag = if cur.degraded {
            // No numbers while degraded: the tag names the map itself.
            format!("\"d{:016x}\"", fnv(&cur.map))
        } else {
            format!("\"{}\"", cur.history.last())
        };
        if if_none_match.is_some_and(|t| t.split(',').any(|t| t.trim() == etag)) {
            return Poll::NotModified(etag);
        }
        if cur.degraded {
            return Poll::Frame(self.encoded_snapshot(&mut cur), etag);
        }
        match cur.history.since(since) {
            Catchup::NotModified => Poll::NotModified(etag),
            Catchup::Delta(frame) => Poll::Frame(encode(&frame), etag),
            Catchup::Snapshot => Poll::Frame(self.encoded_snapshot(&mut cur), etag),
        }
    }

    fn encoded_snapshot(&self, cur: &mut Current) -> Text {
        if let Some(t) = &cur.encoded {
            return t.clone();
        }
        let t = encode(&Frame::Snapshot {
            v: VERSION,
            show: self.show,
            seq: cur.seq,
            seats: self.seats,
            map: encode_map(&cur.map),
            degraded: cur.degraded,
        });
        cur.encoded = Some(t.clone());
        t
    }

    /// Replaces the copy with a snapshot and sends it to every viewer.
    pub(super) fn install(&self, snap: Snapshot) {
        let mut cur = self.lock();
        let seq = if snap.degraded { cur.seq } else { snap.seq };
        cur.seq = seq;
        cur.map = snap.map;
        cur.degraded = snap.degraded;
        cur.encoded = None;
        cur.history.reset(seq);
        let frame = self.encoded_snapshot(&mut cur);
        // No receivers is fine: nobody to tell.
        let _ = self.tx.send(frame);
        self.ready.send_replace(true);
    }

    /// Applies one numbered change to the copy (its delta goes out when
    /// the coalescing window closes).
    pub(super) fn apply(&self, seq: u64, changes: &[(u32, SeatState)]) {
        let mut cur = self.lock();
        for (ordinal, state) in changes {
            if *ordinal < self.seats {
                set_seat_state(&mut cur.map, *ordinal as usize, *state);
            }
        }
        cur.seq = seq;
        cur.encoded = None;
    }

    /// Sends a coalesced delta to every viewer.
    pub(super) fn send_delta(&self, frame: &Frame) {
        let mut cur = self.lock();
        cur.history.push(frame);
        let _ = self.tx.send(encode(frame));
        metrics::counter!("live_deltas_total").increment(1);
    }

    /// The show.
    pub fn show(&self) -> ShowId {
        self.show
    }

    pub(super) fn seq(&self) -> u64 {
        self.lock().seq
    }
}

fn encode(frame: &Frame) -> Text {
    // A Frame is plain data: encoding cannot fail.
    serde_json::to_string(frame)
        .unwrap_or_else(|_| String::from("{}"))
        .into()
}

/// FNV-1a: a cheap tag for a degraded map (ETag only, not security).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}
