//! Bearer-token authentication: HS256 JWTs carrying the user id (`sub`)
//! and a role. Users hold seats; operators manage the catalog.

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

/// Who a token speaks for, and what a verified token says: one
/// definition for the edge and the region core (`shared::token`).
pub use shared::token::{Grant, Role, Scope, TokenClaims as Claims};

/// Verifies and mints tokens with one HS256 key, and limits failed
/// verifications per client address.
#[derive(Clone)]
pub struct TokenKeys {
    secret: std::sync::Arc<[u8]>,
    failures: std::sync::Arc<AuthFailures>,
}

/// Clock skew allowed on `exp`, in seconds.
const LEEWAY_S: i64 = 5;

impl TokenKeys {
    /// Keys from the shared secret, with the default failure limit (30 a
    /// minute per client) and 127.0.0.1/::1 as the trusted proxies.
    pub fn new(secret: &str) -> Self {
        Self::with_failure_limit(secret, AuthFailures::new(30, Vec::new()))
    }

    /// Keys from the shared secret and a failure limiter.
    pub fn with_failure_limit(secret: &str, failures: AuthFailures) -> Self {
        Self {
            secret: secret.as_bytes().into(),
            failures: std::sync::Arc::new(failures),
        }
    }

    /// Mints a token for `sub` valid `ttl_secs` from `now_unix`.
    pub fn mint(
        &self,
        sub: &str,
        role: Role,
        now_unix: i64,
        ttl_secs: i64,
    ) -> anyhow::Result<String> {
        Ok(shared::token::sign_hs256(
            &self.secret,
            sub,
            role,
            now_unix,
            now_unix + ttl_secs,
        )?)
    }

    /// Mints an operator token for `sub` reaching only `grant`.
    pub fn mint_operator(
        &self,
        sub: &str,
        grant: &Grant,
        now_unix: i64,
        ttl_secs: i64,
    ) -> anyhow::Result<String> {
        Ok(shared::token::sign_operator_hs256(
            &self.secret,
            sub,
            grant,
            now_unix,
            now_unix + ttl_secs,
        )?)
    }

    /// Verifies a token with the same function the edge uses
    /// (`shared::token::verify_hs256`: HS256 only, subject and role checked
    /// by `shared::token::check_claims`), so the two never disagree.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let now = chrono::Utc::now().timestamp();
        shared::token::verify_hs256(&self.secret, token, now, LEEWAY_S)
            .map_err(|e| ApiError::Unauthorized(format!("invalid bearer token: {e}")))
    }

    /// Verifies the request's token, refusing clients that failed too often.
    fn verify_request(&self, parts: &Parts) -> Result<Claims, ApiError> {
        let client = self.failures.client(parts);
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.failures.check(client, now_ms)?;
        let verified = bearer(parts).and_then(|t| self.verify(t));
        if verified.is_err() {
            self.failures.charge(client, now_ms)?;
        }
        verified
    }
}

/// Failed authentications per client address (GCRA, in process: a
/// replica counts its own failures; an attacker spread over replicas gets
/// at most `replicas` times the limit, which still ends guessing).
pub struct AuthFailures {
    gcra: shared::rate_limit::Gcra,
    proxies: Vec<shared::client_ip::Cidr>,
    // A std Mutex: held for a map lookup, never across an await.
    tats: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, i64>>,
}

/// Entries kept before expired ones are swept out.
const MAX_TRACKED: usize = 100_000;

impl AuthFailures {
    /// `per_minute` failures a minute per client (the burst too); clients
    /// behind `proxies` are told apart by `X-Forwarded-For`.
    pub fn new(per_minute: u32, proxies: Vec<shared::client_ip::Cidr>) -> Self {
        let proxies = if proxies.is_empty() {
            shared::client_ip::parse_list("127.0.0.1,::1").unwrap_or_default()
        } else {
            proxies
        };
        Self {
            gcra: shared::rate_limit::Gcra {
                limit: per_minute.max(1),
                period_ms: 60_000,
                burst: per_minute.max(1),
            },
            proxies,
            tats: Default::default(),
        }
    }

    /// The client's address (None when the server was not given peers,
    /// as in router tests without a socket).
    fn client(&self, parts: &Parts) -> Option<std::net::IpAddr> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
            .0
            .ip();
        let xff = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Some(shared::client_ip::resolve(peer, xff, &self.proxies))
    }

    fn too_many(d: &shared::rate_limit::RateDecision) -> ApiError {
        metrics::counter!("auth_failures_limited_total").increment(1);
        ApiError::TooManyRequests {
            code: "too_many_auth_failures",
            message: "too many failed authentications from this address; retry later".into(),
            retry_after_s: shared::rate_limit::retry_after_secs(d) as u32,
        }
    }

    /// Refuses a client whose failure budget is spent.
    fn check(&self, client: Option<std::net::IpAddr>, now_ms: i64) -> Result<(), ApiError> {
        let Some(ip) = client else { return Ok(()) };
        let tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let d = self.gcra.decide(tats.get(&ip).copied(), now_ms, 1);
        if d.allowed {
            Ok(())
        } else {
            Err(Self::too_many(&d))
        }
    }

    /// Records one failure.
    fn charge(&self, client: Option<std::net::IpAddr>, now_ms: i64) -> Result<(), ApiError> {
        let Some(ip) = client else { return Ok(()) };
        metrics::counter!("auth_failures_total").increment(1);
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        if tats.len() >= MAX_TRACKED {
            tats.retain(|_, tat| *tat > now_ms);
        }
        let d = self.gcra.decide(tats.get(&ip).copied(), now_ms, 1);
        match d.new_tat_ms {
            Some(tat) => {
                tats.insert(ip, tat);
                Ok(())
            }
            None => Err(Self::too_many(&d)),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("Authorization header must be 'Bearer <token>'".into())
        })
}

/// A request made by a signed-in user (any role may act as a user).
#[derive(Debug, Clone)]
pub struct User {
    /// The token's `sub`.
    pub id: String,
}

// Extractors need only the token keys, not the whole application state:
// any state that can hand out its `TokenKeys` will do.
impl<S> FromRequestParts<S> for User
where
    TokenKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let claims = TokenKeys::from_ref(state).verify_request(parts)?;
        Ok(User { id: claims.sub })
    }
}

/// Declares an extractor for requests whose token carries one of `roles`
/// (any other valid token: 403 naming what is needed). Extractors need
/// only the token keys, not the whole application state: any state that
/// can hand out its `TokenKeys` will do.
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, [$($role:path),+], $needs:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            /// The token's `sub`.
            pub id: String,
        }

        impl<S> FromRequestParts<S> for $name
        where
            TokenKeys: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let claims = TokenKeys::from_ref(state).verify_request(parts)?;
                if !matches!(claims.role, $($role)|+) {
                    return Err(ApiError::Forbidden(
                        concat!("this endpoint needs ", $needs).into(),
                    ));
                }
                Ok($name { id: claims.sub })
            }
        }
    };
}

role_extractor!(
    /// A request made with a staff token (door staff scanning tickets),
    /// or an operator's: operators may do what their staff do.
    Staff,
    [Role::Staff, Role::Operator],
    "a staff or operator token"
);

/// An operator acting through the API: who, and what their token reaches.
/// Handlers take one of the scoped extractors ([`CatalogOperator`],
/// [`SalesOperator`], [`RefundsOperator`], [`ReadOperator`]), which have
/// checked the scope; the city of what they touch they check with
/// [`Operator::check_city`], since only the handler knows it.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The token's `sub`: the name the audit log records.
    pub id: String,
    /// The token's cities and scopes.
    pub grant: Grant,
}

impl Operator {
    /// 403 unless the token reaches `city`. The error names the city, not
    /// what exists there: a scoped operator learns nothing about others.
    pub fn check_city(&self, city: &str) -> Result<(), ApiError> {
        if self.grant.covers_city(city) {
            Ok(())
        } else {
            Err(ApiError::Denied {
                code: "city_forbidden",
                message: format!("this token does not reach city {city:?}"),
            })
        }
    }

    /// The cities a shard-wide read is limited to: `None` for a token that
    /// reaches every city.
    pub fn city_filter(&self) -> Option<Vec<String>> {
        (!self.grant.all_cities()).then(|| self.grant.cities.clone())
    }

    fn from_claims(claims: Claims, scope: Scope) -> Result<Self, ApiError> {
        if claims.role != Role::Operator {
            return Err(ApiError::Forbidden(
                "this endpoint needs an operator token".into(),
            ));
        }
        if !claims.grant.allows(scope) {
            return Err(ApiError::Denied {
                code: "scope_forbidden",
                message: format!(
                    "this endpoint needs an operator token with the {:?} scope",
                    scope.as_str()
                ),
            });
        }
        Ok(Self {
            id: claims.sub,
            grant: claims.grant,
        })
    }
}

/// Declares an extractor for operator requests whose token carries
/// `scope` (or, for `Read`, any scope). It dereferences to [`Operator`].
macro_rules! operator_extractor {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Operator);

        impl std::ops::Deref for $name {
            type Target = Operator;
            fn deref(&self) -> &Operator {
                &self.0
            }
        }

        impl<S> FromRequestParts<S> for $name
        where
            TokenKeys: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let claims = TokenKeys::from_ref(state).verify_request(parts)?;
                Operator::from_claims(claims, $scope).map($name)
            }
        }
    };
}

operator_extractor!(
    /// An operator editing the catalog: venues, screens, movies, shows,
    /// prices, blocked seats.
    CatalogOperator,
    Scope::Catalog
);
operator_extractor!(
    /// An operator running sales: sale settings, cancelling shows, the
    /// edge's controls.
    SalesOperator,
    Scope::Sales
);
operator_extractor!(
    /// An operator acting on refunds (retry, settle by hand).
    RefundsOperator,
    Scope::Refunds
);
operator_extractor!(
    /// Any operator token: reads only.
    ReadOperator,
    Scope::Read
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_and_verify() {
        let keys = TokenKeys::new("0123456789abcdef0123");
        let now = chrono::Utc::now().timestamp();
        let t = keys.mint("u1", Role::User, now, 60).unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("u1", Role::User));
        let expired = keys.mint("u1", Role::User, now - 3600, 60).unwrap();
        assert!(keys.verify(&expired).is_err());
        let other = TokenKeys::new("another-secret-0123456");
        assert!(other.verify(&t).is_err());
    }

    #[test]
    fn the_edge_verifier_in_shared_accepts_our_tokens() {
        let keys = TokenKeys::new("0123456789abcdef0123");
        let now = chrono::Utc::now().timestamp();
        let t = keys.mint("u1", Role::Operator, now, 60).unwrap();
        let c = shared::token::verify_hs256(b"0123456789abcdef0123", &t, now, 0).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("u1", Role::Operator));
    }
}
