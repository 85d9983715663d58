//! CSRF tokens for the edge's cookie-authenticated HTML forms. A browser
//! sends the session cookie with any cross-site form POST, so a form post
//! must also carry a token only a page of ours could have: an HMAC of the
//! session token and the form's scope (the sale), under the edge's key.
//! Nothing is stored (the session is the state), a token is useless with
//! another session or for another sale, and the edge also checks the
//! `Origin` header ([`same_origin`]). SameSite cookies stay on as a third
//! line.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the hidden form field.
pub const FIELD: &str = "csrf";

fn mac(key: &[u8], session: &str, scope: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"csrf\0");
    m.update(session.as_bytes());
    m.update(b"\0");
    m.update(scope.as_bytes());
    m
}

/// The token a page renders into its form for `session` and `scope`.
pub fn token(key: &[u8], session: &str, scope: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, session, scope).finalize().into_bytes())
}

/// Whether `given` is the token for `session` and `scope` (constant time).
pub fn verify(key: &[u8], session: &str, scope: &str, given: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(given) {
        Ok(bytes) => mac(key, session, scope).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The `csrf` field of an `application/x-www-form-urlencoded` body (the
/// token is base64url, which needs no decoding of `%` escapes).
pub fn form_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a form post's `Origin` is our own. A browser sends `Origin` on
/// every POST; a missing one is refused too (no legitimate browser form
/// of ours lacks it).
pub fn same_origin(origin_header: Option<&str>, own_origin: &str) -> bool {
    origin_header.is_some_and(|o| o.trim().eq_ignore_ascii_case(own_origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_binds_the_session_and_the_scope() {
        let t = token(b"key", "session-a", "sale-1");
        assert!(verify(b"key", "session-a", "sale-1", &t));
        assert!(
            !verify(b"key", "session-b", "sale-1", &t),
            "another session"
        );
        assert!(!verify(b"key", "session-a", "sale-2", &t), "another sale");
        assert!(!verify(b"other", "session-a", "sale-1", &t), "another key");
        assert!(!verify(b"key", "session-a", "sale-1", ""));
        assert!(!verify(b"key", "session-a", "sale-1", "!!!"));
    }

    #[test]
    fn fields_and_origins() {
        assert_eq!(form_field("a=1&csrf=xyz&b=2", FIELD), Some("xyz"));
        assert_eq!(form_field("", FIELD), None);
        assert!(same_origin(
            Some("http://127.0.0.1:8787"),
            "http://127.0.0.1:8787"
        ));
        assert!(!same_origin(
            Some("https://evil.example"),
            "http://127.0.0.1:8787"
        ));
        assert!(!same_origin(None, "http://127.0.0.1:8787"));
        assert!(!same_origin(Some("null"), "http://127.0.0.1:8787"));
    }
}
