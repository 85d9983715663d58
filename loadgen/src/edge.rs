//! The edge Worker as the load generator drives it: the built Worker run
//! in workerd through Miniflare (`functions/dev/serve.mjs`, see
//! `docs/edge.md`), its waiting room's JSON (join, status, the operator's
//! sale settings), and the passes an attacker might try (forged, altered,
//! someone else's).

use crate::api::{Api, Method, RawResponse};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use shared::admission::{self, PassClaims};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Worker crate's directory, as built into the binary (`--functions-dir`
/// overrides it).
pub const DEFAULT_FUNCTIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");

/// How long `serve.mjs` may take to print its `EDGE_URL=` line (usually
/// under a second; a loaded machine takes longer).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Fails with the fix if the Worker has not been built.
pub fn require_build(functions_dir: &Path) -> anyhow::Result<()> {
    let index = functions_dir.join("build").join("index.js");
    anyhow::ensure!(
        index.is_file(),
        "{} is missing: build the Worker first with scripts/build-edge.sh",
        index.display()
    );
    Ok(())
}

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

/// What the Worker is started with (its vars and secrets, see
/// `docs/edge.md`, "Configuration").
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// The `functions/` directory (its `build/` and `dev/serve.mjs`).
    pub functions_dir: PathBuf,
    /// The Node.js binary.
    pub node: String,
    /// City → region core base URL (`REGIONS`).
    pub regions: BTreeMap<String, String>,
    /// `UPSTASH_REDIS_REST_URL`.
    pub upstash_url: String,
    /// `UPSTASH_REDIS_REST_TOKEN`.
    pub upstash_token: String,
    /// `ADMISSION_KEY`: one of the region cores' `REGION_ADMISSION_KEYS`.
    pub admission_key: String,
    /// `JWT_SECRET`: the region cores' `REGION_JWT_SECRET`.
    pub jwt_secret: String,
    /// `KEY_PREFIX`: every Redis key the edge uses starts with it.
    pub key_prefix: String,
    /// Where Miniflare's and the Worker's logs go.
    pub log_file: PathBuf,
}

/// The built Worker serving in workerd (a `node serve.mjs` child).
pub struct EdgeWorker {
    child: Child,
    url: String,
    log_file: PathBuf,
}

impl EdgeWorker {
    /// Starts `serve.mjs --port 0` and waits for its `EDGE_URL=` line.
    pub async fn start(s: &EdgeSettings) -> anyhow::Result<Self> {
        require_build(&s.functions_dir)?;
        let script = s.functions_dir.join("dev").join("serve.mjs");
        let log = std::fs::File::create(&s.log_file)
            .with_context(|| format!("creating {}", s.log_file.display()))?;
        let regions = serde_json::to_string(&s.regions)?;
        let mut child = Command::new(&s.node)
            .arg(&script)
            .args(["--port", "0", "--host", "127.0.0.1", "--log-level", "warn"])
            .env("REGIONS", regions)
            .env("UPSTASH_REDIS_REST_URL", &s.upstash_url)
            .env("UPSTASH_REDIS_REST_TOKEN", &s.upstash_token)
            .env("ADMISSION_KEY", &s.admission_key)
            .env("JWT_SECRET", &s.jwt_secret)
            .env("KEY_PREFIX", &s.key_prefix)
            // Simulated users name their address in CF-Connecting-IP, as
            // Cloudflare does for real ones.
            .env("TRUST_CF_CONNECTING_IP", "true")
            // A pipe it watches: if the load generator dies, its end
            // closes and the edge stops (docs/edge.md, "Stopping").
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Last resort (SIGKILL); serve.mjs's watchdog then ends workerd.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting `{} {}` (is Node.js installed? --node names it)",
                    s.node,
                    script.display()
                )
            })?;
        let stdout = child
            .stdout
            .take()
            .context("the edge's stdout is not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("EDGE_URL=") {
                    return Ok(Some(url.trim().to_owned()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let url = match ready {
            Ok(Ok(Some(url))) => url,
            other => {
                let why = match other {
                    Err(_) => format!("no EDGE_URL line within {READY_TIMEOUT:?}"),
                    Ok(Err(e)) => format!("reading its stdout: {e}"),
                    _ => "it exited before printing EDGE_URL".to_owned(),
                };
                let _ = child.start_kill();
                let _ = child.wait().await;
                anyhow::bail!(
                    "the edge Worker did not start ({why}); its log:\n{}",
                    log_tail(&s.log_file)
                );
            }
        };
        // Nothing else is printed on stdout; keep reading so a stray line
        // can never fill the pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            url,
            log_file: s.log_file.clone(),
        })
    }

    /// `http://127.0.0.1:NNNN`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where its log is.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Stops it: closing its stdin makes `serve.mjs` dispose of workerd
    /// and exit; killed if that takes over 10 s.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(20);
    format!(
        "{}\n(full log: {})",
        lines[from..].join("\n"),
        path.display()
    )
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
