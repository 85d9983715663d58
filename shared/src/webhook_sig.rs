//! Stripe-style webhook signatures: the header value
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." ++ body)>`.
//!
//! The timestamp is part of the signed bytes, so a captured delivery cannot
//! be replayed later with a fresh `t`; the receiver bounds how old `t` may
//! be. Pure: the caller passes `now`, as everywhere in this crate.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The only signature scheme this module produces and checks. A header may
/// carry several `v1=` entries (a sender rotating secrets signs with both);
/// entries of other schemes are ignored, so new schemes can be added
/// without breaking old receivers.
pub const SCHEME: &str = "v1";

/// Why a signature header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<integer>` plus at least one `v1=` entry
    /// (missing or repeated `t`, an entry without `=`, no `v1` at all).
    #[error("malformed signature header")]
    Malformed,
    /// A `v1` signature matches, but `t` is further from `now` than the
    /// tolerance allows (a replayed or badly delayed delivery).
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` signature matches the body under this secret.
    #[error("no signature matches the payload")]
    Mismatch,
}

/// Signs `payload` as sent at `timestamp` (unix seconds) and returns the
/// header value `t=<timestamp>,v1=<lowercase hex>`.
pub fn sign(secret: &[u8], timestamp: i64, payload: &[u8]) -> String {
    let tag = keyed(secret, timestamp, payload).finalize().into_bytes();
    format!("t={timestamp},{SCHEME}={}", hex::encode(tag))
}

/// Checks a header produced by [`sign`] against `payload`.
///
/// Accepts if any `v1` entry matches (compared in constant time) and
/// `|now_unix - t| <= tolerance_secs`. Signatures are checked before the
/// timestamp, so [`SignatureError::Stale`] means "genuine but too old" and a
/// forgery is always reported as [`SignatureError::Mismatch`]. A `v1` entry
/// that is not valid hex can match nothing and counts as a mismatch.
pub fn verify(
    secret: &[u8],
    header: &str,
    payload: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let parsed = parse(header)?;
    let mac = keyed(secret, parsed.timestamp, payload);
    let matched = parsed
        .signatures
        .iter()
        .filter_map(|sig| hex::decode(sig).ok())
        .any(|tag| mac.clone().verify_slice(&tag).is_ok());
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    // A negative tolerance accepts nothing but an exact match of clocks.
    let tolerance = u64::try_from(tolerance_secs).unwrap_or(0);
    if now_unix.abs_diff(parsed.timestamp) > tolerance {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The MAC state after feeding `"<timestamp>." ++ payload`.
fn keyed(secret: &[u8], timestamp: i64, payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long ones are hashed first), so
    // `new_from_slice` cannot fail here.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// A header split into its timestamp and its `v1` signatures (still hex).
struct Parsed<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

fn parse(header: &str) -> Result<Parsed<'_>, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                let t = value.parse().map_err(|_| SignatureError::Malformed)?;
                // Two timestamps would make "which one was signed" ambiguous.
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            SCHEME => signatures.push(value),
            _ => {}
        }
    }
    match timestamp {
        Some(timestamp) if !signatures.is_empty() => Ok(Parsed {
            timestamp,
            signatures,
        }),
        _ => Err(SignatureError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const T: i64 = 1_700_000_000;

    #[test]
    fn round_trip() {
        let header = sign(SECRET, T, BODY);
        assert!(header.starts_with("t=1700000000,v1="));
        let hex_part = header.split_once(",v1=").unwrap().1;
        assert_eq!(hex_part.len(), 64);
        assert!(hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(verify(SECRET, &header, BODY, T, 300), Ok(()));
        assert_eq!(verify(SECRET, &header, BODY, T + 300, 300), Ok(()));
        assert_eq!(verify(SECRET, &header, BODY, T - 300, 300), Ok(()));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "1.x"), computed with Python's hmac module.
        let header = sign(b"key", 1, b"x");
        assert_eq!(
            header,
            "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"
        );
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let header = sign(SECRET, T, BODY);
        let tampered = br#"{"id":"evt_1","type":"payment_intent.payment_failed"}"#;
        assert_eq!(
            verify(SECRET, &header, tampered, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn changed_timestamp_is_a_mismatch() {
        let header = sign(SECRET, T, BODY).replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(SECRET, &header, BODY, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let header = sign(b"another secret", T, BODY);
        assert_eq!(
            verify(SECRET, &header, BODY, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_either_way() {
        let header = sign(SECRET, T, BODY);
        assert_eq!(
            verify(SECRET, &header, BODY, T + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &header, BODY, T - 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &header, BODY, T + 1, -5),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn forged_and_old_reports_mismatch_not_stale() {
        let header = sign(b"another secret", T, BODY);
        assert_eq!(
            verify(SECRET, &header, BODY, T + 10_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn two_v1_entries_one_valid() {
        let good = sign(SECRET, T, BODY);
        let good_sig = good.split_once(",v1=").unwrap().1;
        let bad_sig = sign(b"old secret", T, BODY);
        let bad_sig = bad_sig.split_once(",v1=").unwrap().1;
        for header in [
            format!("t={T},v1={bad_sig},v1={good_sig}"),
            format!("t={T},v1={good_sig},v1={bad_sig}"),
            format!("v1={good_sig}, t={T}, v0=ignored, v1=not-hex"),
        ] {
            assert_eq!(verify(SECRET, &header, BODY, T, 300), Ok(()), "{header}");
        }
        let both_bad = format!("t={T},v1={bad_sig},v1=zz");
        assert_eq!(
            verify(SECRET, &both_bad, BODY, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers() {
        let sig = sign(SECRET, T, BODY);
        let sig = sig.split_once(",v1=").unwrap().1;
        for header in [
            String::new(),
            "garbage".to_string(),
            format!("v1={sig}"),
            format!("t={T}"),
            format!("t={T},v0={sig}"),
            format!("t=soon,v1={sig}"),
            format!("t=,v1={sig}"),
            format!("t={T},t={T},v1={sig}"),
            format!("t={T},v1={sig},junk"),
        ] {
            assert_eq!(
                verify(SECRET, &header, BODY, T, 300),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }
}
