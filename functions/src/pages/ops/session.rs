//! The console's session: cookie `ops_session` holding the operator
//! token itself (`HttpOnly; Secure; SameSite=Strict; Path=/ops`, until the
//! token expires), apart from the buyer's `session` cookie so neither can
//! stand in for the other. The edge forwards the token to the region core
//! as `Authorization: Bearer`; the region core checks the grant again on
//! every call, so the edge's check is for the pages, not the security.
//!
//! CSRF: one token per console session, `shared::csrf::token(key, token,
//! "ops")`, in a hidden `csrf` field of every form, checked with the
//! `Origin` before anything else. The sign-in form's token has no session
//! to bind to (scope `ops-signin`).

use shared::token::{verify_hs256, Grant, Role, TokenError};

/// The console session's cookie.
pub const OPS_COOKIE: &str = "ops_session";
const CSRF_SCOPE: &str = "ops";
const SIGNIN_SCOPE: &str = "ops-signin";

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's subject.
    pub sub: String,
    /// Cities and scopes.
    pub grant: Grant,
    /// Expiry, unix seconds.
    pub exp: i64,
}

impl Operator {
    /// Whether the grant reaches `city`.
    pub fn covers(&self, city: &str) -> bool {
        self.grant.covers_city(city)
    }
}

/// Checks a pasted (or cookie) token: valid, unexpired, role operator,
/// with a grant. The error is a sentence for the sign-in page.
pub fn verify(secret: &[u8], token: &str, now_s: i64) -> Result<Operator, &'static str> {
    let token = token.trim();
    if token.is_empty() {
        return Err("Paste your operator token.");
    }
    let claims =
        verify_hs256(secret, token, now_s, crate::auth::TOKEN_LEEWAY_S).map_err(|e| match e {
            TokenError::Expired => "That token has expired. Ask for a new one.",
            _ => "That is not a valid token for this platform.",
        })?;
    if claims.role != Role::Operator {
        return Err("That token is not an operator token.");
    }
    if claims.grant.cities.is_empty() || claims.grant.scopes.is_empty() {
        return Err("That operator token reaches no city.");
    }
    Ok(Operator {
        sub: claims.sub,
        grant: claims.grant,
        exp: claims.exp,
    })
}

/// `Set-Cookie` for a console session, kept until the token expires.
pub fn set_cookie(token: &str, op: &Operator, now_s: i64) -> String {
    format!(
        "{OPS_COOKIE}={}; Path=/ops; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        token.trim(),
        (op.exp - now_s).max(1)
    )
}

/// `Set-Cookie` that ends the console session.
pub fn clear_cookie() -> String {
    format!("{OPS_COOKIE}=; Path=/ops; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// The console session's CSRF token.
pub fn csrf_token(key: &[u8], token: &str) -> String {
    shared::csrf::token(key, token, CSRF_SCOPE)
}

/// Whether `given` is the console session's CSRF token.
pub fn csrf_ok(key: &[u8], token: &str, given: Option<&str>) -> bool {
    !token.is_empty() && given.is_some_and(|g| shared::csrf::verify(key, token, CSRF_SCOPE, g))
}

/// The sign-in form's token.
pub fn signin_token(key: &[u8]) -> String {
    shared::csrf::token(key, "", SIGNIN_SCOPE)
}

/// Whether a sign-in form's token is ours.
pub fn signin_ok(key: &[u8], given: Option<&str>) -> bool {
    given.is_some_and(|g| shared::csrf::verify(key, "", SIGNIN_SCOPE, g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::token::{sign_hs256, sign_operator_hs256, Scope};

    const KEY: &[u8] = b"dev-only-secret-change-me";

    #[test]
    fn only_an_unexpired_operator_token_with_a_grant_signs_in() {
        let grant = Grant::new(vec!["mum".into()], vec![Scope::Read]).unwrap();
        let t = sign_operator_hs256(KEY, "ops-ann", &grant, 1_000, 5_000).unwrap();
        let op = verify(KEY, &format!(" {t}\n"), 2_000).unwrap();
        assert_eq!(op.sub, "ops-ann");
        assert!(op.covers("mum") && !op.covers("del"));
        assert!(verify(KEY, &t, 9_000).unwrap_err().contains("expired"));
        assert!(verify(b"another key", &t, 2_000).is_err());
        let user = sign_hs256(KEY, "ann", Role::User, 1_000, 5_000).unwrap();
        assert!(verify(KEY, &user, 2_000)
            .unwrap_err()
            .contains("not an operator"));
        assert!(verify(KEY, "", 2_000).is_err());
        let c = set_cookie(&t, &op, 2_000);
        for attr in [
            "ops_session=",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/ops",
            "Max-Age=3000",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_console_session() {
        let csrf = csrf_token(KEY, "tok");
        assert!(csrf_ok(KEY, "tok", Some(&csrf)));
        assert!(!csrf_ok(KEY, "other", Some(&csrf)));
        assert!(!csrf_ok(KEY, "tok", None));
        assert!(!csrf_ok(KEY, "", Some("")));
        // The buyer's token for the same string is not the console's.
        assert!(!csrf_ok(
            KEY,
            "tok",
            Some(&crate::pages::session::csrf_token(KEY, "tok"))
        ));
        assert!(signin_ok(KEY, Some(&signin_token(KEY))));
        assert!(!signin_ok(KEY, Some(&csrf)));
    }
}
