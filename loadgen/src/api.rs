//! A small typed client for the region core's HTTP API (seeding, the demo
//! and the post-run reads), plus token minting. The benchmark's hot path
//! does not use it: it pre-builds its requests to keep client CPU low.

use anyhow::Context;
use region_core::auth::{Role, TokenKeys};
use reqwest::header::HeaderMap;
pub use reqwest::Method;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::ErrorBody;
use std::fmt;
use std::time::Duration;

/// Mints `Authorization` header values with the deployment's HS256 key.
#[derive(Clone)]
pub struct Minter {
    keys: TokenKeys,
}

impl Minter {
    /// Keys from the shared secret (`--jwt-secret`).
    pub fn new(secret: &str) -> Self {
        Self {
            keys: TokenKeys::new(secret),
        }
    }

    /// `Bearer <jwt>` for `sub` with `role`, valid for two hours (longer
    /// than any run).
    pub fn bearer(&self, sub: &str, role: Role) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        Ok(format!(
            "Bearer {}",
            self.keys.mint(sub, role, now, 2 * 3600)?
        ))
    }
}

/// A non-2xx answer of the API, with its `{"error":{code,message}}` body.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// The stable error code (`seats_unavailable`, `city_exists`, ...).
    pub code: String,
    /// The human message.
    pub message: String,
    /// Structured detail, if the API sent any (e.g. `{"id": …}` of the
    /// row a `*_exists` conflict names).
    pub details: Option<serde_json::Value>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiFailure {}

/// The API failure inside an error, if that is what it is.
pub fn failure(e: &anyhow::Error) -> Option<&ApiFailure> {
    e.downcast_ref::<ApiFailure>()
}

/// Whether `e` is an API failure with this status and code.
pub fn is_failure(e: &anyhow::Error, status: StatusCode, code: &str) -> bool {
    failure(e).is_some_and(|f| f.status == status && f.code == code)
}

/// The id a `*_exists` conflict names in `details.id`, if `e` is that
/// conflict.
pub fn existing_id(e: &anyhow::Error, code: &str) -> Option<uuid::Uuid> {
    let f = failure(e).filter(|f| f.status == StatusCode::CONFLICT && f.code == code)?;
    f.details.as_ref()?.get("id")?.as_str()?.parse().ok()
}

/// Parses an error response body into an [`ApiFailure`].
pub fn failure_from_body(status: StatusCode, body: &[u8]) -> ApiFailure {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ApiFailure {
            status,
            code: b.error.code,
            message: b.error.message,
            details: b.error.details,
        },
        Err(_) => ApiFailure {
            status,
            code: "unparsed_error".into(),
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
            details: None,
        },
    }
}

/// One region core's API, as one caller.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: Option<&str>,
    ) -> anyhow::Result<T> {
        self.call(Method::GET, path, auth, None::<&()>).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        auth: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(auth), Some(body)).await
    }

    /// `POST path` without a body.
    pub async fn post_empty<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: &str,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(auth), None::<&()>).await
    }

    /// `DELETE path`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str, auth: &str) -> anyhow::Result<T> {
        self.call(Method::DELETE, path, Some(auth), None::<&()>)
            .await
    }

    /// Sends a request and reads the whole answer, whatever its status.
    /// `idempotency_key` becomes the `Idempotency-Key` header. Only a
    /// transport failure (no answer at all) is an error.
    pub async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<&B>,
    ) -> anyhow::Result<RawResponse> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("reading {method} {url}"))?
            .to_vec();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let resp = self.send(method.clone(), path, auth, None, body).await?;
        if !resp.status.is_success() {
            return Err(resp.failure().into());
        }
        resp.json()
            .with_context(|| format!("decoding the answer of {method} {path}"))
    }
}

/// An answer read in full.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body, byte for byte (replays are compared on it).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The body as an API error.
    pub fn failure(&self) -> ApiFailure {
        failure_from_body(self.status, &self.body)
    }

    /// `Retry-After` in seconds, if the answer carries one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(reqwest::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }

    /// The answer is a stored response replayed for a reused
    /// Idempotency-Key (`idempotent-replayed: true`).
    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    }
}
