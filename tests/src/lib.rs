//! Test harness for the end-to-end tests: a region core per test on port
//! 0, each on a fresh Postgres database (migrated by the app itself), an
//! optional private `redis-server` on a free port for tests that kill it,
//! HTTP helpers, catalog seeding, and the invariant checker every
//! concurrency test ends with.

pub mod browser;
pub mod churn;
pub mod edge;
pub mod form_browser;
pub mod global_catalog;
pub mod money;
pub use testkit::{pg_server, redis_server, sentinel};
pub mod region_process;
pub mod sandbox_process;
pub mod tcp_proxy;

use anyhow::Context;
use region_core::auth::{Grant, Role, Scope, TokenKeys};
use region_core::{Application, RunningApp, Settings};
use sandbox_gateway::{RunningSandbox, SandboxConfig};
use serde_json::{json, Value};
use shared::api::SaleMode;
use shared::CityCode;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::sync::Arc;
use testkit::api::Api;
use testkit::seed;
use uuid::Uuid;

/// JWT key of every test app.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// Postgres server URL with a database we may CREATE DATABASE from.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// The shared Redis (tests that do not kill Redis use it; shows are
/// UUIDs, so keys never collide between tests).
pub fn shared_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Creates an empty database (`e2e_<hex>`, `testkit::db`) and returns its
/// URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    let db = testkit::db::FreshDatabase::create(&admin_url(), "e2e")
        .await
        .context("creating a database on TEST_DATABASE_URL")?;
    Ok(db.url)
}

/// Settings for a test app: port 0, test key, shared Redis.
pub async fn test_settings() -> anyhow::Result<Settings> {
    let mut s = Settings::from_env()?;
    s.listen = "127.0.0.1:0".into();
    // Left empty: `TestApp::spawn` creates a fresh database unless a test
    // points the app at its own server.
    s.database_url = String::new();
    s.redis_url = shared_redis_url();
    s.signing.jwt_secret = SECRET.into();
    s.db_pool_size = 16;
    // Tests share two cores with a debug build of everything: a Redis call
    // slower than production's 250 ms is load, not an outage. Failover tests
    // set their own.
    s.redis_timeout_ms = 1000;
    // Payments: a slow sandbox answer (its `timeout` fault hangs 3 s) is an
    // unknown outcome after 1.5 s; a crashed request's key lock lapses
    // after 2 s; reconciliation runs when a test asks (POST
    // /v1/operator/reconcile) and looks at every payment, however young.
    s.gateway_timeout_ms = 1500;
    s.idempotency_lock_secs = 2;
    s.reconcile_grace_secs = 0;
    s.refund_poll_ms = 100;
    s.refund_backoff_base_ms = 100;
    s.refund_backoff_max_secs = 1;
    s.outbox_poll_ms = 100;
    // The shared Redis serves many test apps: each gets its own streams.
    s.events_stream_prefix = format!("e2e_{}:events", Uuid::new_v4().simple());
    Ok(s)
}

/// Settings for tests that kill, cut or fail over Redis: a Redis call
/// slower than 300 ms fails, two failures open the breaker, and it probes
/// again after 300 ms.
pub async fn fault_settings() -> anyhow::Result<Settings> {
    let mut s = test_settings().await?;
    s.redis_timeout_ms = 300;
    s.breaker_threshold = 2;
    s.breaker_open_ms = 300;
    Ok(s)
}

/// The sandbox API key every test gateway uses.
pub const GATEWAY_KEY: &str = "sk_sandbox_test";

/// Starts a sandbox payment gateway on a free port (its `timeout` fault
/// hangs 3 s, longer than the test core's 1.5 s gateway timeout).
pub async fn spawn_gateway(fault_rate: f64) -> anyhow::Result<Arc<RunningSandbox>> {
    let cfg = SandboxConfig {
        listen: "127.0.0.1:0".into(),
        api_key: GATEWAY_KEY.into(),
        fault_rate,
        timeout_ms: 3000,
        seed: Some(7),
        ..SandboxConfig::default()
    };
    Ok(Arc::new(sandbox_gateway::spawn(cfg).await?))
}

/// A running region core plus what tests need to talk to it.
pub struct TestApp {
    /// The server.
    pub app: RunningApp,
    /// Its base URL.
    pub url: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// A pool on the app's database, for checks.
    pub db: PgPool,
    /// Redis URL the app uses.
    pub redis_url: String,
    /// The sandbox payment gateway the app charges through (webhooks
    /// point at the app).
    pub gateway: Arc<RunningSandbox>,
    /// The settings the app was started with (`restart` reuses them).
    pub settings: Settings,
    db_name: String,
    operator: String,
}

impl TestApp {
    /// Builds and starts an app with `settings` and a new sandbox gateway.
    pub async fn spawn(settings: Settings) -> anyhow::Result<Self> {
        Self::spawn_with_gateway(settings, spawn_gateway(0.0).await?).await
    }

    /// Builds and starts an app charging through `gateway`, whose
    /// webhooks are pointed at the app.
    pub async fn spawn_with_gateway(
        mut settings: Settings,
        gateway: Arc<RunningSandbox>,
    ) -> anyhow::Result<Self> {
        if settings.database_url.is_empty() {
            settings.database_url = fresh_database().await?;
        }
        settings.gateway_url = gateway.url();
        settings.gateway_api_key = GATEWAY_KEY.into();
        let db_url = settings.database_url.clone();
        let redis_url = settings.redis_url.clone();
        let app = Application::build(settings.clone()).await?.spawn()?;
        // A connection idle for the server's header timeout (10 s) is
        // closed by the server; reusing it just then fails the request
        // with `IncompleteMessage` (seen in CI after a 10 s test). The
        // pool lets idle connections go well before that.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .build()?;
        let hook = http
            .put(format!("{}/sandbox/webhook", gateway.url()))
            .bearer_auth(GATEWAY_KEY)
            .json(&json!({ "url": format!("{}/v1/webhooks/payments", app.url()) }))
            .send()
            .await?;
        anyhow::ensure!(
            hook.status().is_success(),
            "setting the webhook: {}",
            hook.status()
        );
        let db = PgPoolOptions::new()
            .max_connections(4)
            .connect(&db_url)
            .await?;
        Ok(Self {
            url: app.url(),
            app,
            http,
            db,
            redis_url,
            gateway,
            settings,
            db_name: db_url.rsplit('/').next().unwrap_or_default().to_owned(),
            operator: token("operator-1", Role::Operator),
        })
    }

    /// Stops the app (as a crash would: nothing is finished for it) and
    /// starts a new one on the same database and gateway, with `change`
    /// applied to the settings.
    pub async fn restart(self, change: impl FnOnce(&mut Settings)) -> anyhow::Result<Self> {
        let mut settings = self.settings.clone();
        change(&mut settings);
        let gateway = self.gateway.clone();
        self.app.stop().await;
        self.db.close().await;
        Self::spawn_with_gateway(settings, gateway).await
    }

    /// Stops the app and drops its database.
    pub async fn stop(self) {
        self.app.stop().await;
        self.db.close().await;
        let name = self.db_name.clone();
        // Only databases this harness created; never a server's own.
        let _ = testkit::db::drop_database(&admin_url(), &name).await;
    }

    /// An app with default test settings.
    pub async fn default() -> anyhow::Result<Self> {
        Self::spawn(test_settings().await?).await
    }

    /// POST JSON as the operator.
    pub async fn operator_post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.send(
            reqwest::Method::POST,
            path,
            Some(&self.operator),
            Some(body),
        )
        .await
    }

    /// Sends a request; returns status and parsed JSON body (Null if empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = Api::with_client(&self.url, self.http.clone())
            .send(method, path, auth.as_deref(), None, body.as_ref())
            .await?;
        let v = if resp.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp.body).into()))
        };
        Ok((resp.status.as_u16(), v))
    }

    /// GET without a token.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    /// `POST /v1/shows/{show}/holds` as `user`.
    pub async fn hold(
        &self,
        user: &str,
        show: &str,
        seats: &[&str],
    ) -> anyhow::Result<(u16, Value)> {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/shows/{show}/holds"),
            Some(user),
            Some(json!({ "seats": seats })),
        )
        .await
    }

    /// Seeds a city, venue, screen (`rows` rows of `per_row` seats), movie
    /// and an open-sale show starting in `starts_in`; returns the show id.
    pub async fn seed_show(
        &self,
        rows: usize,
        per_row: u16,
        starts_in: chrono::Duration,
    ) -> anyhow::Result<String> {
        let tag = Uuid::new_v4().simple().to_string();
        let city: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .take(6)
            .collect::<String>()
            + "zz";
        let (s, _) = self
            .operator_post(
                "/v1/operator/cities",
                json!({"code": city, "name": "Test City"}),
            )
            .await?;
        anyhow::ensure!(s == 201 || s == 409, "city: {s}");
        self.seed_show_in(&city, rows, per_row, starts_in, SaleMode::Open)
            .await
    }

    /// Seeds a venue, a screen of `rows` × `per_row` seats, a movie and a
    /// show starting in `starts_in` in the existing `city`, with `mode`
    /// set by the operator API; returns the show id. The one seeding path
    /// of the end-to-end tests (the edge's stack seeds through it too).
    pub async fn seed_show_in(
        &self,
        city: &str,
        rows: usize,
        per_row: u16,
        starts_in: chrono::Duration,
        mode: SaleMode,
    ) -> anyhow::Result<String> {
        let tag = Uuid::new_v4().simple().to_string();
        let api = Api::with_client(&self.url, self.http.clone());
        let op = format!("Bearer {}", self.operator);
        let city = CityCode::parse(city)?;
        let place = seed::ensure_place(
            &api,
            &op,
            &city,
            &format!("Venue {tag}"),
            "Asia/Kolkata",
            "Screen 1",
            &seed::grid(rows, per_row, |_| "REGULAR"),
        )
        .await?;
        let movie = seed::create_movie(&api, &op, &format!("Movie {tag}"), 120, "en").await?;
        let show = seed::NewShow {
            screen_id: place.screen_id,
            movie_id: movie,
            starts_at: chrono::Utc::now() + starts_in,
            prices: &[("REGULAR", 25_000)],
            currency: "INR",
        };
        Ok(seed::create_show_in(&api, &op, show, mode)
            .await?
            .id
            .to_string())
    }

    /// `who` holds `seats` and pays with the test card; the booking (the
    /// purchase must succeed).
    pub async fn buy(&self, who: &str, show: &str, seats: &[&str]) -> Value {
        let hold = self.hold_id(who, show, seats).await;
        let a = money::checkout(
            self,
            &user(who),
            &hold,
            &Uuid::new_v4().to_string(),
            "pm_card_ok",
        )
        .await
        .expect("checkout");
        assert_eq!(a.status, 201, "{}", a.json);
        a.json
    }

    /// A hold on `seats` by `who`, which must succeed: its id.
    pub async fn hold_id(&self, who: &str, show: &str, seats: &[&str]) -> String {
        let (s, hold) = self.hold(&user(who), show, seats).await.expect("hold");
        assert_eq!(s, 201, "hold {seats:?} by {who}: {hold}");
        hold["hold_id"].as_str().expect("hold id").to_owned()
    }

    /// The lock path `/healthz` reports: `redis` or `postgres_only`.
    pub async fn lock_path(&self) -> String {
        match self.get("/healthz").await {
            Ok((200, v)) => v["lock_path"].as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        }
    }

    /// Waits (up to 15 s) until holds use the Redis fast path.
    pub async fn wait_for_fast_path(&self) -> bool {
        eventually(std::time::Duration::from_secs(15), || async {
            self.lock_path().await == "redis"
        })
        .await
    }

    /// Acts on a hold as `user`: `""` (GET/DELETE) or `"/extend"` (POST).
    pub async fn on_hold(
        &self,
        method: reqwest::Method,
        user: &str,
        hold_id: &str,
        suffix: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(
            method,
            &format!("/v1/holds/{hold_id}{suffix}"),
            Some(user),
            None,
        )
        .await
    }

    /// The city of `show` (it must exist).
    pub async fn show_city(&self, show: &str) -> String {
        let (s, v) = self
            .get(&format!("/v1/shows/{show}"))
            .await
            .expect("GET show");
        assert_eq!(s, 200, "{v}");
        v["city"]
            .as_str()
            .unwrap_or_else(|| panic!("city in {v}"))
            .to_owned()
    }

    /// `SELECT count(*) …` on the app's database.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The hold id in a seat's Redis lock, if locked.
    pub async fn lock_owner(&self, show: &str, label: &str) -> Option<String> {
        let mut r = self.redis().await.expect("redis");
        redis::cmd("GET")
            .arg(format!("seat:{{{show}}}:{label}"))
            .query_async(&mut r)
            .await
            .expect("GET seat key")
    }

    /// A redis connection to the app's Redis.
    pub async fn redis(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await?)
    }
}

/// A token signed with the test key.
pub fn token(sub: &str, role: Role) -> String {
    let now = chrono::Utc::now().timestamp();
    TokenKeys::new(SECRET)
        .mint(sub, role, now, 3600)
        .unwrap_or_else(|e| panic!("minting a test token: {e}"))
}

/// An operator token for `sub` reaching `cities` with `scopes`, minted
/// the way `region-core mint-token --city … --scope …` mints it.
pub fn operator_token(sub: &str, cities: &[&str], scopes: &[Scope]) -> String {
    let grant = Grant::new(
        cities.iter().map(|c| (*c).to_owned()).collect(),
        scopes.to_vec(),
    )
    .unwrap_or_else(|e| panic!("a test grant: {e}"));
    TokenKeys::new(SECRET)
        .mint_operator(sub, &grant, chrono::Utc::now().timestamp(), 3600)
        .unwrap_or_else(|e| panic!("minting a test token: {e}"))
}

/// A user token.
pub fn user(sub: &str) -> String {
    token(sub, Role::User)
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
