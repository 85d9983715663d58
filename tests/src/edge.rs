//! Harness for the edge end-to-end tests: the **built** Worker
//! (`functions/build`, from `scripts/build-edge.sh`) running in workerd
//! through `functions/dev/serve.mjs`, its state in the shared Redis
//! through an in-process Upstash-compatible gateway, and one region core
//! per city behind a counting proxy, so a test can tell what reached a
//! region and what the edge refused on its own.
//!
//! ```text
//! test ──HTTP──▶ workerd (Worker) ──REST──▶ upstash_gateway ──▶ Redis :6379
//!                       │
//!                       └──HTTP──▶ CountingProxy ──▶ region core (TestApp) ──▶ Postgres, Redis
//! ```
//!
//! Every stack has its own `KEY_PREFIX`, so tests sharing the Redis never
//! see each other's limits, queues or catalog versions; dropping the
//! stack (after [`EdgeStack::stop`], or when a test panics) deletes the
//! keys under it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::ws::{self, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use region_core::auth::Role;
use serde_json::{json, Value};
use testkit::workerd::{EdgeLaunch, EdgeWorker};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use upstash_gateway::{GatewayConfig, RunningGateway};
use uuid::Uuid;

use crate::{shared_redis_url, test_settings, token, TestApp, SECRET};

/// The key the edge signs admission passes with; every region core of a
/// stack accepts it (`REGION_ADMISSION_KEYS`).
pub const ADMISSION_KEY: &str = "e2e-edge-admission-key-0123456789";

/// The token of the stack's Upstash gateway.
const GATEWAY_TOKEN: &str = "e2e-upstash-gateway-token";

// ------------------------------------------------------------- clients

/// A simulated client of the edge: an optional token and the IP it comes
/// from (sent as `CF-Connecting-IP`, which Miniflare passes through).
#[derive(Debug, Clone)]
pub struct Client {
    /// The token's subject, if any.
    pub id: Option<String>,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Client IP.
    pub ip: String,
}

impl Client {
    /// A user (role `user`) from `ip`.
    pub fn user(id: &str, ip: &str) -> Self {
        Self {
            id: Some(id.to_owned()),
            token: Some(token(id, Role::User)),
            ip: ip.to_owned(),
        }
    }

    /// The operator, from its own IP.
    pub fn operator() -> Self {
        Self {
            id: Some("operator-1".into()),
            token: Some(token("operator-1", Role::Operator)),
            ip: "10.250.0.1".into(),
        }
    }

    /// An operator `sub` whose token reaches only `cities` (codes, or
    /// `*`) with `scopes`, from its own IP.
    pub fn scoped_operator(sub: &str, cities: &[&str], scopes: &[shared::token::Scope]) -> Self {
        let grant = shared::token::Grant::new(
            cities.iter().map(|c| (*c).to_owned()).collect(),
            scopes.to_vec(),
        )
        .expect("a valid grant");
        let now = chrono::Utc::now().timestamp();
        let token = region_core::auth::TokenKeys::new(SECRET)
            .mint_operator(sub, &grant, now, 3600)
            .expect("minting a scoped operator token");
        Self {
            id: Some(sub.to_owned()),
            token: Some(token),
            ip: "10.250.0.2".into(),
        }
    }

    /// No token, from `ip`.
    pub fn anonymous(ip: &str) -> Self {
        Self {
            id: None,
            token: None,
            ip: ip.to_owned(),
        }
    }

    /// The `n`-th user of a crowd, `fan-{n}`, from an address of its own
    /// (10.0.0.0/8 has room for 16 million).
    pub fn fan(n: u32) -> Self {
        let ip = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        Self::user(&format!("fan-{n}"), &ip)
    }

    /// The user id (panics for an anonymous client: a test bug).
    pub fn id(&self) -> &str {
        self.id.as_deref().expect("an anonymous client has no id")
    }
}

/// An answer from the edge (or a region core).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty, a JSON string when not JSON).
    pub body: Value,
}

impl Reply {
    async fn read(resp: reqwest::Response) -> anyhow::Result<Self> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.context("reading a response body")?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// `error.code` of an error body.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header as a number (`None` when missing or not a number).
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.trim().parse().ok())
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

// ------------------------------------------------------- counting proxy

/// Requests seen per `"METHOD /path"` (query left out).
type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

#[derive(Clone)]
struct ProxyState {
    upstream: Arc<str>,
    counts: Counts,
    http: reqwest::Client,
    /// WebSockets tunnelled to the region and open now.
    sockets: Arc<std::sync::atomic::AtomicU64>,
    /// Cuts every tunnelled socket (a network failure: no close frame).
    cut: Arc<tokio::sync::Notify>,
}

/// A pass-through HTTP proxy in front of a region core that counts the
/// requests it forwards, so a test can prove what the edge did **not**
/// send. When the region is down it answers 502, as a load balancer in
/// front of a dead backend would.
pub struct CountingProxy {
    /// Its base URL (what the edge's `REGIONS` points at).
    pub url: String,
    state: ProxyState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Headers that describe one connection, not the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

async fn forward(State(p): State<ProxyState>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    {
        // A std mutex: it is never held across an `.await`.
        let mut counts = p.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry(format!("{} {}", parts.method, parts.uri.path()))
            .or_default() += 1;
    }
    let websocket = parts
        .headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if websocket {
        return tunnel(p, &mut parts).await;
    }
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::BAD_REQUEST, "unreadable body").into_response(),
    };
    let target = format!(
        "{}{}",
        p.upstream,
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let mut out = p.http.request(parts.method, target).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(_) => return (StatusCode::BAD_GATEWAY, "region unreachable").into_response(),
    };
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    match resp.bytes().await {
        Ok(bytes) => (status, headers, Body::from(bytes)).into_response(),
        Err(_) => (StatusCode::BAD_GATEWAY, "region answer cut short").into_response(),
    }
}

/// A WebSocket through the proxy: a socket to the region for each client
/// socket, messages (and the close code) relayed both ways.
async fn tunnel(p: ProxyState, parts: &mut axum::http::request::Parts) -> Response {
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target = testkit::live::ws_url(&p.upstream, path);
    let region = match tokio_tungstenite::connect_async(target).await {
        Ok((ws, _)) => ws,
        // The region refused the upgrade (503 at its socket cap, 400…).
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let mut headers = HeaderMap::new();
            if let Some(v) = resp.headers().get("retry-after") {
                headers.insert("retry-after", v.clone());
            }
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, headers).into_response();
        }
        Err(_) => return (StatusCode::BAD_GATEWAY, "region unreachable").into_response(),
    };
    let sockets = p.sockets.clone();
    let cut = p.cut.clone();
    sockets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    upgrade.on_upgrade(move |client| async move {
        // Registered before the splice starts, so a cut never misses it.
        let cut = cut.notified();
        tokio::select! {
            () = splice(client, region) => {}
            () = cut => {}
        }
        sockets.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    })
}

/// Relays until either side closes (its close frame is passed on).
async fn splice(
    client: ws::WebSocket,
    region: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    use tokio_tungstenite::tungstenite::Message as T;
    let (mut c_tx, mut c_rx) = client.split();
    let (mut r_tx, mut r_rx) = region.split();
    let up = async {
        while let Some(Ok(m)) = c_rx.next().await {
            let m = match m {
                ws::Message::Text(t) => T::text(t.as_str()),
                ws::Message::Binary(b) => T::binary(b),
                ws::Message::Ping(b) => T::Ping(b),
                ws::Message::Pong(b) => T::Pong(b),
                ws::Message::Close(c) => T::Close(c.map(|c| CloseFrame {
                    code: CloseCode::from(c.code),
                    reason: c.reason.as_str().to_owned().into(),
                })),
            };
            if r_tx.send(m).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        while let Some(Ok(m)) = r_rx.next().await {
            let m = match m {
                T::Text(t) => ws::Message::Text(t.as_str().to_owned().into()),
                T::Binary(b) => ws::Message::Binary(b),
                T::Ping(b) => ws::Message::Ping(b),
                T::Pong(b) => ws::Message::Pong(b),
                T::Close(c) => ws::Message::Close(c.map(|c| ws::CloseFrame {
                    code: u16::from(c.code),
                    reason: c.reason.as_str().to_owned().into(),
                })),
                T::Frame(_) => continue,
            };
            if c_tx.send(m).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

impl CountingProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn spawn(upstream: &str) -> anyhow::Result<Self> {
        let state = ProxyState {
            upstream: Arc::from(upstream.trim_end_matches('/')),
            counts: Counts::default(),
            sockets: Arc::default(),
            cut: Arc::default(),
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(256)
                .build()?,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the counting proxy")?;
        let addr: SocketAddr = listener.local_addr()?;
        let app = Router::new().fallback(forward).with_state(state.clone());
        let (stop, stopping) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopping.await;
                })
                .await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            state,
            stop: Some(stop),
            task,
        })
    }

    /// Requests forwarded so far for `method` and `path` (no query).
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.counts()
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }

    /// WebSockets tunnelled to the region and open now.
    pub fn open_sockets(&self) -> u64 {
        self.state.sockets.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops every tunnelled socket at once, both ends, without a close
    /// frame: what a network failure looks like to either side.
    pub fn cut_sockets(&self) {
        self.state.cut.notify_waiters();
    }

    /// Every request that reached the proxy so far.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    /// A copy of the counts, `"METHOD /path"` → requests.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops listening.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

// ----------------------------------------------------------- the Worker

// ------------------------------------------------------------ the stack

/// What to start.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// One region core per city, in this order.
    pub cities: Vec<String>,
    /// Worker vars (`RATE_LIMITS`, `DENY_LIST`, `MAX_BODY_BYTES`, …).
    pub vars: BTreeMap<String, String>,
    /// Region-core replicas per city (one database each city; default 1).
    pub replicas: usize,
    /// A global catalog process the cities take their titles from
    /// (`REGION_CATALOG_URL`) and the edge reads (`CATALOG_URL`).
    pub catalog: bool,
    /// The region cores are given the edge's Upstash
    /// (`REGION_EDGE_UPSTASH_URL`), so their own catalog writes bump the
    /// edge's catalog versions.
    pub region_bumps_edge: bool,
    /// The SMTP server the region cores send buyers' e-mail to (unset:
    /// none is sent), polled fast and given up after one refusal so a
    /// test sees a failed message within a second or so.
    pub smtp_url: Option<String>,
}

impl EdgeOptions {
    /// One region core for each of `cities`.
    pub fn cities(cities: &[&str]) -> Self {
        Self {
            cities: cities.iter().map(|c| (*c).to_owned()).collect(),
            vars: BTreeMap::new(),
            replicas: 1,
            catalog: false,
            region_bumps_edge: false,
            smtp_url: None,
        }
    }

    /// With region cores that send e-mail to `smtp_url`.
    pub fn smtp(mut self, smtp_url: impl Into<String>) -> Self {
        self.smtp_url = Some(smtp_url.into());
        self
    }

    /// With region cores that bump the edge's catalog versions themselves.
    pub fn region_bumps_edge(mut self) -> Self {
        self.region_bumps_edge = true;
        self
    }

    /// With a global catalog (`region-core catalog`, its own database).
    pub fn catalog(mut self) -> Self {
        self.catalog = true;
        self
    }

    /// `n` region-core replicas per city, on the city's one database; the
    /// edge's table lists them all.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n.max(1);
        self
    }

    /// Sets a Worker var.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }
}

/// A city's region core and the proxy in front of it.
pub struct Region {
    /// City code (the only city of this region core).
    pub city: String,
    /// The region core (`None` once stopped).
    pub app: Option<TestApp>,
    /// The counting proxy the edge calls.
    pub proxy: CountingProxy,
    /// Further replicas on the same database, each behind its own proxy
    /// (`EdgeOptions::replicas`).
    pub more: Vec<(Option<TestApp>, Option<CountingProxy>)>,
}

impl Region {
    /// The running region core.
    pub fn app(&self) -> &TestApp {
        self.app.as_ref().expect("the region core was stopped")
    }
}

/// Whether a seeded show is sold through the waiting room (the API's own
/// type).
pub use shared::api::SaleMode;

/// A flash sale's settings (`PUT /v1/operator/sales/{show}`).
#[derive(Debug, Clone)]
pub struct SaleSettings {
    /// City code.
    pub city: String,
    /// Opening time, unix ms.
    pub opens_at_ms: i64,
    /// Admissions per second.
    pub rate_per_sec: f64,
    /// Pass lifetime, s.
    pub pass_ttl_s: u32,
    /// Dropout grace, s.
    pub grace_s: u32,
}

/// The whole edge setup of one test.
pub struct EdgeStack {
    /// The Worker's base URL.
    pub url: String,
    /// HTTP client for the edge.
    pub http: reqwest::Client,
    /// Put in front of every Redis key the Worker uses.
    pub key_prefix: String,
    /// One per city.
    pub regions: Vec<Region>,
    /// The global catalog, with [`EdgeOptions::catalog`].
    pub catalog: Option<crate::global_catalog::CatalogProcess>,
    gateway: Option<RunningGateway>,
    edge: Option<EdgeWorker>,
}

/// Now, unix ms (the Worker's clock is the same machine clock).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl EdgeStack {
    /// Starts the gateway, the region cores (each with its city created)
    /// and their proxies, then the Worker pointed at the proxies.
    pub async fn start(opts: EdgeOptions) -> anyhow::Result<Self> {
        let gateway = upstash_gateway::spawn(GatewayConfig {
            listen: "127.0.0.1:0".into(),
            redis_url: shared_redis_url(),
            token: GATEWAY_TOKEN.into(),
        })
        .await
        .context("starting the upstash gateway")?;
        let catalog = match opts.catalog {
            true => Some(crate::global_catalog::CatalogProcess::start().await?),
            false => None,
        };
        let key_prefix = format!("e2e-edge-{}:", Uuid::new_v4().simple());
        let mut regions = Vec::new();
        let mut table = serde_json::Map::new();
        for city in &opts.cities {
            let mut settings = test_settings().await?;
            settings.catalog_url = catalog.as_ref().map(|c| c.url.clone());
            if opts.region_bumps_edge {
                settings.edge_upstash_url = Some(gateway.url());
                settings.edge_upstash_token = GATEWAY_TOKEN.into();
                settings.edge_key_prefix = key_prefix.clone();
            }
            settings.admission_keys = vec![ADMISSION_KEY.into()];
            if let Some(url) = &opts.smtp_url {
                settings.mail.smtp_url = Some(url.clone());
                settings.mail.mail_poll_ms = 100;
                settings.mail.mail_backoff_base_ms = 100;
                settings.mail.mail_backoff_max_secs = 1;
                settings.mail.mail_max_permanent_failures = 1;
            }
            // Each city its own shard: booking numbers must not collide.
            settings.shard_code = city.to_uppercase();
            let app = TestApp::spawn(settings).await?;
            let (s, body) = app
                .operator_post(
                    "/v1/operator/cities",
                    json!({"code": city, "name": format!("City {city}")}),
                )
                .await?;
            anyhow::ensure!(s == 201, "creating city {city}: {s} {body}");
            let proxy = CountingProxy::spawn(&app.url).await?;
            let mut urls = vec![Value::String(proxy.url.clone())];
            let mut more = Vec::new();
            for _ in 1..opts.replicas {
                let mut s = app.settings.clone();
                s.listen = "127.0.0.1:0".into();
                s.replica_id = String::new();
                let replica = TestApp::spawn_with_gateway(s, app.gateway.clone()).await?;
                let p = CountingProxy::spawn(&replica.url).await?;
                urls.push(Value::String(p.url.clone()));
                more.push((Some(replica), Some(p)));
            }
            let entry = match urls.len() {
                1 => urls.remove(0),
                _ => Value::Array(urls),
            };
            table.insert(city.clone(), entry);
            regions.push(Region {
                city: city.clone(),
                app: Some(app),
                proxy,
                more,
            });
        }
        let mut vars = opts.vars.clone();
        if let Some(c) = &catalog {
            vars.entry("CATALOG_URL".into()).or_insert(c.url.clone());
        }
        for (name, value) in [
            ("REGIONS", Value::Object(table).to_string()),
            ("UPSTASH_REDIS_REST_URL", gateway.url()),
            ("UPSTASH_REDIS_REST_TOKEN", GATEWAY_TOKEN.into()),
            ("ADMISSION_KEY", ADMISSION_KEY.into()),
            ("JWT_SECRET", SECRET.into()),
            ("KEY_PREFIX", key_prefix.clone()),
            // The simulated clients say who they are with CF-Connecting-IP,
            // as Cloudflare does; a test of the off-Cloudflare rule sets
            // "false".
            ("TRUST_CF_CONNECTING_IP", "true".into()),
        ] {
            vars.entry(name.into()).or_insert(value);
        }
        let edge = EdgeWorker::start(&EdgeLaunch::new(vars)).await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(512)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            url: edge.url().to_owned(),
            http,
            key_prefix,
            regions,
            catalog,
            gateway: Some(gateway),
            edge: Some(edge),
        })
    }

    /// The region of `city`.
    pub fn region(&self, city: &str) -> &Region {
        self.regions
            .iter()
            .find(|r| r.city == city)
            .unwrap_or_else(|| panic!("no region for {city}"))
    }

    /// The tail of the Worker's log (for assertion messages).
    pub fn edge_log(&self) -> String {
        self.edge
            .as_ref()
            .map(|e| testkit::process::log_tail(e.log_file()))
            .unwrap_or_default()
    }

    /// A request to the edge as `client`.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        client: &Client,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("CF-Connecting-IP", &client.ip);
        if let Some(t) = &client.token {
            req = req.bearer_auth(t);
        }
        req
    }

    /// Sends a request built by [`Self::request`].
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let req = req.build().expect("a well-formed request");
        let what = format!("{} {}", req.method(), req.url().path());
        let resp = self.http.execute(req).await.unwrap_or_else(|e| {
            panic!(
                "{what}: {:#}\nedge log:\n{}",
                anyhow::Error::from(e),
                self.edge_log()
            )
        });
        Reply::read(resp)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// `GET path` as `client`.
    pub async fn get(&self, path: &str, client: &Client) -> Reply {
        self.send(self.request(reqwest::Method::GET, path, client))
            .await
    }

    /// `POST path` with a JSON body as `client`.
    pub async fn post(&self, path: &str, client: &Client, body: Value) -> Reply {
        self.send(
            self.request(reqwest::Method::POST, path, client)
                .json(&body),
        )
        .await
    }

    /// `PUT path` with a JSON body as `client`.
    pub async fn put(&self, path: &str, client: &Client, body: Value) -> Reply {
        self.send(self.request(reqwest::Method::PUT, path, client).json(&body))
            .await
    }

    /// `POST /v1/c/{city}/shows/{show}/holds` through the edge, with the
    /// admission pass if given.
    pub async fn hold(
        &self,
        city: &str,
        show: &str,
        client: &Client,
        seats: &[&str],
        pass: Option<&str>,
    ) -> Reply {
        let mut req = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/c/{city}/shows/{show}/holds"),
                client,
            )
            .json(&json!({ "seats": seats }));
        if let Some(p) = pass {
            req = req.header("Admission-Pass", p);
        }
        self.send(req).await
    }

    /// `POST /v1/c/{city}/holds/{hold}/checkout` through the edge, paying
    /// with the sandbox's good card under a fresh idempotency key.
    pub async fn checkout(&self, city: &str, hold: &str, client: &Client) -> Reply {
        self.send(
            self.request(
                reqwest::Method::POST,
                &format!("/v1/c/{city}/holds/{hold}/checkout"),
                client,
            )
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&json!({ "payment_method": "pm_card_ok" })),
        )
        .await
    }

    /// `PUT /v1/operator/sales/{show}` as the operator.
    pub async fn put_sale(&self, show: &str, sale: &SaleSettings) -> Reply {
        let opens_at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(sale.opens_at_ms)
            .expect("a valid opening time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.send(
            self.request(
                reqwest::Method::PUT,
                &format!("/v1/operator/sales/{show}"),
                &Client::operator(),
            )
            .json(&json!({
                "city": sale.city, "opens_at": opens_at, "rate_per_sec": sale.rate_per_sec,
                "pass_ttl_s": sale.pass_ttl_s, "grace_s": sale.grace_s,
            })),
        )
        .await
    }

    /// Seeds a venue, a screen of `rows` × `per_row` seats, a movie and a
    /// show tomorrow in `city`, on its region core directly (setup, not
    /// under test: it does not touch the edge's limits or the proxy's
    /// counts). A flash-sale show is created as one by the operator API
    /// (`sale_mode`), so no database edit is needed. Returns the show id.
    pub async fn seed_show(
        &self,
        city: &str,
        rows: usize,
        per_row: u16,
        mode: SaleMode,
    ) -> anyhow::Result<String> {
        self.region(city)
            .app()
            .seed_show_in(city, rows, per_row, chrono::Duration::days(1), mode)
            .await
    }

    /// Redis commands the gateway has run for the Worker so far.
    pub fn gateway_commands(&self) -> u64 {
        self.gateway
            .as_ref()
            .map_or(0, RunningGateway::commands_served)
    }

    /// Round trips from the Worker to the gateway so far.
    pub fn gateway_requests(&self) -> u64 {
        self.gateway
            .as_ref()
            .map_or(0, RunningGateway::requests_served)
    }

    /// Stops the Upstash gateway: the edge's state store is unreachable.
    pub async fn stop_gateway(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
    }

    /// Stops `city`'s region core (its proxy stays, answering 502).
    pub async fn stop_region(&mut self, city: &str) {
        let region = self
            .regions
            .iter_mut()
            .find(|r| r.city == city)
            .unwrap_or_else(|| panic!("no region for {city}"));
        if let Some(app) = region.app.take() {
            app.stop().await;
        }
    }

    /// Kills `city`'s `i`-th further replica and its proxy: its address
    /// refuses connections, as a dead pod's does.
    pub async fn kill_replica(&mut self, city: &str, i: usize) {
        let region = self
            .regions
            .iter_mut()
            .find(|r| r.city == city)
            .unwrap_or_else(|| panic!("no region for {city}"));
        let (app, proxy) = &mut region.more[i];
        if let Some(p) = proxy.take() {
            p.stop().await;
        }
        // Not `TestApp::stop`: the database is the city's, still in use.
        if let Some(app) = app.take() {
            app.app.stop().await;
        }
    }

    /// A Redis key as the Worker stores it (with the stack's prefix).
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    /// A connection to the shared Redis the gateway fronts.
    pub async fn redis(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(shared_redis_url())?
            .get_multiplexed_async_connection()
            .await?)
    }

    /// Deletes every Redis key under the stack's prefix. Synchronous, so
    /// that `Drop` can do it too when a test fails half-way.
    pub fn delete_keys(&self) -> anyhow::Result<()> {
        let mut r = redis::Client::open(shared_redis_url())?
            .get_connection_with_timeout(Duration::from_secs(5))?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.key_prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut r)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).query::<()>(&mut r)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Stops everything and drops the region databases; the Worker's Redis
    /// keys are deleted as the stack is dropped.
    pub async fn stop(mut self) {
        if let Some(edge) = self.edge.take() {
            edge.stop().await;
        }
        self.stop_gateway().await;
        for region in self.regions.drain(..) {
            region.proxy.stop().await;
            for (app, proxy) in region.more {
                if let Some(p) = proxy {
                    p.stop().await;
                }
                if let Some(app) = app {
                    app.app.stop().await;
                }
            }
            if let Some(app) = region.app {
                app.stop().await;
            }
        }
        // The Redis keys go when `self` is dropped, just below.
    }
}

impl Drop for EdgeStack {
    fn drop(&mut self) {
        // Also when a test panics: its queues, limits and versions must not
        // stay behind in the shared Redis. (The Worker and the gateway stop
        // with their own drops; a failed test's region databases are left,
        // as in every other e2e test.) The Worker goes first, so nothing
        // writes a key after they are deleted.
        drop(self.edge.take());
        drop(self.gateway.take());
        if let Err(e) = self.delete_keys() {
            eprintln!(
                "deleting the edge's Redis keys under {}: {e}",
                self.key_prefix
            );
        }
    }
}
