//! A small typed client for the region core's HTTP API (seeding, the demo
//! and the post-run reads), plus token minting. The `holds` benchmark's
//! hot path does not use it: it pre-builds its requests to keep client CPU
//! low.
//!
//! The same client speaks to the region core through the edge Worker
//! ([`Api::edge`]): callers keep writing the region core's paths
//! (`/v1/holds/{id}/checkout`) and the client turns them into the edge's
//! city-routed ones (`/v1/c/{city}/holds/{id}/checkout`), so the buyer
//! code (`purchase`, the demo's walkthrough) runs unchanged either way.

use anyhow::Context;
use reqwest::header::HeaderMap;
pub use reqwest::Method;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shared::token::Role;
use shared::ErrorBody;
use std::fmt;
use std::time::Duration;

/// Mints `Authorization` header values with the deployment's HS256 key,
/// with the platform's one token library (`shared::token`).
#[derive(Clone)]
pub struct Minter {
    secret: Vec<u8>,
}

impl Minter {
    /// Keys from the shared secret (`--jwt-secret`).
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// `Bearer <jwt>` for `sub` with `role`, valid for two hours (longer
    /// than any run).
    pub fn bearer(&self, sub: &str, role: Role) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        Ok(format!(
            "Bearer {}",
            shared::token::sign_hs256(&self.secret, sub, role, now, now + 2 * 3600)?
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

/// One region core's API, as one caller: directly, or through the edge.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Through the edge: the city whose region the requests are for.
    edge_city: Option<String>,
    /// Sent as `CF-Connecting-IP`: the client address the edge rate-limits
    /// by. Miniflare keeps it (Cloudflare would overwrite it), so each
    /// simulated user can have an address of its own.
    client_ip: Option<String>,
}

impl Api {
    /// A client for `base` over an existing `reqwest` client (and its
    /// connection pool).
    pub fn with_client(base: &str, http: reqwest::Client) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            edge_city: None,
            client_ip: None,
        }
    }

    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self::with_client(base, http))
    }

    /// A client for the region core of `city` behind the edge Worker at
    /// `edge` (see [`edge_path`]).
    pub fn edge(edge: &str, city: &str) -> anyhow::Result<Self> {
        let mut api = Self::new(edge)?;
        api.edge_city = Some(city.to_owned());
        Ok(api)
    }

    /// The same client (sharing its connection pool) for another city
    /// behind the same edge.
    pub fn for_city(&self, city: &str) -> Self {
        let mut api = self.clone();
        api.edge_city = Some(city.to_owned());
        api
    }

    /// The same client (sharing its connection pool), presenting itself
    /// to the edge as a client at `ip`.
    pub fn at_ip(&self, ip: &str) -> Self {
        let mut api = self.clone();
        api.client_ip = Some(ip.to_owned());
        api
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The path `path` (a region core path) is sent to.
    pub fn path(&self, path: &str) -> String {
        match &self.edge_city {
            Some(city) => edge_path(city, path),
            None => path.to_owned(),
        }
    }

    /// The URL `path` (a region core path) is sent to.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, self.path(path))
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
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("Idempotency-Key", k))
            .into_iter()
            .collect();
        self.send_with(method, path, auth, &headers, body).await
    }

    /// [`Api::send`] with any extra request headers (`Admission-Pass`, …).
    pub async fn send_with<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&B>,
    ) -> anyhow::Result<RawResponse> {
        let url = self.url(path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(ip) = &self.client_ip {
            req = req.header("CF-Connecting-IP", ip);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
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

/// The edge's path for the region core path `path` of `city`'s region:
/// `/v1/{rest}` becomes `/v1/c/{city}/{rest}`, except what the edge serves
/// under the same path (the merged city list and city show listings, its
/// own sale settings) and paths that are already the edge's or not the
/// API's (`/healthz`).
pub fn edge_path(city: &str, path: &str) -> String {
    let same = path == "/v1/cities"
        || path.starts_with("/v1/cities/")
        || path.starts_with("/v1/c/")
        || path.starts_with("/v1/operator/sales/")
        || !path.starts_with("/v1/");
    if same {
        path.to_owned()
    } else {
        format!("/v1/c/{city}/{}", &path["/v1/".len()..])
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

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The answer is a stored response replayed for a reused
    /// Idempotency-Key (`idempotent-replayed: true`).
    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_paths_become_city_routed_edge_paths() {
        assert_eq!(
            edge_path("mum", "/v1/holds/h1/checkout"),
            "/v1/c/mum/holds/h1/checkout"
        );
        assert_eq!(
            edge_path("mum", "/v1/operator/shows"),
            "/v1/c/mum/operator/shows"
        );
        assert_eq!(
            edge_path("mum", "/v1/me/notifications"),
            "/v1/c/mum/me/notifications"
        );
        // Served by the edge under the same path.
        assert_eq!(edge_path("mum", "/v1/cities"), "/v1/cities");
        assert_eq!(
            edge_path("mum", "/v1/cities/nyc/shows?date=2030-01-15"),
            "/v1/cities/nyc/shows?date=2030-01-15"
        );
        assert_eq!(
            edge_path("mum", "/v1/operator/sales/s1"),
            "/v1/operator/sales/s1"
        );
        assert_eq!(edge_path("mum", "/v1/c/nyc/shows/x"), "/v1/c/nyc/shows/x");
        assert_eq!(edge_path("mum", "/healthz"), "/healthz");
    }
}
