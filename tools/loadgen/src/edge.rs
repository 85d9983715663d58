//! The edge Worker as the load generator drives it (started in workerd by
//! `testkit::workerd`): its build's size, its waiting room's JSON (join, status, the operator's
//! sale settings), and the passes an attacker might try (forged, altered,
//! someone else's).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shared::admission::{self, PassClaims};
use std::path::Path;
use std::time::Duration;
use testkit::api::{Api, Method, RawResponse};

/// The gzip size of the built WASM, as `scripts/build-edge.sh` recorded it
/// in `functions/build/wasm-gzip-bytes`.
pub fn wasm_gzip_bytes(functions_dir: &Path) -> anyhow::Result<u64> {
    let path = functions_dir.join("build").join("wasm-gzip-bytes");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (written by scripts/build-edge.sh)",
            path.display()
        )
    })?;
    text.trim()
        .parse()
        .with_context(|| format!("{} does not hold a number", path.display()))
}

/// Waits until the edge answers `/healthz`.
pub async fn wait_healthy(edge: &Api, wait: Duration) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        match edge.get::<serde_json::Value>("/healthz", None).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= until => {
                return Err(e.context(format!("the edge at {} is not healthy", edge.base())));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// RFC 3339 in UTC, whole seconds (how the edge reports opening times).
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The operator's sale settings (`PUT /v1/operator/sales/{show}`).
#[derive(Debug, Clone, Serialize)]
pub struct SaleSettings {
    /// The city whose region sells the show.
    pub city: String,
    /// Opening time, RFC 3339.
    pub opens_at: String,
    /// Admissions per second.
    pub rate_per_sec: f64,
    /// Pass lifetime, seconds (10–86400).
    pub pass_ttl_s: u32,
    /// A waiting user who does not poll for this long loses the place.
    pub grace_s: u32,
}

/// A sale as the operator endpoints return it (the fields used here).
#[derive(Debug, Clone, Deserialize)]
pub struct SaleView {
    /// Opening time, RFC 3339.
    pub opens_at: String,
}

/// Sets (or changes) a show's sale at the edge.
pub async fn put_sale(
    edge: &Api,
    op: &str,
    show: &str,
    settings: &SaleSettings,
) -> anyhow::Result<SaleView> {
    let path = format!("/v1/operator/sales/{show}");
    let r = edge
        .send(Method::PUT, &path, Some(op), None, Some(settings))
        .await?;
    if r.status != reqwest::StatusCode::OK {
        return Err(anyhow::Error::new(r.failure()).context(format!("PUT {path}")));
    }
    r.json()
        .with_context(|| format!("the answer of PUT {path}"))
}

/// A user's place in a sale's waiting room (the status JSON; the fields
/// the load generator uses).
#[derive(Debug, Clone, Deserialize)]
pub struct RoomStatus {
    /// `pre_queue`, `waiting`, `ready`, `admitted`, `not_joined`,
    /// `dropped`, `expired`.
    pub state: String,
    /// 1-based place.
    pub position: Option<u64>,
    /// Users ahead not yet admitted.
    pub ahead: Option<u64>,
    /// Poll again after this long.
    pub refresh_after_s: u64,
    /// SHA-256 of the seed (from the first join).
    pub seed_commitment: Option<String>,
    /// The seed (after opening).
    pub seed: Option<String>,
    /// The admission pass, once admitted.
    pub pass: Option<String>,
    /// `ready`: milliseconds until the pass is issued.
    #[serde(default)]
    pub pass_in_ms: Option<u64>,
}

/// The waiting-room paths of a sale.
#[derive(Debug, Clone)]
pub struct Room {
    join: String,
    status: String,
}

impl Room {
    /// The room of `show`, sold in `city`.
    pub fn new(city: &str, show: &str) -> Self {
        Self {
            join: format!("/v1/c/{city}/sales/{show}/join"),
            status: format!("/v1/c/{city}/sales/{show}/status"),
        }
    }

    /// `POST …/join`.
    pub async fn join(&self, edge: &Api, bearer: &str) -> anyhow::Result<RawResponse> {
        edge.send(Method::POST, &self.join, Some(bearer), None, None::<&()>)
            .await
    }

    /// `GET …/status`.
    pub async fn status(&self, edge: &Api, bearer: &str) -> anyhow::Result<RawResponse> {
        edge.send(Method::GET, &self.status, Some(bearer), None, None::<&()>)
            .await
    }
}

/// A pass for `user` on `sale`, signed with a key the edge and the region
/// do not know: what a forger without the signing key can make.
pub fn forged_pass(user: &str, sale: &str, now_s: i64) -> String {
    let claims = PassClaims {
        pid: format!("{sale}:forged"),
        sub: user.to_owned(),
        sale: sale.to_owned(),
        pos: 1,
        iat: now_s,
        exp: now_s + 600,
    };
    let key: [u8; 32] = rand::random();
    admission::sign(&key, &claims)
}

/// A genuine pass with its claims swapped for `user`'s (the signature
/// kept): what altering someone else's pass gives.
pub fn altered_pass(genuine: &str, user: &str, sale: &str, now_s: i64) -> String {
    let forged = forged_pass(user, sale, now_s);
    let claims = forged.split('.').nth(1).unwrap_or_default();
    let tag = genuine.rsplit('.').next().unwrap_or_default();
    format!("{}.{claims}.{tag}", admission::PREFIX)
}

/// A distinct client address for simulated user `i` (`10.x.y.z`): the
/// edge rate-limits per IP, and thousands of users behind one address
/// would be one very busy client.
pub fn client_ip(i: usize) -> String {
    let i = i + 1;
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// Whether an answer to a hold shows the admission-pass check let the
/// request through: created, or refused only for the seats themselves.
/// (The edge's own `409 sold_out` comes before its pass check, so it
/// proves nothing either way and is not counted as accepted.)
pub fn passed_pass_check(r: &RawResponse) -> bool {
    if r.status.is_success() {
        return true;
    }
    let code = r.failure().code;
    matches!(
        (r.status.as_u16(), code.as_str()),
        (409, "seats_unavailable") | (422, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALE: &str = "01a2205a-d387-7029-933e-ebdbc50f0011";

    #[test]
    fn forged_and_altered_passes_are_refused() {
        let key = b"a-key-of-at-least-16-bytes";
        let now = 1_900_000_000;
        let genuine = admission::sign(
            key,
            &PassClaims {
                pid: format!("{SALE}:abc"),
                sub: "alice".into(),
                sale: SALE.into(),
                pos: 3,
                iat: now,
                exp: now + 300,
            },
        );
        let keys: [&[u8]; 1] = [key];
        assert!(admission::check(&keys, &genuine, "alice", SALE, now).is_ok());
        let other = admission::check(&keys, &genuine, "mallory", SALE, now);
        assert_eq!(other.unwrap_err().code(), "pass_wrong_user");
        let forged = forged_pass("mallory", SALE, now);
        let e = admission::check(&keys, &forged, "mallory", SALE, now).unwrap_err();
        assert_eq!(e.code(), "pass_invalid");
        let altered = altered_pass(&genuine, "mallory", SALE, now);
        assert_ne!(altered, genuine);
        let e = admission::check(&keys, &altered, "mallory", SALE, now).unwrap_err();
        assert_eq!(e.code(), "pass_invalid");
    }

    #[test]
    fn client_addresses_are_distinct() {
        let ips: std::collections::HashSet<String> = (0..70_000).map(client_ip).collect();
        assert_eq!(ips.len(), 70_000);
        assert_eq!(client_ip(0), "10.0.0.1");
    }
}
