//! Human-readable booking numbers, unique across shards:
//! `BMS<YYYYMMDD>-<SHARD>-<SEQ>`, e.g. `BMS20261128-MUM-000042`.
//!
//! This is the seed's `BMS` + date + sequence with the issuing shard's code
//! added, so two shards counting independently never hand out the same
//! number. Internal keys stay UUIDs; this is what a customer reads out.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest booking number accepted, in characters.
pub const MAX_LEN: usize = 30;

/// The fixed prefix.
const PREFIX: &str = "BMS";

/// Where the shard code starts: after `BMS`, 8 date digits and a `-`.
const SHARD_START: usize = PREFIX.len() + 8 + 1;

/// The sequence's minimum width; larger numbers take more digits.
const SEQ_MIN_WIDTH: usize = 6;

/// Why a booking number did not parse or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseBookingNumberError {
    /// Not of the shape `BMS<YYYYMMDD>-<SHARD>-<SEQ>`.
    #[error("booking number must look like BMS20261128-MUM-000042, got {0:?}")]
    Format(String),
    /// The date part is not a real date (or its year is not 4 digits).
    #[error("booking number date must be a real date written YYYYMMDD, got {0:?}")]
    Date(String),
    /// The shard code is not 1 to 8 ASCII letters or digits.
    #[error("booking number shard code must be 1 to 8 letters or digits, got {0:?}")]
    Shard(String),
    /// The sequence is 0, not decimal, not padded to exactly
    /// `max(6, its width)` digits, or too large for a `u64`.
    #[error(
        "booking number sequence must be a number from 1 up, zero-padded to 6 digits, got {0:?}"
    )]
    Seq(String),
    /// Longer than [`MAX_LEN`] characters.
    #[error("booking number must be at most 30 characters, got {0}")]
    TooLong(usize),
}

/// A booking number such as `BMS20261128-MUM-000042`, held in canonical
/// (uppercase) form; serialized as that string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BookingNumber {
    // `text` first, so the derived ordering is the text's; the other fields
    // are decoded from it once, at construction, so the accessors need not
    // re-parse (and cannot fail).
    text: String,
    date: NaiveDate,
    shard_len: usize,
    seq: u64,
}

impl BookingNumber {
    /// Builds the booking number for `date`, issuing shard `shard` (1 to 8
    /// ASCII letters or digits, any case; stored uppercase) and sequence
    /// `seq` (from 1). Fails if the date's year is not 0 to 9999 or the
    /// result would be longer than [`MAX_LEN`].
    pub fn new(date: NaiveDate, shard: &str, seq: u64) -> Result<Self, ParseBookingNumberError> {
        if !(0..=9999).contains(&date.year()) {
            return Err(ParseBookingNumberError::Date(date.to_string()));
        }
        let shard_ok =
            (1..=8).contains(&shard.len()) && shard.bytes().all(|b| b.is_ascii_alphanumeric());
        if !shard_ok {
            return Err(ParseBookingNumberError::Shard(shard.to_owned()));
        }
        if seq == 0 {
            return Err(ParseBookingNumberError::Seq(seq.to_string()));
        }
        let text = format!(
            "{PREFIX}{:04}{:02}{:02}-{}-{seq:0width$}",
            date.year(),
            date.month(),
            date.day(),
            shard.to_ascii_uppercase(),
            width = SEQ_MIN_WIDTH,
        );
        if text.len() > MAX_LEN {
            return Err(ParseBookingNumberError::TooLong(text.len()));
        }
        Ok(Self {
            text,
            date,
            shard_len: shard.len(),
            seq,
        })
    }

    /// Parses a booking number, in any case (`bms20261128-mum-000042` gives
    /// `BMS20261128-MUM-000042`). Nothing is trimmed. Rejects impossible
    /// dates (`20261331`), missing parts, a sequence of 0 or not padded to
    /// exactly 6 digits (or its width, if wider), and text longer than
    /// [`MAX_LEN`].
    pub fn parse(s: &str) -> Result<Self, ParseBookingNumberError> {
        // Checked first so a huge input is neither copied nor echoed back.
        if s.len() > MAX_LEN {
            return Err(ParseBookingNumberError::TooLong(s.len()));
        }
        let bad = || ParseBookingNumberError::Format(s.to_owned());
        // ASCII only, so the byte slicing below stays on char boundaries.
        if !s.is_ascii() {
            return Err(bad());
        }
        let upper = s.to_ascii_uppercase();
        let rest = upper.strip_prefix(PREFIX).ok_or_else(bad)?;
        let mut parts = rest.split('-');
        let (Some(date), Some(shard), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };

        let bad_date = || ParseBookingNumberError::Date(date.to_owned());
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_date());
        }
        // All ASCII digits, so these parse; a failure would still be a
        // clean error rather than a panic.
        let num = |r: std::ops::Range<usize>| date[r].parse::<u32>().map_err(|_| bad_date());
        let year = i32::try_from(num(0..4)?).map_err(|_| bad_date())?;
        let date = NaiveDate::from_ymd_opt(year, num(4..6)?, num(6..8)?).ok_or_else(bad_date)?;

        let bad_seq = || ParseBookingNumberError::Seq(seq.to_owned());
        let canonical_width = seq.len() == SEQ_MIN_WIDTH || !seq.starts_with('0');
        if seq.len() < SEQ_MIN_WIDTH || !canonical_width || !seq.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad_seq());
        }
        let seq_n: u64 = seq.parse().map_err(|_| bad_seq())?;
        if seq_n == 0 {
            return Err(bad_seq());
        }

        Self::new(date, shard, seq_n)
    }

    /// The booking number as a string slice (canonical, uppercase).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The booking date in the number.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    /// The issuing shard's code, uppercase (`MUM`).
    pub fn shard(&self) -> &str {
        &self.text[SHARD_START..SHARD_START + self.shard_len]
    }

    /// The sequence number (42 for `...-000042`).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Debug for BookingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BookingNumber").field(&self.text).finish()
    }
}

impl fmt::Display for BookingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for BookingNumber {
    type Err = ParseBookingNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for BookingNumber {
    type Error = ParseBookingNumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<BookingNumber> for String {
    fn from(b: BookingNumber) -> String {
        b.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseBookingNumberError as E;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn seed_like_example() {
        let b = BookingNumber::new(day(2026, 11, 28), "MUM", 42).unwrap();
        assert_eq!(b.as_str(), "BMS20261128-MUM-000042");
        assert_eq!(b.to_string(), "BMS20261128-MUM-000042");
        assert_eq!(b.date(), day(2026, 11, 28));
        assert_eq!(b.shard(), "MUM");
        assert_eq!(b.seq(), 42);
        assert_eq!(BookingNumber::parse("BMS20261128-MUM-000042").unwrap(), b);
        assert_eq!(
            format!("{b:?}"),
            r#"BookingNumber("BMS20261128-MUM-000042")"#
        );
    }

    #[test]
    fn round_trips() {
        for (date, shard, seq) in [
            (day(2026, 1, 1), "A", 1),
            (day(2024, 2, 29), "DEV", 999_999),
            (day(9999, 12, 31), "SHARD123", 123_456_789),
            (day(2026, 11, 28), "7", 10_000_000_000_000),
        ] {
            let b = BookingNumber::new(date, shard, seq).unwrap();
            let back: BookingNumber = b.as_str().parse().unwrap();
            assert_eq!(back, b);
            assert_eq!((back.date(), back.shard(), back.seq()), (date, shard, seq));
        }
    }

    #[test]
    fn lower_case_is_accepted_and_canonicalised() {
        let b = BookingNumber::parse("bms20261128-mum-000042").unwrap();
        assert_eq!(b.as_str(), "BMS20261128-MUM-000042");
        let b = BookingNumber::parse("Bms20261128-Blr2-000007").unwrap();
        assert_eq!(b.as_str(), "BMS20261128-BLR2-000007");
        // The region core's default shard code is lower case.
        let b = BookingNumber::new(day(2026, 11, 28), "dev", 1).unwrap();
        assert_eq!(b.as_str(), "BMS20261128-DEV-000001");
        assert_eq!(b.shard(), "DEV");
    }

    #[test]
    fn width_grows_past_999999() {
        let d = day(2026, 11, 28);
        let b = BookingNumber::new(d, "MUM", 999_999).unwrap();
        assert_eq!(b.as_str(), "BMS20261128-MUM-999999");
        let b = BookingNumber::new(d, "MUM", 1_000_000).unwrap();
        assert_eq!(b.as_str(), "BMS20261128-MUM-1000000");
        assert_eq!(BookingNumber::parse("BMS20261128-MUM-1000000").unwrap(), b);
        assert_eq!(b.seq(), 1_000_000);
    }

    #[test]
    fn the_length_cap_bounds_the_sequence() {
        let d = day(2026, 11, 28);
        // 13 fixed characters + an 8-character shard leave 9 digits.
        let b = BookingNumber::new(d, "ABCDEFGH", 999_999_999).unwrap();
        assert_eq!(b.as_str().len(), MAX_LEN);
        assert_eq!(
            BookingNumber::new(d, "ABCDEFGH", 1_000_000_000),
            Err(E::TooLong(31))
        );
        assert_eq!(BookingNumber::new(d, "M", u64::MAX), Err(E::TooLong(34)));
    }

    #[test]
    fn invalid_inputs() {
        let cases: &[(&str, E)] = &[
            ("", E::Format("".into())),
            ("BMS", E::Format("BMS".into())),
            (
                "XYZ20261128-MUM-000042",
                E::Format("XYZ20261128-MUM-000042".into()),
            ),
            ("BMS20261128-MUM", E::Format("BMS20261128-MUM".into())),
            ("BMS20261128000042", E::Format("BMS20261128000042".into())),
            (
                "BMS20261128-MUM-000042-1",
                E::Format("BMS20261128-MUM-000042-1".into()),
            ),
            (
                " BMS20261128-MUM-000042",
                E::Format(" BMS20261128-MUM-000042".into()),
            ),
            ("BMS20261128-MUM-000042 ", E::Seq("000042 ".into())),
            (
                "BMS20261128-MÜM-000042",
                E::Format("BMS20261128-MÜM-000042".into()),
            ),
            ("BMS20261331-MUM-000042", E::Date("20261331".into())),
            ("BMS20250229-MUM-000042", E::Date("20250229".into())),
            ("BMS2026112-MUM-000042", E::Date("2026112".into())),
            ("BMS2026112A-MUM-000042", E::Date("2026112A".into())),
            ("BMS20261128--000042", E::Shard("".into())),
            ("BMS20261128-ABCDEFGHI-000042", E::Shard("ABCDEFGHI".into())),
            ("BMS20261128-M_M-000042", E::Shard("M_M".into())),
            ("BMS20261128-MUM-000000", E::Seq("000000".into())),
            ("BMS20261128-MUM-", E::Seq("".into())),
            ("BMS20261128-MUM-42", E::Seq("42".into())),
            ("BMS20261128-MUM-0000042", E::Seq("0000042".into())),
            ("BMS20261128-MUM-+00042", E::Seq("+00042".into())),
            ("BMS20261128-MUM-00004X", E::Seq("00004X".into())),
            ("BMS20261128-M-99999999999999999", E::TooLong(31)),
            ("BMS20261128-MUMBAI12-0000000042", E::TooLong(31)),
        ];
        for (input, want) in cases {
            assert_eq!(BookingNumber::parse(input).as_ref(), Err(want), "{input:?}");
        }
        let huge = "B".repeat(10_000);
        assert_eq!(BookingNumber::parse(&huge), Err(E::TooLong(10_000)));
    }

    #[test]
    fn new_rejects_bad_parts() {
        let d = day(2026, 11, 28);
        assert_eq!(BookingNumber::new(d, "MUM", 0), Err(E::Seq("0".into())));
        assert_eq!(BookingNumber::new(d, "", 1), Err(E::Shard("".into())));
        assert_eq!(
            BookingNumber::new(d, "mu-m", 1),
            Err(E::Shard("mu-m".into()))
        );
        assert!(matches!(
            BookingNumber::new(day(10_000, 1, 1), "MUM", 1),
            Err(E::Date(_))
        ));
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            BookingNumber::parse("BMS20261331-MUM-000042")
                .unwrap_err()
                .to_string(),
            "booking number date must be a real date written YYYYMMDD, got \"20261331\""
        );
    }

    #[test]
    fn serde_is_the_string() {
        let b = BookingNumber::parse("BMS20261128-MUM-000042").unwrap();
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, r#""BMS20261128-MUM-000042""#);
        assert_eq!(serde_json::from_str::<BookingNumber>(&json).unwrap(), b);
        let lower: BookingNumber = serde_json::from_str(r#""bms20261128-mum-000042""#).unwrap();
        assert_eq!(lower, b);
        assert!(serde_json::from_str::<BookingNumber>(r#""BMS20261331-MUM-000042""#).is_err());
    }
}
