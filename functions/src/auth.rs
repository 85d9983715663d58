//! Who is calling and whether the request is acceptable, checked once at
//! the edge: the bearer token (the browser pages' session cookie is
//! `pages::session`'s), the client IP and its rate-limit bucket, body size and
//! JSON, query values. Bad input stops here; nothing is forwarded.

use std::net::IpAddr;

use shared::token::{verify_hs256, Grant, Scope, TokenError};

use crate::error::EdgeError;

/// Clock skew allowed on a token's `exp` (the region core allows the same).
pub const TOKEN_LEEWAY_S: i64 = 5;

/// A caller whose token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The token's subject: the user id.
    pub id: String,
    /// Whether the token carries `role: operator`.
    pub operator: bool,
    /// An operator's cities and scopes (empty for everyone else).
    pub grant: Grant,
}

/// Where an operator call acts, for [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// Something of one city (a sale, a city's region).
    City(&'a str),
    /// The whole edge (deny list, peak mode, the directory): the grant
    /// must cover every city.
    Everywhere,
    /// Nothing city-bound (a read of the edge's own settings).
    Anywhere,
}

/// 403 unless `user` is an operator whose grant carries `scope` (any
/// scope for [`Scope::Read`]) and reaches `reach`. The region core applies
/// the same rule to what it serves; the edge's own endpoints have only
/// this one.
pub fn authorize(user: &User, scope: Scope, reach: Reach<'_>) -> Result<(), EdgeError> {
    if !user.operator {
        return Err(EdgeError::forbidden());
    }
    if !user.grant.allows(scope) {
        return Err(EdgeError::new(
            403,
            "scope_forbidden",
            format!(
                "this endpoint needs an operator token with the {:?} scope",
                scope.as_str()
            ),
        ));
    }
    let ok = match reach {
        Reach::City(c) => user.grant.covers_city(c),
        Reach::Everywhere => user.grant.all_cities(),
        Reach::Anywhere => true,
    };
    if ok {
        Ok(())
    } else {
        Err(EdgeError::new(
            403,
            "city_forbidden",
            match reach {
                Reach::City(c) => format!("this token does not reach city {c:?}"),
                _ => "this control acts on every city: it needs a token for all cities (\"*\")"
                    .to_owned(),
            },
        ))
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, rest) = authorization?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Verifies a token at `now_s` with the region core's own rule
/// (`shared::token::verify_hs256`, which checks subject and role).
pub fn verify(secret: &[u8], token: &str, now_s: i64) -> Result<User, TokenError> {
    let claims = verify_hs256(secret, token, now_s, TOKEN_LEEWAY_S)?;
    Ok(User {
        operator: claims.role == shared::token::Role::Operator,
        id: claims.sub,
        grant: claims.grant,
    })
}

/// The verified user of a request that needs one: 401 otherwise.
pub fn require_user(secret: &[u8], token: Option<&str>, now_s: i64) -> Result<User, EdgeError> {
    token
        .and_then(|t| verify(secret, t, now_s).ok())
        .ok_or_else(EdgeError::unauthorized)
}

/// The user of a request where a token is optional: `Ok(None)` without
/// one, 401 with a bad one (it would be refused by the region core too).
pub fn optional_user(
    secret: &[u8],
    token: Option<&str>,
    now_s: i64,
) -> Result<Option<User>, EdgeError> {
    match token {
        None => Ok(None),
        Some(t) => verify(secret, t, now_s)
            .map(Some)
            .map_err(|_| EdgeError::unauthorized()),
    }
}

/// Where the client's address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIpSource {
    /// The deployment sits behind Cloudflare, which sets
    /// `CF-Connecting-IP` and drops any value a client sent: believe it.
    /// Anywhere else anyone can send that header, so it is ignored.
    pub trust_cf_connecting_ip: bool,
    /// Proxies whose `X-Forwarded-For` hop is believed (the local front
    /// server appends the connection's address as the last hop).
    pub trusted_proxies: Vec<shared::client_ip::Cidr>,
}

/// The client's IP, or `unknown`. Behind Cloudflare: `CF-Connecting-IP`.
/// Elsewhere: the last `X-Forwarded-For` hop is the address the front
/// server saw; through trusted proxies the walk goes further left, never
/// past the first untrusted hop (`shared::client_ip::resolve`), so a
/// client cannot pick its own rate-limit bucket by sending headers.
pub fn client_ip(
    src: &ClientIpSource,
    cf_connecting_ip: Option<&str>,
    x_forwarded_for: Option<&str>,
) -> String {
    let parse = |s: &str| s.trim().parse::<IpAddr>().ok();
    let ip = if src.trust_cf_connecting_ip {
        cf_connecting_ip.and_then(parse)
    } else {
        x_forwarded_for.and_then(|xff| {
            let (rest, last) = match xff.rsplit_once(',') {
                Some((rest, last)) => (Some(rest), last),
                None => (None, xff),
            };
            parse(last).map(|peer| shared::client_ip::resolve(peer, rest, &src.trusted_proxies))
        })
    };
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// The rate-limit bucket of an IP: the address itself for IPv4, the /64
/// for IPv6 (one subscriber usually holds a whole /64, so limiting single
/// addresses there would limit nothing).
pub fn ip_bucket(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

/// Checks a declared `Content-Length` before reading anything.
pub fn check_declared_length(content_length: Option<&str>, limit: usize) -> Result<(), EdgeError> {
    match content_length.map(|v| v.trim().parse::<u64>()) {
        Some(Ok(n)) if n > limit as u64 => Err(EdgeError::body_too_large(limit)),
        _ => Ok(()),
    }
}

/// A body the edge forwards or reads must be JSON when it is not empty
/// (every region API body is JSON).
pub fn check_json(body: &[u8]) -> Result<(), EdgeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|_| EdgeError::malformed_json())
}

/// The `date` of a shows listing, `YYYY-MM-DD` and nothing else in the
/// query, so junk queries cannot fill the cache with copies.
pub fn shows_date(query: Option<&str>) -> Result<String, EdgeError> {
    let mut date = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("date", v)) if date.is_none() => date = Some(v),
            _ => {
                return Err(EdgeError::bad_query(
                    "the only query parameter is date=YYYY-MM-DD",
                ))
            }
        }
    }
    let date = date.ok_or_else(|| EdgeError::bad_query("date=YYYY-MM-DD is required"))?;
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .filter(|_| date.len() == 10)
        .map(|_| date.to_owned())
        .ok_or_else(|| EdgeError::bad_query("date must be YYYY-MM-DD"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// A token as the region core's `mint-token` makes it (an operator's
    /// reaching everything).
    pub(crate) fn mint(secret: &[u8], sub: &str, role: &str, exp: i64) -> String {
        let grant = (role == "operator").then(Grant::everything);
        mint_with(secret, sub, role, grant, exp)
    }

    pub(crate) fn mint_with(
        secret: &[u8],
        sub: &str,
        role: &str,
        grant: Option<Grant>,
        exp: i64,
    ) -> String {
        let h = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS256"}"#);
        let c = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"sub": sub, "role": role, "exp": exp, "iat": 0, "grant": grant})
                .to_string(),
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{c}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{c}.{s}")
    }

    #[test]
    fn the_token_comes_from_a_bearer_header() {
        assert_eq!(token(Some("Bearer abc")), Some("abc"));
        assert_eq!(token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(token(Some("Basic abc")), None);
        assert_eq!(token(Some("Bearer ")), None);
        assert_eq!(token(None), None);
    }

    #[test]
    fn tokens_are_verified_with_the_shared_code() {
        let t = mint(b"secret-secret-secret", "alice", "user", 2_000);
        let u = verify(b"secret-secret-secret", &t, 1_000).unwrap();
        assert_eq!((u.id.as_str(), u.operator), ("alice", false));
        let op = mint(b"secret-secret-secret", "ops", "operator", 2_000);
        assert!(
            verify(b"secret-secret-secret", &op, 1_000)
                .unwrap()
                .operator
        );
        assert!(require_user(b"other", Some(&t), 1_000).is_err());
        assert_eq!(
            require_user(b"secret-secret-secret", None, 0)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            optional_user(b"secret-secret-secret", Some(&t), 2_006)
                .unwrap_err()
                .status,
            401,
            "expired beyond the leeway"
        );
        assert_eq!(optional_user(b"x", None, 0), Ok(None));
    }

    #[test]
    fn operators_act_within_their_grant() {
        let secret = b"secret-secret-secret";
        let user = |grant: Option<Grant>, role: &str| {
            verify(secret, &mint_with(secret, "op", role, grant, 2_000), 1_000).unwrap()
        };
        let g = |cities: &[&str], scopes: &[Scope]| {
            Some(
                Grant::new(
                    cities.iter().map(|c| (*c).to_owned()).collect(),
                    scopes.to_vec(),
                )
                .unwrap(),
            )
        };
        let all = user(g(&["*"], &[Scope::Sales]), "operator");
        let mum_sales = user(g(&["mum"], &[Scope::Sales]), "operator");
        let reader = user(g(&["*"], &[Scope::Read]), "operator");
        let code = |r: Result<(), EdgeError>| r.err().map(|e| e.code);
        assert_eq!(code(authorize(&all, Scope::Sales, Reach::Everywhere)), None);
        assert_eq!(
            code(authorize(&mum_sales, Scope::Sales, Reach::City("mum"))),
            None
        );
        assert_eq!(
            code(authorize(&mum_sales, Scope::Sales, Reach::City("del"))),
            Some("city_forbidden")
        );
        assert_eq!(
            code(authorize(&mum_sales, Scope::Sales, Reach::Everywhere)),
            Some("city_forbidden")
        );
        assert_eq!(
            code(authorize(&reader, Scope::Sales, Reach::Anywhere)),
            Some("scope_forbidden")
        );
        assert_eq!(code(authorize(&reader, Scope::Read, Reach::Anywhere)), None);
        assert_eq!(
            code(authorize(&user(None, "user"), Scope::Read, Reach::Anywhere)),
            Some("forbidden")
        );
    }

    #[test]
    fn ips_and_their_buckets() {
        let cloudflare = ClientIpSource {
            trust_cf_connecting_ip: true,
            trusted_proxies: vec![],
        };
        let local = ClientIpSource {
            trust_cf_connecting_ip: false,
            trusted_proxies: shared::client_ip::parse_list("127.0.0.1").unwrap(),
        };
        assert_eq!(
            client_ip(&cloudflare, Some("203.0.113.9"), Some("10.0.0.1")),
            "203.0.113.9"
        );
        assert_eq!(client_ip(&cloudflare, Some("junk"), None), "unknown");
        // Off Cloudflare a forged CF-Connecting-IP or a forged first hop
        // changes nothing: the front server's hop decides.
        assert_eq!(
            client_ip(&local, Some("203.0.113.9"), Some("1.2.3.4, 198.51.100.7")),
            "198.51.100.7"
        );
        // Through a trusted proxy the hop before it is the client.
        assert_eq!(
            client_ip(&local, None, Some("1.2.3.4, 198.51.100.7, 127.0.0.1")),
            "198.51.100.7"
        );
        assert_eq!(client_ip(&local, Some("203.0.113.9"), None), "unknown");
        assert_eq!(ip_bucket("203.0.113.9"), "203.0.113.9");
        assert_eq!(ip_bucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            ip_bucket("2001:db8:1:2:bbbb::7"),
            ip_bucket("2001:db8:1:2::9")
        );
    }

    #[test]
    fn bodies_are_bounded_and_json() {
        assert!(check_declared_length(Some("65536"), 65_536).is_ok());
        assert_eq!(
            check_declared_length(Some("65537"), 65_536)
                .unwrap_err()
                .code,
            "body_too_large"
        );
        assert!(check_declared_length(None, 1).is_ok());
        assert!(check_json(br#"{"seats":["A1"]}"#).is_ok());
        assert!(check_json(b"  ").is_ok());
        assert_eq!(check_json(b"{seats:").unwrap_err().code, "malformed_json");
    }

    #[test]
    fn the_shows_query_is_exactly_one_date() {
        assert_eq!(shows_date(Some("date=2030-01-15")).unwrap(), "2030-01-15");
        for bad in [
            None,
            Some(""),
            Some("date=2030-1-5"),
            Some("date=2030-02-30"),
            Some("date=2030-01-15&x=1"),
            Some("date=2030-01-15&date=2030-01-16"),
        ] {
            assert_eq!(shows_date(bad).unwrap_err().code, "bad_query", "{bad:?}");
        }
    }
}
