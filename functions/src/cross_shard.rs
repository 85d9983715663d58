//! Reads that span every shard, for callers who do not name a city: a
//! booking found by its number or id (`GET /v1/bookings/{ref}`), and a
//! user's bookings from every shard (`GET /v1/me/bookings`). The edge asks
//! each shard once (cities sharing a shard share the answer), each call
//! with the region timeout, and decides here. Pure.
//!
//! A booking number carries its shard's code (`BMS20261205-MUM-000664`),
//! but the edge's table is keyed by city, not by shard code, and an id
//! carries none: so a lookup asks every shard. With a handful of shards
//! that costs little; a directory of shard codes would narrow it.

use serde_json::{json, Value};
use shared::booking_number::BookingNumber;

use crate::error::EdgeError;

/// One shard's answer: its cities, and its status and body (`None`: no
/// answer, or the call was refused by its breaker).
pub struct ShardAnswer<'a> {
    /// The cities the shard serves (the first names it).
    pub cities: &'a [&'a str],
    /// The status, if it answered.
    pub status: Option<u16>,
    /// The body.
    pub body: &'a [u8],
}

/// A booking reference in its canonical spelling: a booking number, or a
/// booking id (lowercase, hyphenated).
pub fn booking_reference(s: &str) -> Result<String, EdgeError> {
    if let Ok(n) = BookingNumber::parse(s) {
        return Ok(n.to_string());
    }
    match shared::BookingId::parse(s) {
        Ok(id) if id.to_string() == s => Ok(s.to_owned()),
        _ => Err(EdgeError::new(
            400,
            "invalid_booking_reference",
            "expected a booking number (e.g. BMS20261205-MUM-000664) or a booking id (UUID)",
        )),
    }
}

/// What a lookup across shards found.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// The booking, and the city of the shard that has it.
    Booking {
        /// City to act on it through.
        city: String,
        /// The region's answer.
        body: Value,
    },
    /// Every shard answered, and none has it (or it is not the caller's).
    NotFound,
    /// None that answered has it, and some did not answer.
    Unknown {
        /// The cities whose shards did not answer.
        unavailable: Vec<String>,
    },
}

/// Decides a lookup from every shard's answer to `GET /v1/bookings/{ref}`.
pub fn find_booking(answers: &[ShardAnswer<'_>]) -> Found {
    let mut unavailable = Vec::new();
    for a in answers {
        match a.status {
            Some(200) => {
                if let Ok(body) = serde_json::from_slice::<Value>(a.body) {
                    return Found::Booking {
                        city: a.cities.first().copied().unwrap_or_default().to_owned(),
                        body,
                    };
                }
                unavailable.extend(a.cities.iter().map(|c| c.to_string()));
            }
            Some(404) => {}
            _ => unavailable.extend(a.cities.iter().map(|c| c.to_string())),
        }
    }
    if unavailable.is_empty() {
        Found::NotFound
    } else {
        Found::Unknown { unavailable }
    }
}

/// Merges every shard's answer to `GET /v1/bookings` into one list,
/// newest first, each booking with the `city` to act on it through;
/// `partial` (and the cities in `unavailable`) when a shard did not answer.
pub fn merge_bookings(answers: &[ShardAnswer<'_>]) -> Value {
    let mut all: Vec<Value> = Vec::new();
    let mut unavailable: Vec<String> = Vec::new();
    for a in answers {
        let list = match a.status {
            Some(200) => serde_json::from_slice::<Value>(a.body).ok(),
            _ => None,
        };
        match list.as_ref().and_then(|l| l["bookings"].as_array()) {
            Some(bookings) => {
                let city = a.cities.first().copied().unwrap_or_default();
                for b in bookings {
                    let mut b = b.clone();
                    if let Some(o) = b.as_object_mut() {
                        o.insert("city".into(), Value::String(city.to_owned()));
                    }
                    all.push(b);
                }
            }
            None => unavailable.extend(a.cities.iter().map(|c| c.to_string())),
        }
    }
    // RFC 3339 in UTC from every region: the text orders as the time.
    all.sort_by(|x, y| {
        let t = |v: &Value| v["created_at"].as_str().unwrap_or_default().to_owned();
        t(y).cmp(&t(x))
    });
    json!({
        "bookings": all,
        "partial": !unavailable.is_empty(),
        "unavailable_cities": unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer<'a>(cities: &'a [&'a str], status: Option<u16>, body: &'a str) -> ShardAnswer<'a> {
        ShardAnswer {
            cities,
            status,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn references_are_numbers_or_canonical_ids() {
        assert!(booking_reference("BMS20261205-MUM-000664").is_ok());
        let id = "01a2205a-d387-7029-933e-ebdbc50f0011";
        assert_eq!(booking_reference(id).unwrap(), id);
        assert!(booking_reference(&id.to_uppercase()).is_err());
        assert!(booking_reference("nope").is_err());
    }

    #[test]
    fn a_lookup_finds_the_shard_that_has_it_or_says_who_did_not_answer() {
        let found = find_booking(&[
            answer(&["mum"], Some(404), "{}"),
            answer(&["nyc"], Some(200), r#"{"number":"BMS1-NYC-000001"}"#),
        ]);
        assert!(matches!(found, Found::Booking { ref city, .. } if city == "nyc"));
        assert_eq!(
            find_booking(&[
                answer(&["mum"], Some(404), "{}"),
                answer(&["nyc"], Some(404), "{}")
            ]),
            Found::NotFound
        );
        assert_eq!(
            find_booking(&[
                answer(&["mum", "pune"], None, ""),
                answer(&["nyc"], Some(404), "{}")
            ]),
            Found::Unknown {
                unavailable: vec!["mum".into(), "pune".into()]
            }
        );
    }

    #[test]
    fn bookings_merge_newest_first_and_a_silent_shard_makes_it_partial() {
        let merged = merge_bookings(&[
            answer(
                &["mum"],
                Some(200),
                r#"{"bookings":[{"number":"a","created_at":"2026-12-01T10:00:00Z"}]}"#,
            ),
            answer(
                &["nyc"],
                Some(200),
                r#"{"bookings":[{"number":"b","created_at":"2026-12-02T10:00:00Z"}]}"#,
            ),
            answer(&["blr"], Some(503), "{}"),
        ]);
        assert_eq!(merged["bookings"][0]["number"], "b");
        assert_eq!(merged["bookings"][0]["city"], "nyc");
        assert_eq!(merged["bookings"][1]["city"], "mum");
        assert_eq!(merged["partial"], true);
        assert_eq!(merged["unavailable_cities"], json!(["blr"]));
    }
}
