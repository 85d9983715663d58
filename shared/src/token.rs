//! The platform's bearer tokens: HS256 JWTs with `sub`, `role`, `exp` and
//! `iat`, signed by the region core (and the tools that mint for it) and
//! verified by the edge Worker and the region core with the same function,
//! so the two can never disagree. Built on `jwt-compact` (it builds for
//! wasm32 and checks the header's algorithm against the one invoked: no
//! `none`, no algorithm confusion); the claims rule on top is ours
//! ([`check_claims`]). Pure: callers pass `now`.

use chrono::{DateTime, Duration, Utc};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header, TimeOptions, UntrustedToken, ValidationError};
use serde::{Deserialize, Serialize};

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A buyer.
    User,
    /// Runs venues and shows.
    Operator,
    /// Scans tickets at a venue's doors.
    Staff,
}

impl Role {
    /// The claim's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Operator => "operator",
            Self::Staff => "staff",
        }
    }

    /// Parses the claim's value.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Operator, Self::Staff]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// One duty an operator token may carry. Every duty includes reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Venues, screens, movies, shows, prices and blocked seats.
    Catalog,
    /// Sale settings, show cancellations and the edge's controls.
    Sales,
    /// Retrying and settling refunds.
    Refunds,
    /// Reading only: bookings, occupancy, reports, the audit log.
    Read,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 4] = [Self::Catalog, Self::Sales, Self::Refunds, Self::Read];

    /// The claim's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Sales => "sales",
            Self::Refunds => "refunds",
            Self::Read => "read",
        }
    }

    /// Parses the claim's value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What an operator token reaches: its cities (lower-case codes, or `*`
/// for every city: the platform's own tools) and its scopes. A token
/// without a grant reaches nothing: an operator token must say where it
/// acts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// City codes, or `["*"]`.
    #[serde(default)]
    pub cities: Vec<String>,
    /// Duties.
    #[serde(default)]
    pub scopes: Vec<Scope>,
}

/// The wildcard city of a platform-wide grant.
pub const ALL_CITIES: &str = "*";

/// Most cities one token may name.
pub const MAX_GRANT_CITIES: usize = 64;

impl Grant {
    /// Every city and every scope: the grant of the platform's own tools
    /// (the demo, loadgen, tests) and of `mint-token` without `--city`.
    pub fn everything() -> Self {
        Self {
            cities: vec![ALL_CITIES.to_owned()],
            scopes: Scope::ALL.to_vec(),
        }
    }

    /// A grant for `cities` with `scopes`, checked: city codes are 2 to 16
    /// lower-case letters, digits or `-` (or `*`), at most
    /// [`MAX_GRANT_CITIES`] of them, and at least one city and one scope.
    pub fn new(cities: Vec<String>, scopes: Vec<Scope>) -> Result<Self, TokenError> {
        let g = Self { cities, scopes };
        g.check()?;
        Ok(g)
    }

    fn check(&self) -> Result<(), TokenError> {
        let city_ok = |c: &String| {
            c == ALL_CITIES
                || ((2..=16).contains(&c.len())
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        };
        if self.cities.is_empty()
            || self.cities.len() > MAX_GRANT_CITIES
            || !self.cities.iter().all(city_ok)
            || self.scopes.is_empty()
        {
            return Err(TokenError::BadGrant);
        }
        Ok(())
    }

    /// Whether the grant reaches `city` (compared case-insensitively: the
    /// shard stores codes as operators typed them).
    pub fn covers_city(&self, city: &str) -> bool {
        self.cities
            .iter()
            .any(|c| c == ALL_CITIES || c.eq_ignore_ascii_case(city))
    }

    /// Whether the grant reaches every city.
    pub fn all_cities(&self) -> bool {
        self.cities.iter().any(|c| c == ALL_CITIES)
    }

    /// Whether the grant carries `scope`; every scope includes `read`.
    pub fn allows(&self, scope: Scope) -> bool {
        (scope == Scope::Read && !self.scopes.is_empty()) || self.scopes.contains(&scope)
    }
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// User id.
    pub sub: String,
    /// Role.
    pub role: Role,
    /// An operator's cities and scopes (empty for other roles, and for an
    /// operator token minted without one: it then reaches nothing).
    pub grant: Grant,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds (0 when absent).
    pub iat: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON, no `exp`, or too long.
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
    /// An operator grant names no city or no scope, or a malformed city.
    #[error("the token's grant must name 1-64 cities and at least one scope")]
    BadGrant,
}

/// The one check of a verified token's claims, for the edge and the region
/// core alike: the subject is a clean line of 1 to
/// [`crate::text::MAX_SUBJECT_CHARS`] characters (no NUL, no control
/// characters) and the role is a [`Role`]. [`verify_hs256`] applies it.
pub fn check_claims(sub: &str, role: &str) -> Result<(), TokenError> {
    crate::text::check_line("sub", sub, crate::text::MAX_SUBJECT_CHARS)
        .map_err(|_| TokenError::BadSubject)?;
    if sub.trim() != sub {
        return Err(TokenError::BadSubject);
    }
    Role::parse(role).map(|_| ()).ok_or(TokenError::BadRole)
}

/// Longest token accepted.
pub const MAX_LEN: usize = 4096;

/// The custom part of the claims on the wire. The role stays a string
/// here so an unknown role is refused as such ([`TokenError::BadRole`]),
/// not as malformed JSON.
#[derive(Serialize, Deserialize)]
struct Wire {
    sub: String,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<Grant>,
}

fn unix(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(0, |t| t.timestamp())
}

/// Signs a token for `sub` with `role`, issued at `iat` and expiring at
/// `exp` (unix seconds). An operator token gets [`Grant::everything`]:
/// city-scoped tokens come from [`sign_operator_hs256`].
pub fn sign_hs256(
    secret: &[u8],
    sub: &str,
    role: Role,
    iat: i64,
    exp: i64,
) -> Result<String, TokenError> {
    let grant = (role == Role::Operator).then(Grant::everything);
    sign(secret, sub, role, grant, iat, exp)
}

/// Signs an operator token for `sub` reaching only `grant`.
pub fn sign_operator_hs256(
    secret: &[u8],
    sub: &str,
    grant: &Grant,
    iat: i64,
    exp: i64,
) -> Result<String, TokenError> {
    grant.check()?;
    sign(secret, sub, Role::Operator, Some(grant.clone()), iat, exp)
}

fn sign(
    secret: &[u8],
    sub: &str,
    role: Role,
    grant: Option<Grant>,
    iat: i64,
    exp: i64,
) -> Result<String, TokenError> {
    let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).ok_or(TokenError::Malformed);
    let mut claims = Claims::new(Wire {
        sub: sub.to_owned(),
        role: role.as_str().to_owned(),
        grant,
    });
    claims.issued_at = Some(at(iat)?);
    claims.expiration = Some(at(exp)?);
    Hs256
        .token(
            &Header::empty().with_token_type("JWT"),
            &claims,
            &Hs256Key::new(secret),
        )
        .map_err(|_| TokenError::Malformed)
}

/// Verifies an HS256 token under `secret` at `now` (unix seconds),
/// allowing `leeway_s` of clock skew on `exp`, then [`check_claims`].
pub fn verify_hs256(
    secret: &[u8],
    token: &str,
    now: i64,
    leeway_s: i64,
) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_LEN {
        return Err(TokenError::Malformed);
    }
    let untrusted = UntrustedToken::new(token).map_err(|_| TokenError::Malformed)?;
    let verified = Hs256
        .validator::<Wire>(&Hs256Key::new(secret))
        .validate(&untrusted)
        .map_err(|e| match e {
            ValidationError::AlgorithmMismatch { .. } => TokenError::WrongAlgorithm,
            ValidationError::InvalidSignature | ValidationError::InvalidSignatureLen { .. } => {
                TokenError::BadSignature
            }
            _ => TokenError::Malformed,
        })?;
    let claims = verified.claims();
    let now = DateTime::<Utc>::from_timestamp(now, 0).ok_or(TokenError::Malformed)?;
    let options = TimeOptions::new(Duration::seconds(leeway_s), move || now);
    claims.validate_expiration(&options).map_err(|e| match e {
        ValidationError::Expired => TokenError::Expired,
        _ => TokenError::Malformed,
    })?;
    check_claims(&claims.custom.sub, &claims.custom.role)?;
    let role = Role::parse(&claims.custom.role).ok_or(TokenError::BadRole)?;
    // Only an operator's grant means anything; a malformed one is refused
    // outright rather than read as "reaches nothing".
    let grant = match (&claims.custom.grant, role) {
        (Some(g), Role::Operator) => {
            g.check()?;
            g.clone()
        }
        _ => Grant::default(),
    };
    Ok(TokenClaims {
        sub: claims.custom.sub.clone(),
        role,
        grant,
        exp: unix(claims.expiration),
        iat: unix(claims.issued_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

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
            (c.sub.as_str(), c.role, c.exp, c.iat),
            ("alice", Role::User, 2000, 1000)
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
    fn what_we_sign_we_verify_and_the_roles_round_trip() {
        for role in [Role::User, Role::Operator, Role::Staff] {
            let t = sign_hs256(b"k", "alice", role, 1000, 2000).unwrap();
            let c = verify_hs256(b"k", &t, 1500, 0).unwrap();
            assert_eq!(
                (c.sub.as_str(), c.role, c.iat, c.exp),
                ("alice", role, 1000, 2000)
            );
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
        // A token without `exp` never verifies.
        let t = mint(
            b"k",
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"alice","role":"user"}"#,
        );
        assert_eq!(verify_hs256(b"k", &t, 0, 0), Err(TokenError::Malformed));
    }

    #[test]
    fn operator_grants_round_trip_and_scope_what_a_token_reaches() {
        let g = Grant::new(vec!["mum".into()], vec![Scope::Catalog]).unwrap();
        let t = sign_operator_hs256(b"k", "op", &g, 1000, 2000).unwrap();
        let c = verify_hs256(b"k", &t, 1500, 0).unwrap();
        assert_eq!((c.role, &c.grant), (Role::Operator, &g));
        assert!(c.grant.covers_city("mum") && c.grant.covers_city("MUM"));
        assert!(!c.grant.covers_city("nyc") && !c.grant.all_cities());
        assert!(c.grant.allows(Scope::Catalog) && c.grant.allows(Scope::Read));
        assert!(!c.grant.allows(Scope::Refunds) && !c.grant.allows(Scope::Sales));
        // The platform's tools get every city and scope.
        let t = sign_hs256(b"k", "op", Role::Operator, 1000, 2000).unwrap();
        let c = verify_hs256(b"k", &t, 1500, 0).unwrap();
        assert!(c.grant.all_cities() && c.grant.covers_city("nyc"));
        assert!(Scope::ALL.iter().all(|s| c.grant.allows(*s)));
        // An operator token without a grant reaches nothing.
        let t = mint(
            b"k",
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"op","role":"operator","exp":2000}"#,
        );
        let c = verify_hs256(b"k", &t, 1500, 0).unwrap();
        assert!(!c.grant.covers_city("mum") && !c.grant.allows(Scope::Read));
        // A user's token cannot smuggle a grant in.
        let t = mint(
            b"k",
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"u","role":"user","exp":2000,"grant":{"cities":["*"],"scopes":["catalog"]}}"#,
        );
        assert_eq!(
            verify_hs256(b"k", &t, 1500, 0).unwrap().grant,
            Grant::default()
        );
        // Malformed grants are refused, minted or received.
        for (cities, scopes) in [
            (vec![], vec![Scope::Read]),
            (vec!["mum".to_owned()], vec![]),
            (vec!["MUM".to_owned()], vec![Scope::Read]),
            (vec!["m".to_owned()], vec![Scope::Read]),
            (vec!["mum;drop".to_owned()], vec![Scope::Read]),
        ] {
            assert_eq!(Grant::new(cities, scopes), Err(TokenError::BadGrant));
        }
        let t = mint(
            b"k",
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"op","role":"operator","exp":2000,"grant":{"cities":[],"scopes":["read"]}}"#,
        );
        assert_eq!(verify_hs256(b"k", &t, 1500, 0), Err(TokenError::BadGrant));
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
