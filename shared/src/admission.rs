//! Admission passes: what the edge's waiting room hands a user when their
//! turn comes, and what the region core demands before it takes a hold on
//! a flash-sale show (invariant 8 in docs/architecture.md: the queue is not bypassable).
//!
//! A pass is `ap1.<claims>.<tag>`: `claims` is base64url (no padding) of a
//! JSON [`PassClaims`], `tag` is base64url of HMAC-SHA256(key,
//! `"ap1." ++ claims`). The edge signs, the region core verifies with the
//! same key (several keys are accepted, for rotation). A pass is bound to
//! one user and one sale and expires; it carries its queue position and a
//! pass id so the region core can report it completed. Pure: callers pass
//! `now` (unix seconds).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Version prefix of the pass format.
pub const PREFIX: &str = "ap1";

/// Longest pass accepted (a real one is ~250 bytes): bounds the work an
/// attacker can make the verifier do.
pub const MAX_LEN: usize = 1024;

/// What a pass says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassClaims {
    /// Pass id (unique per admission), used to report it completed.
    pub pid: String,
    /// The user it was issued to (the verified token's subject).
    pub sub: String,
    /// The sale it admits to (the show id).
    pub sale: String,
    /// The user's 1-based place in the queue.
    pub pos: u64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds (exclusive).
    pub exp: i64,
}

/// Why a pass was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PassError {
    /// Not of the form `ap1.<claims>.<tag>`, bad base64 or JSON, too long.
    #[error("the admission pass is malformed")]
    Malformed,
    /// The tag does not match under any accepted key (forged or altered).
    #[error("the admission pass signature is invalid")]
    BadSignature,
    /// `now >= exp`.
    #[error("the admission pass has expired")]
    Expired,
    /// Issued to another user.
    #[error("the admission pass belongs to another user")]
    WrongUser,
    /// Issued for another sale.
    #[error("the admission pass is for another sale")]
    WrongSale,
}

impl PassError {
    /// Stable error code for API bodies.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "pass_malformed",
            Self::BadSignature => "pass_invalid",
            Self::Expired => "pass_expired",
            Self::WrongUser => "pass_wrong_user",
            Self::WrongSale => "pass_wrong_sale",
        }
    }
}

fn mac(key: &[u8], signed: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(signed);
    m
}

/// Signs `claims` with `key`.
pub fn sign(key: &[u8], claims: &PassClaims) -> String {
    let json = serde_json::to_vec(claims).expect("claims serialize");
    let body = URL_SAFE_NO_PAD.encode(json);
    let signed = format!("{PREFIX}.{body}");
    let tag = mac(key, signed.as_bytes()).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks the signature (under any of `keys`) and expiry; returns the claims.
pub fn verify(keys: &[&[u8]], pass: &str, now: i64) -> Result<PassClaims, PassError> {
    if pass.len() > MAX_LEN {
        return Err(PassError::Malformed);
    }
    let mut parts = pass.split('.');
    let (Some(prefix), Some(body), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PassError::Malformed);
    };
    if prefix != PREFIX {
        return Err(PassError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| PassError::Malformed)?;
    let signed = &pass[..prefix.len() + 1 + body.len()];
    // Constant-time comparison (verify_slice), under each key in turn.
    let genuine = keys
        .iter()
        .any(|k| mac(k, signed.as_bytes()).verify_slice(&tag).is_ok());
    if !genuine {
        return Err(PassError::BadSignature);
    }
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| PassError::Malformed)?;
    let claims: PassClaims = serde_json::from_slice(&json).map_err(|_| PassError::Malformed)?;
    if now >= claims.exp {
        return Err(PassError::Expired);
    }
    Ok(claims)
}

/// [`verify`], then checks the pass is `user`'s and for `sale`.
pub fn check(
    keys: &[&[u8]],
    pass: &str,
    user: &str,
    sale: &str,
    now: i64,
) -> Result<PassClaims, PassError> {
    let claims = verify(keys, pass, now)?;
    if claims.sub != user {
        return Err(PassError::WrongUser);
    }
    if claims.sale != sale {
        return Err(PassError::WrongSale);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"edge-admission-key-0123456789";

    fn claims() -> PassClaims {
        PassClaims {
            pid: "p-1".into(),
            sub: "alice".into(),
            sale: "show-1".into(),
            pos: 42,
            iat: 1_000,
            exp: 1_600,
        }
    }

    #[test]
    fn a_signed_pass_verifies_until_it_expires() {
        let p = sign(KEY, &claims());
        assert!(p.starts_with("ap1."));
        assert_eq!(check(&[KEY], &p, "alice", "show-1", 1_000), Ok(claims()));
        assert_eq!(check(&[KEY], &p, "alice", "show-1", 1_599), Ok(claims()));
        assert_eq!(verify(&[KEY], &p, 1_600), Err(PassError::Expired));
    }

    #[test]
    fn a_pass_is_bound_to_its_user_and_sale() {
        let p = sign(KEY, &claims());
        assert_eq!(
            check(&[KEY], &p, "bob", "show-1", 1_000),
            Err(PassError::WrongUser)
        );
        assert_eq!(
            check(&[KEY], &p, "alice", "show-2", 1_000),
            Err(PassError::WrongSale)
        );
    }

    #[test]
    fn forged_or_altered_passes_are_refused() {
        let p = sign(KEY, &claims());
        assert_eq!(
            verify(&[b"another-key"], &p, 1_000),
            Err(PassError::BadSignature)
        );
        // Swap in claims for another user, keep the old tag.
        let mut other = claims();
        other.sub = "mallory".into();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        let tag = p.rsplit('.').next().unwrap();
        let forged = format!("ap1.{forged_body}.{tag}");
        assert_eq!(verify(&[KEY], &forged, 1_000), Err(PassError::BadSignature));
        // Extend the expiry the same way.
        let mut longer = claims();
        longer.exp = 9_999;
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&longer).unwrap());
        assert_eq!(
            verify(&[KEY], &format!("ap1.{body}.{tag}"), 1_000),
            Err(PassError::BadSignature)
        );
    }

    #[test]
    fn malformed_passes_are_refused_before_any_crypto() {
        for bad in ["", "ap1", "ap1.x", "ap2.a.b", "ap1.a.b.c", "ap1.!!.??"] {
            assert_eq!(verify(&[KEY], bad, 0), Err(PassError::Malformed), "{bad:?}");
        }
        assert_eq!(
            verify(&[KEY], &"a".repeat(MAX_LEN + 1), 0),
            Err(PassError::Malformed)
        );
        // A genuine tag over a body that is not JSON claims.
        let body = URL_SAFE_NO_PAD.encode(b"not json");
        let signed = format!("ap1.{body}");
        let tag = URL_SAFE_NO_PAD.encode(mac(KEY, signed.as_bytes()).finalize().into_bytes());
        assert_eq!(
            verify(&[KEY], &format!("{signed}.{tag}"), 0),
            Err(PassError::Malformed)
        );
    }

    #[test]
    fn rotation_accepts_the_old_and_the_new_key() {
        let old = sign(b"old-key-old-key-old", &claims());
        let new = sign(KEY, &claims());
        let keys: [&[u8]; 2] = [KEY, b"old-key-old-key-old"];
        assert!(verify(&keys, &old, 1_000).is_ok());
        assert!(verify(&keys, &new, 1_000).is_ok());
    }
}
