//! The recent deltas a show's feed has sent, for the polling fallback
//! (`GET /v1/shows/{id}/seats?since=N`): a poller at `N` gets one delta
//! covering everything after `N`, or a snapshot when `N` is older than the
//! history (or unknown). Pure.

use shared::live::{Frame, VERSION};
use shared::{SeatState, ShowId};
use std::collections::{BTreeMap, VecDeque};

/// What a poller at `since` should get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Catchup {
    /// Nothing happened after `since`.
    NotModified,
    /// One delta from `since + 1` to the latest sent.
    Delta(Frame),
    /// Too far behind (or ahead: a counter that restarted): a snapshot.
    Snapshot,
}

/// One delta as sent: (from, to, changes).
type Sent = (u64, u64, Vec<(u32, SeatState)>);

/// The last `capacity` deltas sent, in order, gap-free.
#[derive(Debug, Clone)]
pub struct History {
    show: ShowId,
    capacity: usize,
    deltas: VecDeque<Sent>,
    /// The number the history is complete from: deltas cover
    /// `start + 1 ..= last`.
    start: u64,
}

impl History {
    /// Empty, starting after the snapshot at `seq`.
    pub fn new(show: ShowId, capacity: usize, seq: u64) -> Self {
        Self {
            show,
            capacity: capacity.max(1),
            deltas: VecDeque::new(),
            start: seq,
        }
    }

    /// The number of the last change sent.
    pub fn last(&self) -> u64 {
        self.deltas.back().map_or(self.start, |(_, to, _)| *to)
    }

    /// Starts over after a snapshot at `seq` (a resync: older deltas may
    /// not lead to it).
    pub fn reset(&mut self, seq: u64) {
        self.deltas.clear();
        self.start = seq;
    }

    /// Records a delta as sent. One that does not follow on (the feed
    /// resynced in between) restarts the history at its start.
    pub fn push(&mut self, frame: &Frame) {
        let Frame::Delta {
            from, to, changes, ..
        } = frame
        else {
            return;
        };
        if *from > self.last() + 1 || *to <= self.last() {
            self.reset(from.saturating_sub(1));
        }
        self.deltas.push_back((*from, *to, changes.clone()));
        while self.deltas.len() > self.capacity {
            if let Some((_, to, _)) = self.deltas.pop_front() {
                self.start = to;
            }
        }
    }

    /// What a poller whose copy is at `since` needs (0: it has no copy,
    /// so a snapshot, whatever the numbers: seat states from before the
    /// counter began are in no delta).
    pub fn since(&self, since: u64) -> Catchup {
        if since == 0 {
            return Catchup::Snapshot;
        }
        let last = self.last();
        if since == last {
            return Catchup::NotModified;
        }
        if since > last || since < self.start {
            return Catchup::Snapshot;
        }
        let mut merged = BTreeMap::new();
        for (_, to, changes) in &self.deltas {
            if *to > since {
                merged.extend(changes.iter().copied());
            }
        }
        // Deltas that straddle `since` apply whole (shared::live), so the
        // merged delta may start at or before `since + 1`.
        let from = self
            .deltas
            .iter()
            .find(|(_, to, _)| *to > since)
            .map_or(since + 1, |(from, _, _)| *from);
        Catchup::Delta(Frame::Delta {
            v: VERSION,
            show: self.show,
            from,
            to: last,
            changes: merged.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::live::Replica;
    use shared::seat::set_seat_state;

    fn show() -> ShowId {
        ShowId(uuid::Uuid::from_u128(9))
    }

    fn delta(from: u64, to: u64, changes: &[(u32, SeatState)]) -> Frame {
        Frame::Delta {
            v: VERSION,
            show: show(),
            from,
            to,
            changes: changes.to_vec(),
        }
    }

    #[test]
    fn a_poller_gets_what_it_missed_as_one_delta() {
        let mut h = History::new(show(), 8, 10);
        assert_eq!(h.since(10), Catchup::NotModified);
        assert_eq!(h.since(0), Catchup::Snapshot, "no copy: a snapshot");
        h.push(&delta(11, 12, &[(1, SeatState::Held)]));
        h.push(&delta(
            13,
            15,
            &[(1, SeatState::Booked), (2, SeatState::Held)],
        ));
        assert_eq!(h.last(), 15);
        assert_eq!(h.since(15), Catchup::NotModified);
        assert_eq!(
            h.since(12),
            Catchup::Delta(delta(
                13,
                15,
                &[(1, SeatState::Booked), (2, SeatState::Held)]
            ))
        );
        // Inside a delta: it applies whole from its start.
        assert_eq!(
            h.since(14),
            Catchup::Delta(delta(
                13,
                15,
                &[(1, SeatState::Booked), (2, SeatState::Held)]
            ))
        );
        assert_eq!(
            h.since(10),
            Catchup::Delta(delta(
                11,
                15,
                &[(1, SeatState::Booked), (2, SeatState::Held)]
            ))
        );
        // Before the history, or a number from the future: a snapshot.
        assert_eq!(h.since(9), Catchup::Snapshot);
        assert_eq!(h.since(16), Catchup::Snapshot);
    }

    #[test]
    fn old_deltas_fall_out_and_a_resync_restarts_it() {
        let mut h = History::new(show(), 2, 0);
        for n in 1..=5 {
            h.push(&delta(n, n, &[(n as u32, SeatState::Held)]));
        }
        assert_eq!(h.since(2), Catchup::Snapshot);
        assert!(matches!(h.since(3), Catchup::Delta(_)));
        // A delta that does not follow on: history restarts there.
        h.push(&delta(9, 9, &[(0, SeatState::Held)]));
        assert_eq!(h.since(5), Catchup::Snapshot);
        assert!(matches!(h.since(8), Catchup::Delta(_)));
    }

    /// Any copy at a number the history covers, plus the catch-up, equals
    /// the map at the last number (checked against a replay).
    #[test]
    fn catch_up_plus_copy_equals_the_latest_map() {
        let seats = 12u32;
        let mut h = History::new(show(), 6, 0);
        let mut maps = vec![Vec::new()]; // the map at each number
        let mut map: Vec<u8> = Vec::new();
        set_seat_state(&mut map, seats as usize - 1, SeatState::Available);
        maps[0] = map.clone();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seq = 0;
        for _ in 0..40 {
            let n = 1 + next() % 3;
            let mut changes = BTreeMap::new();
            for _ in 0..n {
                seq += 1;
                let o = (next() % seats as u64) as u32;
                let st = SeatState::from_code((next() % 3) as u8);
                set_seat_state(&mut map, o as usize, st);
                changes.insert(o, st);
                maps.push(map.clone());
            }
            h.push(&delta(
                seq - n + 1,
                seq,
                &changes.into_iter().collect::<Vec<_>>(),
            ));
            for since in 0..=seq {
                let mut r = Replica::new(show());
                r.apply(&Frame::Snapshot {
                    v: VERSION,
                    show: show(),
                    seq: since,
                    seats,
                    map: shared::live::encode_map(&maps[since as usize]),
                    degraded: false,
                })
                .unwrap();
                match h.since(since) {
                    Catchup::NotModified => assert_eq!(since, seq),
                    Catchup::Snapshot => assert!(since == 0 || since < h.start),
                    Catchup::Delta(d) => {
                        r.apply(&d).unwrap();
                        let mut want = Replica::new(show());
                        want.apply(&Frame::Snapshot {
                            v: VERSION,
                            show: show(),
                            seq,
                            seats,
                            map: shared::live::encode_map(&map),
                            degraded: false,
                        })
                        .unwrap();
                        assert_eq!(r.seats(), want.seats(), "since {since}");
                        assert_eq!(r.seq(), Some(seq));
                    }
                }
            }
        }
    }
}
