//! Bearer-token authentication: HS256 JWTs carrying the user id (`sub`)
//! and a role. Users hold seats; operators manage the catalog.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `--jwt-secret` / `REGION_JWT_SECRET` argument of the tools that
/// mint tokens (`region-core mint-token`, `loadgen`).
#[derive(Debug, Clone, clap::Args)]
pub struct SigningKey {
    /// HS256 key tokens are signed with (the region core's REGION_JWT_SECRET).
    #[arg(
        long,
        env = "REGION_JWT_SECRET",
        default_value = "dev-only-secret-change-me",
        hide_env_values = true
    )]
    pub jwt_secret: String,
}

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A buyer.
    User,
    /// Runs venues and shows.
    Operator,
}

/// The claims of our tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Role.
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
}

/// Verifies and mints tokens with one HS256 key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    /// Keys from the shared secret.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Mints a token for `sub` with `role`, valid for `ttl_secs` from `now_unix`.
    pub fn mint(
        &self,
        sub: &str,
        role: Role,
        now_unix: i64,
        ttl_secs: i64,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            iat: now_unix,
            exp: now_unix + ttl_secs,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| ApiError::Unauthorized(format!("invalid bearer token: {e}")))
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

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let claims = state.tokens.verify(bearer(parts)?)?;
        if claims.sub.is_empty() || claims.sub.len() > 200 {
            return Err(ApiError::Unauthorized(
                "token subject must be 1-200 characters".into(),
            ));
        }
        Ok(User { id: claims.sub })
    }
}

/// A request made with an operator token.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The operator's id.
    pub id: String,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let claims = state.tokens.verify(bearer(parts)?)?;
        if claims.role != Role::Operator {
            return Err(ApiError::Forbidden(
                "this endpoint needs an operator token".into(),
            ));
        }
        Ok(Operator { id: claims.sub })
    }
}

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
        assert_eq!((c.sub.as_str(), c.role.as_str()), ("u1", "operator"));
    }
}
