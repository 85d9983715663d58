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
    /// The subject is empty, too long or holds control characters.
    #[error("the token subject must be 1-200 characters without control characters")]
    BadSubject,
    /// The role is neither `user` nor `operator`.
    #[error("the token role must be 'user' or 'operator'")]
    BadRole,
}

/// The roles a token may carry.
pub const ROLES: [&str; 2] = ["user", "operator"];

/// The one check of a verified token's claims, for the edge and the region
/// core alike: the subject is a clean line of 1 to
/// [`crate::text::MAX_SUBJECT_CHARS`] characters (no NUL, no control
/// characters) and the role is one of [`ROLES`]. [`verify_hs256`] applies
/// it; a verifier built on another library must call it too.
pub fn check_claims(sub: &str, role: &str) -> Result<(), TokenError> {
    crate::text::check_line("sub", sub, crate::text::MAX_SUBJECT_CHARS)
        .map_err(|_| TokenError::BadSubject)?;
    if sub.trim() != sub {
        return Err(TokenError::BadSubject);
    }
    if !ROLES.contains(&role) {
        return Err(TokenError::BadRole);
    }
    Ok(())
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
    if now > claims.exp.saturating_add(leeway_s) {
        return Err(TokenError::Expired);
    }
    check_claims(&claims.sub, &claims.role)?;
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

    /// The table both the edge and the region core are fed (see the e2e
    /// test `token_table`): subject and role shapes, signed with a good key.
    #[test]
    fn claims_are_checked_by_one_rule() {
        let long = "u".repeat(201);
        let max = "u".repeat(200);
        let cases: [(&str, &str, Result<(), TokenError>); 9] = [
            ("alice", "user", Ok(())),
            (&max, "operator", Ok(())),
            ("", "user", Err(TokenError::BadSubject)),
            ("  ", "user", Err(TokenError::BadSubject)),
            (" alice", "user", Err(TokenError::BadSubject)),
            (&long, "user", Err(TokenError::BadSubject)),
            ("al\0ice", "user", Err(TokenError::BadSubject)),
            ("al\nice", "user", Err(TokenError::BadSubject)),
            ("alice", "admin", Err(TokenError::BadRole)),
        ];
        for (sub, role, want) in cases {
            assert_eq!(check_claims(sub, role), want, "{sub:?} {role:?}");
            let claims = serde_json::json!({"sub": sub, "role": role, "exp": 2000, "iat": 0});
            let t = mint(b"k", r#"{"alg":"HS256"}"#, &claims.to_string());
            assert_eq!(verify_hs256(b"k", &t, 1500, 0).map(|_| ()), want, "{sub:?}");
        }
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
