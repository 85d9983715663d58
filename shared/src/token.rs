//! Verification of the platform's bearer tokens (HS256 JWTs with `sub`,
//! `role`, `exp`, `iat`, as the region core mints them) without a JWT
//! library, so the edge Worker can check them in WASM. Only HS256 is
//! accepted: the algorithm named in the header must be exactly that (no
//! `none`, no algorithm confusion). Pure: callers pass `now`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Claims the edge reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// User id.
    pub sub: String,
    /// `user` or `operator`.
    pub role: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds.
    #[serde(default)]
    pub iat: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON, or too long.
    #[error("the token is malformed")]
    Malformed,
    /// The header names another algorithm than HS256.
    #[error("the token must be signed with HS256")]
    WrongAlgorithm,
    /// The signature does not match.
    #[error("the token signature is invalid")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("the token has expired")]
    Expired,
}

/// Longest token accepted.
pub const MAX_LEN: usize = 4096;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Verifies an HS256 token under `secret` at `now` (unix seconds),
/// allowing `leeway_s` of clock skew on `exp`.
pub fn verify_hs256(
    secret: &[u8],
    token: &str,
    now: i64,
    leeway_s: i64,
) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::WrongAlgorithm);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(&token.as_bytes()[..h.len() + 1 + c.len()]);
    mac.verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: TokenClaims = URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if now > claims.exp + leeway_s {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mint(secret: &[u8], header: &str, claims: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let c = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{c}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{c}.{s}")
    }

    const CLAIMS: &str = r#"{"sub":"alice","role":"user","exp":2000,"iat":1000}"#;

    #[test]
    fn a_genuine_token_verifies_until_expiry_plus_leeway() {
        let t = mint(b"k", r#"{"typ":"JWT","alg":"HS256"}"#, CLAIMS);
        let c = verify_hs256(b"k", &t, 1500, 5).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role.as_str(), c.exp),
            ("alice", "user", 2000)
        );
        assert!(verify_hs256(b"k", &t, 2005, 5).is_ok());
        assert_eq!(verify_hs256(b"k", &t, 2006, 5), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_confused_tokens_are_refused() {
        let t = mint(b"k", r#"{"alg":"HS256"}"#, CLAIMS);
        assert_eq!(
            verify_hs256(b"other", &t, 1500, 0),
            Err(TokenError::BadSignature)
        );
        let none = mint(b"k", r#"{"alg":"none"}"#, CLAIMS);
        assert_eq!(
            verify_hs256(b"k", &none, 1500, 0),
            Err(TokenError::WrongAlgorithm)
        );
        let mut parts: Vec<&str> = t.split('.').collect();
        let admin = URL_SAFE_NO_PAD.encode(r#"{"sub":"alice","role":"operator","exp":2000}"#);
        parts[1] = &admin;
        assert_eq!(
            verify_hs256(b"k", &parts.join("."), 1500, 0),
            Err(TokenError::BadSignature)
        );
        for bad in ["", "a.b", "a.b.c.d", "!.!.!"] {
            assert_eq!(
                verify_hs256(b"k", bad, 0, 0),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }
}
