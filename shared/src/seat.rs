//! Seat labels (`A5`, `AA12`) and the three states a seat of a show can be in.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a seat label or a hold request's seat list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    /// Not of the form row letters (1–3, `A`–`Z`) then a number (1–9999).
    #[error("seat label must be a row (1-3 letters A-Z) then a number 1-9999, like A5; got {0:?}")]
    BadLabel(String),
    /// The list was empty.
    #[error("at least one seat is required")]
    Empty,
    /// More seats than one hold may take.
    #[error("at most {max} seats may be held at once, got {got}")]
    TooMany {
        /// The configured maximum.
        max: usize,
        /// How many were asked for.
        got: usize,
    },
    /// The same seat twice.
    #[error("seat {0} is listed more than once")]
    Duplicate(String),
}

/// A seat's label within a screen: row letters then a number, e.g. `A5`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SeatLabel(String);

impl SeatLabel {
    /// Parses `A5`, `AA12`; rejects lowercase, missing parts, leading zeros.
    pub fn parse(s: &str) -> Result<Self, SeatError> {
        let bad = || SeatError::BadLabel(s.to_owned());
        let split = s.find(|c: char| c.is_ascii_digit()).ok_or_else(bad)?;
        let (row, num) = s.split_at(split);
        let row_ok = (1..=3).contains(&row.len()) && row.bytes().all(|b| b.is_ascii_uppercase());
        let num_ok = (1..=4).contains(&num.len())
            && num.bytes().all(|b| b.is_ascii_digit())
            && !num.starts_with('0');
        if row_ok && num_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(bad())
        }
    }

    /// Builds a label from a row and a seat number (`"A"`, 5 → `A5`).
    pub fn from_parts(row: &str, number: u16) -> Result<Self, SeatError> {
        Self::parse(&format!("{row}{number}"))
    }

    /// The row part (`AA` of `AA12`).
    pub fn row(&self) -> &str {
        let split = self
            .0
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(self.0.len());
        &self.0[..split]
    }

    /// The number part (12 of `AA12`).
    pub fn number(&self) -> u16 {
        let row_len = self.row().len();
        self.0[row_len..].parse().unwrap_or(0)
    }

    /// The label as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SeatLabel {
    type Error = SeatError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SeatLabel> for String {
    fn from(l: SeatLabel) -> String {
        l.0
    }
}

impl fmt::Display for SeatLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates a hold request's seat list: non-empty, at most `max` seats,
/// each a valid label, no duplicates. Returns the labels in request order.
pub fn parse_seat_list(seats: &[String], max: usize) -> Result<Vec<SeatLabel>, SeatError> {
    if seats.is_empty() {
        return Err(SeatError::Empty);
    }
    if seats.len() > max {
        return Err(SeatError::TooMany {
            max,
            got: seats.len(),
        });
    }
    let mut out: Vec<SeatLabel> = Vec::with_capacity(seats.len());
    for s in seats {
        let label = SeatLabel::parse(s)?;
        if out.contains(&label) {
            return Err(SeatError::Duplicate(label.0));
        }
        out.push(label);
    }
    Ok(out)
}

/// The state of one seat of one show.
///
/// The discriminants are the 2-bit codes of the Redis seat-map bitfield:
/// every non-available state has exactly one bit set, so
/// `available = seats - BITCOUNT(map)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatState {
    /// Free to hold.
    Available = 0,
    /// In a live hold.
    Held = 1,
    /// Sold.
    Booked = 2,
}

impl SeatState {
    /// The 2-bit code used in the seat-map bitfield.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Decodes a 2-bit code; the unused code 3 reads as `Booked`, the
    /// conservative answer (never offer a seat we are unsure of).
    pub fn from_code(code: u8) -> Self {
        match code & 0b11 {
            0 => Self::Available,
            1 => Self::Held,
            _ => Self::Booked,
        }
    }

    /// The database spelling (`AVAILABLE`, `HELD`, `BOOKED`).
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Held => "HELD",
            Self::Booked => "BOOKED",
        }
    }

    /// Parses the database spelling.
    pub fn from_db_str(s: &str) -> Option<Self> {
        match s {
            "AVAILABLE" => Some(Self::Available),
            "HELD" => Some(Self::Held),
            "BOOKED" => Some(Self::Booked),
            _ => None,
        }
    }
}

/// Reads seat `ordinal`'s state from a seat-map bitfield (2 bits per seat,
/// most significant bits first, as Redis `BITFIELD u2` lays them out).
/// Bytes past the end of `map` read as available (Redis semantics).
pub fn seat_state_at(map: &[u8], ordinal: usize) -> SeatState {
    let bit = ordinal * 2;
    let Some(byte) = map.get(bit / 8) else {
        return SeatState::Available;
    };
    let shift = 6 - (bit % 8);
    SeatState::from_code((byte >> shift) & 0b11)
}

/// Writes seat `ordinal`'s state into a seat-map bitfield, growing it.
pub fn set_seat_state(map: &mut Vec<u8>, ordinal: usize, state: SeatState) {
    let bit = ordinal * 2;
    if map.len() <= bit / 8 {
        map.resize(bit / 8 + 1, 0);
    }
    let shift = 6 - (bit % 8);
    let byte = &mut map[bit / 8];
    *byte = (*byte & !(0b11 << shift)) | (state.code() << shift);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        for ok in ["A1", "A5", "AA12", "ZZZ9999"] {
            assert!(SeatLabel::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "5", "a5", "A05", "A0", "AAAA1", "A12345", "A-1", "A1B", " A1",
        ] {
            assert!(SeatLabel::parse(bad).is_err(), "{bad}");
        }
        let l = SeatLabel::parse("AB17").unwrap();
        assert_eq!((l.row(), l.number()), ("AB", 17));
    }

    #[test]
    fn seat_lists() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_seat_list(&s(&[]), 10), Err(SeatError::Empty));
        assert_eq!(
            parse_seat_list(&s(&["A1", "A2", "A3"]), 2),
            Err(SeatError::TooMany { max: 2, got: 3 })
        );
        assert_eq!(
            parse_seat_list(&s(&["A1", "A2", "A1"]), 10),
            Err(SeatError::Duplicate("A1".into()))
        );
        assert!(matches!(
            parse_seat_list(&s(&["A1", "x"]), 10),
            Err(SeatError::BadLabel(_))
        ));
        assert_eq!(parse_seat_list(&s(&["B2", "A1"]), 10).unwrap().len(), 2);
    }

    #[test]
    fn bitfield_round_trip_matches_redis_layout() {
        let mut map = Vec::new();
        set_seat_state(&mut map, 0, SeatState::Held);
        set_seat_state(&mut map, 3, SeatState::Booked);
        set_seat_state(&mut map, 5, SeatState::Held);
        // Redis BITFIELD SET u2 #0 1, #3 2, #5 1 gives 0b01_00_00_10, 0b00_01_00_00.
        assert_eq!(map, vec![0b0100_0010, 0b0001_0000]);
        assert_eq!(seat_state_at(&map, 0), SeatState::Held);
        assert_eq!(seat_state_at(&map, 3), SeatState::Booked);
        assert_eq!(seat_state_at(&map, 4), SeatState::Available);
        assert_eq!(seat_state_at(&map, 100), SeatState::Available);
        set_seat_state(&mut map, 0, SeatState::Available);
        assert_eq!(seat_state_at(&map, 0), SeatState::Available);
    }
}
