//! Which holds of a group commit may take their seats: the pure decision
//! at the heart of the durable path, given the locked seat rows and `now`.
//!
//! A hold is accepted only if every one of its seats is free (available,
//! or held by a hold that has expired) and not taken by an earlier
//! accepted hold of the same batch. So each hold stays all-or-nothing even
//! when many share one transaction, and even if Redis let two overlapping
//! holds through.

use chrono::{DateTime, Utc};
use shared::SeatState;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A locked `show_seats` row as the decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatRow {
    /// Status column.
    pub status: SeatState,
    /// Current holder, if HELD.
    pub hold_id: Option<Uuid>,
    /// When the current holder's hold ends.
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// Row version (optimistic lock).
    pub version: i64,
}

impl SeatRow {
    /// Free to hold at `now`: available, or held by an expired hold that
    /// the sweeper has not reached yet.
    pub fn is_free(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            SeatState::Available => true,
            SeatState::Held => self.hold_expires_at.is_some_and(|t| t <= now),
            SeatState::Booked => false,
        }
    }
}

/// (show id, seat id): the key of a seat of a show.
pub type SeatKey = (Uuid, Uuid);

/// The outcome for one hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Take the seats. `takeovers` are (expired hold, seat) pairs whose
    /// hold loses the seat now.
    Accept {
        /// Expired holders displaced, with the seat.
        takeovers: Vec<(Uuid, Uuid)>,
    },
    /// Take nothing; these seats are not free.
    Reject {
        /// Seat ids that were unavailable.
        unavailable: Vec<Uuid>,
    },
}

/// Decides each hold of a batch, in order. `holds` gives each hold's show
/// and seat ids; `rows` the locked rows. A seat missing from `rows` counts
/// as unavailable.
pub fn decide(
    holds: &[(Uuid, &[Uuid])],
    rows: &HashMap<SeatKey, SeatRow>,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut claimed: HashSet<SeatKey> = HashSet::new();
    holds
        .iter()
        .map(|(show, seats)| {
            let unavailable: Vec<Uuid> = seats
                .iter()
                .filter(|seat| {
                    let key = (*show, **seat);
                    claimed.contains(&key) || !rows.get(&key).is_some_and(|r| r.is_free(now))
                })
                .copied()
                .collect();
            if !unavailable.is_empty() {
                return Decision::Reject { unavailable };
            }
            let takeovers = seats
                .iter()
                .filter_map(|seat| {
                    claimed.insert((*show, *seat));
                    let row = &rows[&(*show, *seat)];
                    match (row.status, row.hold_id) {
                        (SeatState::Held, Some(old)) => Some((old, *seat)),
                        _ => None,
                    }
                })
                .collect();
            Decision::Accept { takeovers }
        })
        .collect()
}

/// The negative control's decision: accept everything, check nothing.
/// Used only when seat protection is switched off to prove the tests can
/// see a double hold.
pub fn decide_unprotected(holds: &[(Uuid, &[Uuid])]) -> Vec<Decision> {
    holds
        .iter()
        .map(|_| Decision::Accept { takeovers: vec![] })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }
    fn avail() -> SeatRow {
        SeatRow {
            status: SeatState::Available,
            hold_id: None,
            hold_expires_at: None,
            version: 0,
        }
    }
    fn held(by: Uuid, secs_from_now: i64) -> SeatRow {
        SeatRow {
            status: SeatState::Held,
            hold_id: Some(by),
            hold_expires_at: Some(now() + chrono::Duration::seconds(secs_from_now)),
            version: 3,
        }
    }

    #[test]
    fn overlapping_holds_in_one_batch_first_wins_whole() {
        let show = Uuid::from_u128(1);
        let (a, b, c) = (
            Uuid::from_u128(10),
            Uuid::from_u128(11),
            Uuid::from_u128(12),
        );
        let rows = HashMap::from([
            ((show, a), avail()),
            ((show, b), avail()),
            ((show, c), avail()),
        ]);
        let h1 = [a, b];
        let h2 = [b, c]; // overlaps h1 on b: must take nothing, not c alone
        let h3 = [c];
        let d = decide(&[(show, &h1), (show, &h2), (show, &h3)], &rows, now());
        assert_eq!(d[0], Decision::Accept { takeovers: vec![] });
        assert_eq!(
            d[1],
            Decision::Reject {
                unavailable: vec![b]
            }
        );
        assert_eq!(
            d[2],
            Decision::Accept { takeovers: vec![] },
            "c stayed free"
        );
    }

    #[test]
    fn live_and_booked_seats_reject_expired_are_taken_over() {
        let show = Uuid::from_u128(1);
        let old = Uuid::from_u128(99);
        let (a, b, c) = (
            Uuid::from_u128(10),
            Uuid::from_u128(11),
            Uuid::from_u128(12),
        );
        let mut booked = avail();
        booked.status = SeatState::Booked;
        let rows = HashMap::from([
            ((show, a), held(old, 5)),
            ((show, b), held(old, 0)),
            ((show, c), booked),
        ]);
        assert_eq!(
            decide(&[(show, &[a][..])], &rows, now()),
            vec![Decision::Reject {
                unavailable: vec![a]
            }]
        );
        assert_eq!(
            decide(&[(show, &[b][..])], &rows, now()),
            vec![Decision::Accept {
                takeovers: vec![(old, b)]
            }],
            "a hold that ends exactly now is expired"
        );
        assert_eq!(
            decide(&[(show, &[c][..])], &rows, now()),
            vec![Decision::Reject {
                unavailable: vec![c]
            }]
        );
        let unknown = Uuid::from_u128(77);
        assert_eq!(
            decide(&[(show, &[b, unknown][..])], &rows, now()),
            vec![Decision::Reject {
                unavailable: vec![unknown]
            }]
        );
    }

    #[test]
    fn same_seat_number_on_two_shows_does_not_collide() {
        let (s1, s2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let a = Uuid::from_u128(10);
        let rows = HashMap::from([((s1, a), avail()), ((s2, a), avail())]);
        let d = decide(&[(s1, &[a][..]), (s2, &[a][..])], &rows, now());
        assert!(d.iter().all(|x| matches!(x, Decision::Accept { .. })));
    }
}
