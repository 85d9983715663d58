//! The live seat map's protocol (issue 11, "Q4: real-time seat
//! availability"): what a viewer of a show receives, and how it keeps an
//! exact copy of the show's seat map from it. Pure: the region core
//! produces these frames, the edge's Durable Objects relay them, the
//! buyer's page and the tests consume them.
//!
//! A viewer first gets a [`Frame::Snapshot`]: the sequence number `seq`
//! and the whole seat-state bitmap at that number (2 bits per seat, as the
//! Redis seat map lays them out, base64). Then [`Frame::Delta`]s: each
//! covers the changes numbered `from..=to` (per show, gap-free, assigned
//! with the change itself), coalesced into the last state of each seat
//! that changed. A delta whose `from` is past the viewer's `seq + 1` is a
//! gap (a frame lost, or a reconnect): the viewer asks for a snapshot
//! again ([`Replica::apply`] says so). A delta entirely at or below the
//! viewer's `seq` is old and ignored; one that overlaps it applies whole
//! (it names the state at `to` of every seat changed in its range), so a
//! viewer may join between two deltas of a running stream.
//!
//! [`Coalescer`] turns the region core's stream of single changes into
//! deltas: at most one frame per `window` (about 50 ms), so a burst of
//! holds costs few frames.
//!
//! Every frame carries the protocol version `v` ([`VERSION`]); a viewer
//! refuses a version it does not know rather than misread it.

use crate::seat::{seat_state_at, set_seat_state, SeatState};
use crate::ShowId;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The protocol version every frame carries.
pub const VERSION: u8 = 1;

/// One message to a viewer (JSON, `"type"`-tagged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// The whole map at `seq`.
    Snapshot {
        /// Protocol version ([`VERSION`]).
        v: u8,
        /// The show.
        show: ShowId,
        /// The number of the last change the map includes (0: none yet).
        seq: u64,
        /// Seats of the show (the map's length in seats).
        seats: u32,
        /// 2 bits per seat by ordinal, most significant bits first
        /// (`0` available, `1` held, `2` booked), standard base64.
        map: String,
        /// True while the region core serves from Postgres alone (its
        /// Redis is unreachable): snapshots then come every few seconds
        /// instead of deltas.
        #[serde(default)]
        degraded: bool,
    },
    /// Changes `from..=to`, the last state of each seat that changed.
    Delta {
        /// Protocol version ([`VERSION`]).
        v: u8,
        /// The show.
        show: ShowId,
        /// The first change number covered.
        from: u64,
        /// The last change number covered.
        to: u64,
        /// (seat ordinal, new state), by ordinal.
        changes: Vec<(u32, SeatState)>,
    },
}

impl Frame {
    /// Joins `later` onto this delta when the two make one run of change
    /// numbers (`later` starts at or before `to + 1` and ends after `to`):
    /// the result covers both ranges and names the last state of every
    /// seat either changed, as one delta of the whole range would. A relay
    /// that falls behind sends one such frame instead of several; a viewer
    /// cannot tell it from the region core's own coalescing. False (and
    /// nothing changes) for snapshots, other shows, or ranges that do not
    /// join.
    pub fn join(&mut self, later: &Frame) -> bool {
        let (
            Frame::Delta {
                v,
                show,
                from,
                to,
                changes,
            },
            Frame::Delta {
                v: v2,
                show: show2,
                from: from2,
                to: to2,
                changes: changes2,
            },
        ) = (self, later)
        else {
            return false;
        };
        if v != v2 || show != show2 || *from2 > *to + 1 || *to2 <= *to || *from2 < *from {
            return false;
        }
        let mut seats: BTreeMap<u32, SeatState> = changes.iter().copied().collect();
        seats.extend(changes2.iter().copied());
        *changes = seats.into_iter().collect();
        *to = *to2;
        true
    }
}

/// Encodes a seat-state bitmap for a snapshot.
pub fn encode_map(map: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(map)
}

/// Decodes a snapshot's bitmap.
pub fn decode_map(map: &str) -> Result<Vec<u8>, LiveError> {
    base64::engine::general_purpose::STANDARD
        .decode(map)
        .map_err(|_| LiveError::BadMap)
}

/// Why a frame could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// A change number was skipped: take a new snapshot.
    #[error("changes {expected}.. are missing (got {from}..); resynchronise from a snapshot")]
    Gap {
        /// The number the viewer needed next.
        expected: u64,
        /// Where the delta started.
        from: u64,
    },
    /// A delta before any snapshot.
    #[error("a delta arrived before the snapshot")]
    NoSnapshot,
    /// A frame of another show.
    #[error("a frame of another show")]
    OtherShow,
    /// A version this code does not know.
    #[error("protocol version {0} is not supported")]
    Version(u8),
    /// A snapshot whose map is not base64.
    #[error("the snapshot's map is not base64")]
    BadMap,
    /// A delta whose range is empty or reversed, or a change past the
    /// show's last seat.
    #[error("a malformed delta")]
    BadDelta,
}

/// A viewer's copy of a show's seat map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    show: ShowId,
    state: Option<(u64, u32, Vec<u8>)>,
}

impl Replica {
    /// A viewer of `show` that has nothing yet.
    pub fn new(show: ShowId) -> Self {
        Self { show, state: None }
    }

    /// The last change number applied (None before the first snapshot).
    pub fn seq(&self) -> Option<u64> {
        self.state.as_ref().map(|(seq, _, _)| *seq)
    }

    /// The state of seat `ordinal` (None before the first snapshot).
    pub fn seat(&self, ordinal: u32) -> Option<SeatState> {
        let (_, seats, map) = self.state.as_ref()?;
        (ordinal < *seats).then(|| seat_state_at(map, ordinal as usize))
    }

    /// Every seat's state, by ordinal (empty before the first snapshot).
    pub fn seats(&self) -> Vec<SeatState> {
        match &self.state {
            None => Vec::new(),
            Some((_, seats, map)) => (0..*seats as usize)
                .map(|o| seat_state_at(map, o))
                .collect(),
        }
    }

    /// Applies a frame. On [`LiveError::Gap`] the copy is dropped: the
    /// viewer must take a snapshot before applying anything else.
    pub fn apply(&mut self, frame: &Frame) -> Result<(), LiveError> {
        match frame {
            Frame::Snapshot {
                v,
                show,
                seq,
                seats,
                map,
                ..
            } => {
                self.check(*v, *show)?;
                let mut bits = decode_map(map)?;
                bits.resize((*seats as usize * 2).div_ceil(8), 0);
                self.state = Some((*seq, *seats, bits));
                Ok(())
            }
            Frame::Delta {
                v,
                show,
                from,
                to,
                changes,
            } => {
                self.check(*v, *show)?;
                if from > to || *from == 0 {
                    return Err(LiveError::BadDelta);
                }
                let Some((seq, seats, map)) = self.state.as_mut() else {
                    return Err(LiveError::NoSnapshot);
                };
                if *to <= *seq {
                    return Ok(()); // old news: already in the snapshot
                }
                // A delta that starts at or before `seq + 1` and ends after
                // it is whole for this copy: it carries the state at `to`
                // of every seat that changed in `from..=to`, and a seat it
                // does not name did not change there.
                if *from > *seq + 1 {
                    let expected = *seq + 1;
                    self.state = None;
                    return Err(LiveError::Gap {
                        expected,
                        from: *from,
                    });
                }
                if changes.iter().any(|(o, _)| o >= seats) {
                    return Err(LiveError::BadDelta);
                }
                for (ordinal, state) in changes {
                    set_seat_state(map, *ordinal as usize, *state);
                }
                *seq = *to;
                Ok(())
            }
        }
    }

    fn check(&self, v: u8, show: ShowId) -> Result<(), LiveError> {
        if v != VERSION {
            return Err(LiveError::Version(v));
        }
        if show != self.show {
            return Err(LiveError::OtherShow);
        }
        Ok(())
    }
}

/// Gathers a show's numbered changes into deltas of at most one per
/// `window_ms`. The caller pushes every change in order (the numbers are
/// gap-free), asks [`due`](Self::due) on a timer and sends what
/// [`take`](Self::take) returns.
#[derive(Debug, Clone)]
pub struct Coalescer {
    show: ShowId,
    window_ms: i64,
    from: Option<u64>,
    to: u64,
    since_ms: i64,
    pending: BTreeMap<u32, SeatState>,
}

impl Coalescer {
    /// For `show`, holding changes back at most `window_ms` (about 50).
    pub fn new(show: ShowId, window_ms: i64) -> Self {
        Self {
            show,
            window_ms,
            from: None,
            to: 0,
            since_ms: 0,
            pending: BTreeMap::new(),
        }
    }

    /// Adds change `seq` (seats and their new states) seen at `now_ms`.
    /// A number that does not follow the last one pushed is refused: the
    /// caller has missed changes and must send its viewers a snapshot.
    pub fn push(
        &mut self,
        seq: u64,
        changes: &[(u32, SeatState)],
        now_ms: i64,
    ) -> Result<(), LiveError> {
        if self.to != 0 && seq != self.to + 1 {
            return Err(LiveError::Gap {
                expected: self.to + 1,
                from: seq,
            });
        }
        if self.from.is_none() {
            self.from = Some(seq);
            self.since_ms = now_ms;
        }
        self.to = seq;
        for (ordinal, state) in changes {
            self.pending.insert(*ordinal, *state);
        }
        Ok(())
    }

    /// Starts over after `seq` (after a snapshot was taken at `seq`).
    pub fn reset(&mut self, seq: u64) {
        self.from = None;
        self.to = seq;
        self.pending.clear();
    }

    /// Whether a delta is waiting and its window has passed.
    pub fn due(&self, now_ms: i64) -> bool {
        self.from.is_some() && now_ms - self.since_ms >= self.window_ms
    }

    /// The pending changes as one delta (None if there are none).
    pub fn take(&mut self) -> Option<Frame> {
        let from = self.from.take()?;
        let changes = std::mem::take(&mut self.pending).into_iter().collect();
        Some(Frame::Delta {
            v: VERSION,
            show: self.show,
            from,
            to: self.to,
            changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show() -> ShowId {
        ShowId(uuid::Uuid::from_u128(7))
    }

    fn snapshot(seq: u64, seats: &[SeatState]) -> Frame {
        let mut map = Vec::new();
        for (o, s) in seats.iter().enumerate() {
            set_seat_state(&mut map, o, *s);
        }
        Frame::Snapshot {
            v: VERSION,
            show: show(),
            seq,
            seats: seats.len() as u32,
            map: encode_map(&map),
            degraded: false,
        }
    }

    /// A small deterministic generator (xorshift): the property tests run
    /// thousands of random histories without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn state(n: u64) -> SeatState {
        SeatState::from_code((n % 3) as u8)
    }

    /// One numbered change: seats and their new states.
    type Change = Vec<(u32, SeatState)>;

    /// A random history: `changes` numbered changes of 1–4 seats each;
    /// returns the truth after each number (index 0: before any change).
    fn history(rng: &mut Rng, seats: u32, changes: u64) -> (Vec<Change>, Vec<Vec<SeatState>>) {
        let mut truth = vec![vec![SeatState::Available; seats as usize]];
        let mut steps = Vec::new();
        for _ in 0..changes {
            let n = 1 + rng.below(4);
            let step: Vec<(u32, SeatState)> = (0..n)
                .map(|_| (rng.below(u64::from(seats)) as u32, state(rng.next())))
                .collect();
            let mut next = truth.last().unwrap().clone();
            for (o, s) in &step {
                next[*o as usize] = *s;
            }
            truth.push(next);
            steps.push(step);
        }
        (steps, truth)
    }

    #[test]
    fn any_snapshot_plus_its_coalesced_deltas_equals_the_map_at_that_number() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..500 {
            let seats = 1 + rng.below(300) as u32;
            let changes = 1 + rng.below(60);
            let (steps, truth) = history(&mut rng, seats, changes);
            // A viewer joins at a random number k with the snapshot at k.
            let k = rng.below(changes + 1);
            let mut viewer = Replica::new(show());
            viewer.apply(&snapshot(k, &truth[k as usize])).unwrap();
            assert_eq!(viewer.seats(), truth[k as usize], "round {round}: snapshot");
            // The producer coalesced every change since the start into
            // windows of random length; the viewer gets them all.
            let mut c = Coalescer::new(show(), 50);
            let mut now = 0;
            for (i, step) in steps.iter().enumerate() {
                let seq = i as u64 + 1;
                now += rng.below(40) as i64;
                c.push(seq, step, now).unwrap();
                if c.due(now) || rng.below(5) == 0 {
                    let frame = c.take().unwrap();
                    viewer.apply(&frame).unwrap();
                    if let Frame::Delta { to, .. } = frame {
                        if to >= k {
                            assert_eq!(viewer.seats(), truth[to as usize], "round {round} at {to}");
                        }
                    }
                }
            }
            if let Some(frame) = c.take() {
                viewer.apply(&frame).unwrap();
            }
            assert_eq!(viewer.seq(), Some(changes), "round {round}");
            assert_eq!(
                &viewer.seats(),
                truth.last().unwrap(),
                "round {round}: final"
            );
        }
    }

    #[test]
    fn a_lost_delta_is_always_detected_and_the_copy_dropped() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for round in 0..500 {
            let seats = 1 + rng.below(50) as u32;
            let changes = 2 + rng.below(40);
            let (steps, truth) = history(&mut rng, seats, changes);
            let mut frames = Vec::new();
            let mut c = Coalescer::new(show(), 50);
            for (i, step) in steps.iter().enumerate() {
                c.push(i as u64 + 1, step, 0).unwrap();
                if rng.below(3) == 0 {
                    frames.extend(c.take());
                }
            }
            frames.extend(c.take());
            if frames.len() < 2 {
                continue;
            }
            let lost = rng.below(frames.len() as u64) as usize;
            let mut viewer = Replica::new(show());
            viewer.apply(&snapshot(0, &truth[0])).unwrap();
            let mut gap = false;
            for (i, f) in frames.iter().enumerate() {
                if i == lost {
                    continue;
                }
                match viewer.apply(f) {
                    Ok(()) => {}
                    Err(LiveError::Gap { .. }) => {
                        gap = true;
                        break;
                    }
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            let last_lost = lost == frames.len() - 1;
            assert!(
                gap || last_lost,
                "round {round}: a lost frame went unnoticed"
            );
            if gap {
                assert_eq!(viewer.seq(), None, "round {round}: the copy is dropped");
                assert_eq!(
                    viewer.apply(&frames[frames.len() - 1]),
                    Err(LiveError::NoSnapshot)
                );
            } else {
                // Only the newest frame was lost: the copy is behind, not
                // wrong, and the next frame will show the gap.
                assert!(viewer.seq() < Some(changes));
            }
        }
    }

    #[test]
    fn old_deltas_are_ignored_and_strangers_refused() {
        let mut viewer = Replica::new(show());
        assert_eq!(
            viewer.apply(&Frame::Delta {
                v: VERSION,
                show: show(),
                from: 1,
                to: 1,
                changes: vec![]
            }),
            Err(LiveError::NoSnapshot)
        );
        viewer
            .apply(&snapshot(5, &[SeatState::Held, SeatState::Available]))
            .unwrap();
        // Already part of the snapshot.
        let old = Frame::Delta {
            v: VERSION,
            show: show(),
            from: 3,
            to: 5,
            changes: vec![(0, SeatState::Available)],
        };
        assert_eq!(viewer.apply(&old), Ok(()));
        assert_eq!(viewer.seat(0), Some(SeatState::Held));
        let other = Frame::Delta {
            v: VERSION,
            show: ShowId(uuid::Uuid::from_u128(8)),
            from: 6,
            to: 6,
            changes: vec![],
        };
        assert_eq!(viewer.apply(&other), Err(LiveError::OtherShow));
        let future = Frame::Delta {
            v: 2,
            show: show(),
            from: 6,
            to: 6,
            changes: vec![],
        };
        assert_eq!(viewer.apply(&future), Err(LiveError::Version(2)));
        let past_the_end = Frame::Delta {
            v: VERSION,
            show: show(),
            from: 6,
            to: 6,
            changes: vec![(2, SeatState::Booked)],
        };
        assert_eq!(viewer.apply(&past_the_end), Err(LiveError::BadDelta));
        assert_eq!(viewer.seq(), Some(5));
    }

    #[test]
    fn a_burst_inside_one_window_is_one_frame_with_each_seat_once() {
        let mut c = Coalescer::new(show(), 50);
        for seq in 1..=100 {
            c.push(seq, &[((seq % 7) as u32, state(seq))], seq as i64 / 10)
                .unwrap();
        }
        assert!(!c.due(49));
        assert!(c.due(50));
        let Some(Frame::Delta {
            from, to, changes, ..
        }) = c.take()
        else {
            panic!("one delta");
        };
        assert_eq!((from, to, changes.len()), (1, 100, 7));
        assert_eq!(c.take(), None);
        // The producer itself refuses a gap in its input.
        assert!(matches!(
            c.push(102, &[], 60),
            Err(LiveError::Gap { expected: 101, .. })
        ));
    }

    #[test]
    fn joined_deltas_equal_the_deltas_applied_one_by_one() {
        let mut rng = Rng(0x5eed_1234);
        for _ in 0..300 {
            let seats = 1 + rng.below(40) as u32;
            let changes = 1 + rng.below(60);
            let (steps, maps) = history(&mut rng, seats, changes);
            let mut c = Coalescer::new(show(), 50);
            let mut deltas = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                c.push(i as u64 + 1, step, i as i64).unwrap();
                if rng.below(3) == 0 {
                    deltas.extend(c.take());
                }
            }
            deltas.extend(c.take());
            // Join deltas at random; apply both ways.
            let mut joined: Vec<Frame> = Vec::new();
            for d in &deltas {
                let glued = rng.below(2) == 0 && joined.last_mut().is_some_and(|last| last.join(d));
                if !glued {
                    joined.push(d.clone());
                }
            }
            let mut one_by_one = Replica::new(show());
            let mut merged = Replica::new(show());
            one_by_one.apply(&snapshot(0, &maps[0])).unwrap();
            merged.apply(&snapshot(0, &maps[0])).unwrap();
            for d in &deltas {
                one_by_one.apply(d).unwrap();
            }
            for d in &joined {
                merged.apply(d).unwrap();
            }
            assert_eq!(merged, one_by_one);
            assert_eq!(merged.seats(), *maps.last().unwrap());
        }
    }

    #[test]
    fn only_following_deltas_join() {
        let d = |from, to, changes: Vec<(u32, SeatState)>| Frame::Delta {
            v: VERSION,
            show: show(),
            from,
            to,
            changes,
        };
        let mut a = d(1, 3, vec![(0, SeatState::Held), (2, SeatState::Held)]);
        // A gap between the two never joins (the gap must stay visible).
        assert!(!a.join(&d(5, 6, vec![(1, SeatState::Held)])));
        // Old news (nothing past `to`) does not join either.
        assert!(!a.join(&d(2, 3, vec![(1, SeatState::Held)])));
        assert!(!a.clone().join(&snapshot(4, &[SeatState::Available; 3])));
        assert!(a.join(&d(
            4,
            5,
            vec![(0, SeatState::Available), (1, SeatState::Booked)]
        )));
        assert_eq!(
            a,
            d(
                1,
                5,
                vec![
                    (0, SeatState::Available),
                    (1, SeatState::Booked),
                    (2, SeatState::Held)
                ]
            )
        );
    }

    #[test]
    fn frames_are_tagged_json_with_their_version() {
        let f = Frame::Delta {
            v: VERSION,
            show: show(),
            from: 4,
            to: 6,
            changes: vec![(12, SeatState::Held)],
        };
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["type"], "delta");
        assert_eq!(json["v"], 1);
        assert_eq!(json["changes"][0], serde_json::json!([12, "HELD"]));
        let back: Frame = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
        let s = snapshot(
            3,
            &[SeatState::Booked, SeatState::Held, SeatState::Available],
        );
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""type":"snapshot""#), "{json}");
        let mut viewer = Replica::new(show());
        viewer.apply(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(
            viewer.seats(),
            vec![SeatState::Booked, SeatState::Held, SeatState::Available]
        );
    }
}
