//! The buyer's session and the other cookies the pages set, and the rule
//! for the JSON API called from the pages.
//!
//! - **Session**: cookie `session`, a user JWT (role `user`, `sub` = the
//!   normalised e-mail) that the edge signs with `JWT_SECRET`, so the
//!   region cores accept it as they accept any token of theirs.
//!   `HttpOnly; Secure; SameSite=Lax; Path=/`, 12 hours.
//! - **CSRF**: one token per session, `shared::csrf::token(key, session,
//!   "session")` (an HMAC of the session: nothing to store, useless with
//!   another session). Forms carry it in a hidden `csrf` field; the script
//!   reads it from `<meta name="csrf-token">` and sends it as
//!   `X-CSRF-Token`. The edge also checks `Origin` on form posts.
//! - **Admission pass**: cookie `pass-{show}` (`HttpOnly; Secure;
//!   SameSite=Strict`), set when the waiting room admits the user; the
//!   edge adds it as `Admission-Pass` to holds for that show.
//!
//! A `/v1/…` request without `Authorization` is authenticated by the
//! session cookie only for safe methods, or with a valid `X-CSRF-Token`
//! ([`api_token`]); the edge then forwards `Authorization: Bearer`.

use shared::token::{sign_hs256, Role, TokenError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "session";
/// The older cookie the waiting-room page read (still accepted).
pub const LEGACY_COOKIE: &str = "token";
/// How long a session lasts.
pub const SESSION_TTL_S: i64 = 12 * 3600;
/// The header the script sends the CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// The scope of the per-session CSRF token.
const CSRF_SCOPE: &str = "session";
/// The scope of the sign-in form's token (there is no session yet).
const SIGNIN_SCOPE: &str = "signin";

/// A cookie's value from a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The session token from the cookies (the current name, else the old).
pub fn session_cookie(header: Option<&str>) -> Option<&str> {
    cookie(header, SESSION_COOKIE).or_else(|| cookie(header, LEGACY_COOKIE))
}

/// An e-mail address as a user id: trimmed, lower-cased, one `@` with
/// something on both sides and a dot in the domain, at most 200
/// characters (the token subject's limit), no spaces or controls.
pub fn normalise_email(raw: &str) -> Result<String, &'static str> {
    let e = raw.trim().to_lowercase();
    let Some((local, domain)) = e.split_once('@') else {
        return Err("Enter an e-mail address, like name@example.com.");
    };
    let clean = e
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control() && !"<>\"'(),;:[]\\".contains(c));
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && clean
        && e.chars().count() <= 200;
    if ok {
        Ok(e)
    } else {
        Err("Enter an e-mail address, like name@example.com.")
    }
}

/// A session token for `email` issued at `now_s`.
pub fn mint(secret: &[u8], email: &str, now_s: i64) -> Result<String, TokenError> {
    sign_hs256(secret, email, Role::User, now_s, now_s + SESSION_TTL_S)
}

/// `Set-Cookie` for a new session.
pub fn set_session(token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={SESSION_TTL_S}"
    )
}

/// `Set-Cookie`s that end the session (and the old cookie).
pub fn clear_session() -> [String; 2] {
    [SESSION_COOKIE, LEGACY_COOKIE]
        .map(|n| format!("{n}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"))
}

/// The admission-pass cookie of a sale.
pub fn pass_cookie_name(show: &str) -> String {
    format!("pass-{show}")
}

/// `Set-Cookie` for an admission pass, kept as long as the pass lives.
pub fn set_pass(show: &str, pass: &str, max_age_s: i64) -> String {
    format!(
        "{}={pass}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        pass_cookie_name(show),
        max_age_s.max(1)
    )
}

/// The CSRF token of a session (empty session: empty token).
pub fn csrf_token(key: &[u8], session: &str) -> String {
    if session.is_empty() {
        String::new()
    } else {
        shared::csrf::token(key, session, CSRF_SCOPE)
    }
}

/// Whether `given` is the session's CSRF token.
pub fn csrf_ok(key: &[u8], session: &str, given: Option<&str>) -> bool {
    !session.is_empty() && given.is_some_and(|g| shared::csrf::verify(key, session, CSRF_SCOPE, g))
}

/// The sign-in form's token. There is no session to bind it to, so it
/// only proves the form came from a page of ours; the `Origin` check and
/// `SameSite` are what stop a forged sign-in.
pub fn signin_token(key: &[u8]) -> String {
    shared::csrf::token(key, "", SIGNIN_SCOPE)
}

/// Whether a sign-in form's token is ours.
pub fn signin_ok(key: &[u8], given: Option<&str>) -> bool {
    given.is_some_and(|g| shared::csrf::verify(key, "", SIGNIN_SCOPE, g))
}

/// Where to go after signing in: a path of ours (never another site:
/// `//evil.example` and `/\evil.example` are other hosts to a browser),
/// and not the sign-in page itself; else `/`.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/signin")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() < 512 =>
        {
            n
        }
        _ => "/",
    }
}

/// The token a request to the JSON API (`/v1/…`) runs under, and whether
/// it came from the session cookie (then the edge forwards it as
/// `Authorization: Bearer`). A cookie counts on a state-changing method
/// only with the session's CSRF token in [`CSRF_HEADER`]: a cross-site
/// page can make a browser send the cookie, never the header.
pub fn api_token(
    key: &[u8],
    method: &str,
    authorization: Option<&str>,
    cookies: Option<&str>,
    csrf_header: Option<&str>,
) -> (Option<String>, bool) {
    if authorization.is_some() {
        let t = crate::auth::token(authorization).map(str::to_owned);
        return (t, false);
    }
    let Some(session) = session_cookie(cookies) else {
        return (None, false);
    };
    let safe = matches!(method, "GET" | "HEAD");
    if safe || csrf_ok(key, session, csrf_header) {
        (Some(session.to_owned()), true)
    } else {
        (None, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"dev-only-secret-change-me";

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            normalise_email("  Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "@x.com",
            "ann@",
            "ann@com",
            "a b@x.com",
            "a@x\n.com",
            "a<@x.com",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalise_email(&format!("{}@x.com", "a".repeat(200))).is_err());
    }

    #[test]
    fn a_session_is_a_user_token_the_region_accepts() {
        let t = mint(KEY, "ann@example.com", 1_000).unwrap();
        let user = crate::auth::verify(KEY, &t, 1_000 + SESSION_TTL_S - 1).unwrap();
        assert_eq!(
            session_cookie(Some(&format!("x=1; session={t}"))),
            Some(t.as_str())
        );
        assert_eq!(user.id, "ann@example.com");
        assert!(!user.operator);
        assert!(crate::auth::verify(KEY, &t, 1_000 + SESSION_TTL_S + 60).is_err());
        let c = set_session(&t);
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
        let p = set_pass("s-1", "ap1.x.y", 60);
        assert!(p.starts_with("pass-s-1=ap1.x.y;") && p.contains("SameSite=Strict"));
        assert!(p.contains("HttpOnly") && p.contains("Secure"));
    }

    #[test]
    fn sign_in_returns_only_to_our_own_pages() {
        assert_eq!(safe_next(Some("/c/mum/shows/x")), "/c/mum/shows/x");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/signin",
            "/a\nb",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_api_takes_the_cookie_only_with_the_csrf_header_for_writes() {
        let cookies = "a=b; session=tok; x=y";
        let csrf = csrf_token(KEY, "tok");
        assert_eq!(
            api_token(KEY, "GET", None, Some(cookies), None),
            (Some("tok".into()), true)
        );
        assert_eq!(
            api_token(KEY, "POST", None, Some(cookies), None),
            (None, false)
        );
        assert_eq!(
            api_token(KEY, "POST", None, Some(cookies), Some("forged")),
            (None, false)
        );
        assert_eq!(
            api_token(KEY, "POST", None, Some(cookies), Some(&csrf)),
            (Some("tok".into()), true)
        );
        assert_eq!(
            api_token(KEY, "POST", Some("Bearer abc"), Some(cookies), None),
            (Some("abc".into()), false),
            "an app's own header wins and is forwarded as it is"
        );
        assert!(!csrf_ok(KEY, "", Some("")));
        assert!(signin_ok(KEY, Some(&signin_token(KEY))));
        assert!(!signin_ok(KEY, Some("x")));
        assert_eq!(session_cookie(Some("token=old")), Some("old"));
        assert_eq!(session_cookie(Some("mytoken=x")), None);
    }
}
