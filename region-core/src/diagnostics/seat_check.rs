//! Whether Redis agrees with Postgres about one show's seats (pure: the
//! rows and the keys' values come in as arguments).
//!
//! Postgres decides who owns a seat; Redis is the fast path's lock. A
//! live held seat's key must name its hold; a booked seat's key names
//! `booked:<booking>` or is missing (the fast path only uses it to refuse
//! early, and recovery writes it again); a free or blocked seat has no
//! key. A seat whose hold has expired but which the sweeper has not freed
//! yet may go either way. Disagreement is not a safety problem (Postgres
//! refuses a second holder), but it makes holds fail late, as
//! `hold_conflicts_total{stage="postgres"}`.
//!
//! Postgres is read before and after Redis; a seat that changed between
//! the two reads (a hold taken or released meanwhile) is not judged.

use serde::Serialize;
use uuid::Uuid;

/// What a seat's key should hold, by Postgres.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The id of this live hold.
    Hold(Uuid),
    /// This booking's value (`booked:<booking>`, as the fast path writes
    /// it), or nothing.
    Booked(Uuid, String),
    /// Nothing.
    Free,
    /// Anything (a hold that has expired, not yet swept).
    Either,
}

impl Expect {
    /// The expectation for a seat row: its status, the hold of a HELD
    /// seat and whether that hold is unexpired, the booking of a BOOKED
    /// seat; `booked_value` is what a booked seat's key holds.
    pub fn of(
        status: &str,
        hold: Option<Uuid>,
        unexpired: Option<bool>,
        booking: Option<Uuid>,
        booked_value: fn(Uuid) -> String,
    ) -> Self {
        match (status, hold, booking) {
            ("HELD", Some(h), _) if unexpired == Some(true) => Expect::Hold(h),
            ("HELD", _, _) => Expect::Either,
            ("BOOKED", _, Some(b)) => Expect::Booked(b, booked_value(b)),
            ("BOOKED", _, None) => Expect::Either,
            _ => Expect::Free,
        }
    }

    fn allows(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Expect::Either, _) | (Expect::Free, None) | (Expect::Booked(..), None) => true,
            (Expect::Hold(h), Some(v)) => v == h.to_string(),
            (Expect::Booked(_, value), Some(v)) => v == value,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Expect::Hold(h) => format!("held by {h}"),
            Expect::Booked(b, _) => format!("booked by {b}"),
            Expect::Free => "free".into(),
            Expect::Either => "hold expired, not swept".into(),
        }
    }
}

/// One seat, as Postgres has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// Its label (the key's last part).
    pub label: String,
    /// What its key should hold.
    pub expect: Expect,
}

/// A seat whose Redis key disagrees with Postgres.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisMismatch {
    /// The seat.
    pub seat: String,
    /// What Postgres says (`held by <hold>`, `booked by <booking>`, `free`).
    pub postgres: String,
    /// What the key holds (null: no key).
    pub redis: Option<String>,
}

/// The seats whose key (`redis[i]` for `before[i]`) disagrees with
/// Postgres, leaving out seats that changed between `before` and `after`.
pub fn compare(before: &[Seat], redis: &[Option<String>], after: &[Seat]) -> Vec<RedisMismatch> {
    before
        .iter()
        .zip(redis)
        .filter(|(seat, _)| after.iter().any(|a| a == *seat))
        .filter(|(seat, value)| !seat.expect.allows(value.as_deref()))
        .map(|(seat, value)| RedisMismatch {
            seat: seat.label.clone(),
            postgres: seat.expect.describe(),
            redis: value.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(label: &str, expect: Expect) -> Seat {
        Seat {
            label: label.into(),
            expect,
        }
    }

    fn booked(b: Uuid) -> String {
        format!("booked:{b}")
    }

    #[test]
    fn each_seat_state_allows_what_its_key_may_hold() {
        let (h, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let seats = vec![
            seat("A1", Expect::Hold(h)),
            seat("A2", Expect::Booked(b, booked(b))),
            seat("A3", Expect::Booked(b, booked(b))),
            seat("A4", Expect::Free),
            seat("A5", Expect::Either),
        ];
        let agreeing = vec![
            Some(h.to_string()),
            Some(format!("booked:{b}")),
            None,
            None,
            Some("anything".into()),
        ];
        assert_eq!(compare(&seats, &agreeing, &seats), vec![]);
        let disagreeing = vec![
            None,
            Some(h.to_string()),
            Some(format!("booked:{h}")),
            Some(h.to_string()),
            None,
        ];
        let found: Vec<(String, String, Option<String>)> = compare(&seats, &disagreeing, &seats)
            .into_iter()
            .map(|m| (m.seat, m.postgres, m.redis))
            .collect();
        assert_eq!(
            found,
            vec![
                ("A1".into(), format!("held by {h}"), None),
                ("A2".into(), format!("booked by {b}"), Some(h.to_string())),
                (
                    "A3".into(),
                    format!("booked by {b}"),
                    Some(format!("booked:{h}"))
                ),
                ("A4".into(), "free".into(), Some(h.to_string())),
            ]
        );
    }

    #[test]
    fn a_seat_that_changed_between_the_reads_is_not_judged() {
        let h = Uuid::from_u128(1);
        let before = vec![seat("A1", Expect::Hold(h)), seat("A2", Expect::Free)];
        let after = vec![seat("A1", Expect::Free), seat("A2", Expect::Free)];
        // A1 was released while Redis was read: its missing key is fine.
        assert_eq!(compare(&before, &[None, None], &after), vec![]);
        assert_eq!(compare(&before, &[None, Some("x".into())], &after).len(), 1);
    }

    #[test]
    fn expectations_follow_the_seat_row() {
        let (h, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let of =
            |status, hold, unexpired, booking| Expect::of(status, hold, unexpired, booking, booked);
        assert_eq!(of("HELD", Some(h), Some(true), None), Expect::Hold(h));
        assert_eq!(of("HELD", Some(h), Some(false), None), Expect::Either);
        assert_eq!(
            of("BOOKED", None, None, Some(b)),
            Expect::Booked(b, booked(b))
        );
        assert_eq!(of("AVAILABLE", None, None, None), Expect::Free);
        assert_eq!(of("BLOCKED", None, None, None), Expect::Free);
    }
}
