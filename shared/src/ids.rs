//! Identifiers and their parsing: bad input is rejected once, here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Why an identifier did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// A city code must be 2 to 8 lowercase ASCII letters (`mum`, `blr`).
    #[error("city code must be 2 to 8 lowercase letters, got {0:?}")]
    CityCode(String),
    /// Not a UUID.
    #[error("{kind} must be a UUID, got {value:?}")]
    Uuid {
        /// Which id was expected.
        kind: &'static str,
        /// What was given.
        value: String,
    },
}

/// A city (shard routing key), e.g. `mum`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CityCode(String);

impl CityCode {
    /// Parses a city code: 2 to 8 lowercase ASCII letters.
    pub fn parse(s: &str) -> Result<Self, ParseIdError> {
        let ok = (2..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseIdError::CityCode(s.to_owned()))
        }
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CityCode {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CityCode> for String {
    fn from(c: CityCode) -> String {
        c.0
    }
}

impl fmt::Display for CityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Parses the id from its hyphenated UUID form.
            pub fn parse(s: &str) -> Result<Self, ParseIdError> {
                Uuid::parse_str(s).map(Self).map_err(|_| ParseIdError::Uuid {
                    kind: $kind,
                    value: s.to_owned(),
                })
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A show (one screening or performance); its seats are one Redis
    /// hash tag, so a show lives in one Redis Cluster slot.
    ShowId,
    "show id"
);
uuid_id!(
    /// A seat hold. The hold id is also the fencing token: every write that
    /// acts on a held seat checks it.
    HoldId,
    "hold id"
);
uuid_id!(
    /// A booking (its human-facing name is its `BookingNumber`).
    BookingId,
    "booking id"
);
uuid_id!(
    /// A title (film or event): in the global catalog, one id for every
    /// city.
    MovieId,
    "movie id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn city_codes() {
        assert!(CityCode::parse("mum").is_ok());
        assert!(CityCode::parse("m").is_err());
        assert!(CityCode::parse("MUM").is_err());
        assert!(CityCode::parse("mumbaimum").is_err());
        assert!(CityCode::parse("mu1").is_err());
    }

    #[test]
    fn uuid_ids() {
        let id = ShowId::parse("0190a0b0-0000-7000-8000-000000000001").unwrap();
        assert_eq!(id.to_string(), "0190a0b0-0000-7000-8000-000000000001");
        let err = HoldId::parse("nope").unwrap_err();
        assert_eq!(err.to_string(), "hold id must be a UUID, got \"nope\"");
    }
}
