//! The benchmark's own world: a fresh Postgres database created for the run
//! (and dropped after it); the release binaries it measures, spawned as
//! processes on loopback ports (the region core, and for `checkout` and
//! `flash-sale` the sandbox payment gateway), exactly as an operator runs
//! them; and for `flash-sale` the Upstash-compatible REST gateway the edge
//! Worker keeps its state through.
//!
//! The Upstash gateway alone is served in-process, on its own runtime in
//! its own OS thread: it stands in for Upstash (not a part being
//! measured), and the benchmark reads its request and command counters
//! directly.

use anyhow::Context;
use futures::future::{FutureExt, LocalBoxFuture};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::pg_server::PgServer;
use testkit::process::{free_port, ServiceProcess, ServiceSpec};
use tokio::sync::oneshot;

/// Where a self-contained run gets its Postgres and Redis (shared by
/// `holds` and `checkout`).
#[derive(Debug, Clone, clap::Args)]
pub struct WorldArgs {
    /// Database used to create (and drop) the run's fresh database.
    #[arg(
        long,
        env = "LOADGEN_ADMIN_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_database_url: String,

    /// Redis for the region core and the Redis baseline.
    #[arg(
        long,
        env = "LOADGEN_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Run on a Postgres server of the run's own instead of
    /// --admin-database-url's: initdb into a temporary directory,
    /// Postgres's durable defaults, `pg_stat_statements` preloaded (so
    /// statements per booking are counted), removed at the end. Needs the
    /// server binaries (/usr/lib/postgresql/*/bin).
    #[arg(long)]
    pub own_postgres: bool,
}

impl WorldArgs {
    /// The server the run's database goes on: its admin URL, and the
    /// private server (with --own-postgres), to keep until the run ends.
    pub fn postgres(&self) -> anyhow::Result<(String, Option<PgServer>)> {
        if !self.own_postgres {
            return Ok((self.admin_database_url.clone(), None));
        }
        let pg = PgServer::start_with(&[
            ("shared_preload_libraries", "pg_stat_statements"),
            ("max_connections", "200"),
        ])
        .context("starting the run's own Postgres (--own-postgres)")?;
        eprintln!(
            "loadgen: Postgres of the run's own on port {} (pg_stat_statements loaded)",
            pg.port
        );
        Ok((pg.url(), Some(pg)))
    }
}

/// Builds the workspace's binaries `names` next to the running load
/// generator (same profile) when they are missing and it runs under
/// `cargo run` (which sets `CARGO`): `cargo run --release -p loadgen --
/// sellout` then works on a clean checkout. Otherwise starting the
/// service says what to build.
pub fn ensure_binaries(names: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| testkit::process::binary(n).is_err())
        .collect();
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    if missing.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let release = exe.parent().is_some_and(|d| d.ends_with("release"));
    let mut cmd = std::process::Command::new(cargo);
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    for n in &missing {
        cmd.args(["-p", n]);
    }
    eprintln!("loadgen: building {} ({cmd:?})", missing.join(", "));
    let status = cmd.status().context("running cargo build")?;
    anyhow::ensure!(
        status.success(),
        "cargo build of {} failed",
        missing.join(", ")
    );
    Ok(())
}

/// Builds the edge Worker (scripts/build-edge.sh) when its build is
/// missing or older than its sources and the load generator runs under
/// `cargo run`; otherwise only checks that it is built.
pub fn ensure_edge_build(functions_dir: &std::path::Path) -> anyhow::Result<()> {
    use testkit::workerd::{require_build, stale_source};
    let fresh = require_build(functions_dir).is_ok() && stale_source(functions_dir).is_none();
    if fresh || std::env::var_os("CARGO").is_none() {
        return require_build(functions_dir);
    }
    let script = functions_dir.join("../scripts/build-edge.sh");
    eprintln!("loadgen: building the edge Worker ({})", script.display());
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .context("running scripts/build-edge.sh")?;
    anyhow::ensure!(status.success(), "scripts/build-edge.sh failed");
    require_build(functions_dir)
}

/// How long a spawned service may take to answer its readiness check
/// (the region core migrates its fresh database first).
const READY_PATIENCE: Duration = Duration::from_secs(60);

/// How long a service may drain after SIGTERM before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// The region core's configuration for a run: its environment variables
/// (`REGION_*`, see README "Configuration"). Variables of the caller's
/// environment it does not set are inherited.
pub struct RegionCoreConfig {
    env: Vec<(String, String)>,
}

impl RegionCoreConfig {
    /// The database, Redis and signing key every run sets.
    pub fn new(database_url: &str, redis_url: &str, signing: &service_kit::SigningKey) -> Self {
        Self { env: Vec::new() }
            .set("REGION_DATABASE_URL", database_url)
            .set("REGION_REDIS_URL", redis_url)
            .set("REGION_JWT_SECRET", &signing.jwt_secret)
    }

    /// Sets one variable.
    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_owned(), value.to_string()));
        self
    }

    /// Charges through the sandbox gateway `gw`.
    pub fn charging_through(self, gw: &Service) -> Self {
        self.set("REGION_GATEWAY_URL", gw.url())
            .set("REGION_GATEWAY_API_KEY", sandbox_gateway::DEFAULT_API_KEY)
            .set(
                "REGION_GATEWAY_WEBHOOK_SECRET",
                sandbox_gateway::DEFAULT_WEBHOOK_SECRET,
            )
    }
}

/// One of the workspace's release binaries serving on a loopback port.
pub struct Service(ServiceProcess);

impl Service {
    /// `target/release/region-core serve` with `config`, its tokio runtime
    /// sized to `threads` workers (TOKIO_WORKER_THREADS), so the load
    /// generator and the server it measures do not fight over every core.
    pub async fn region_core(config: RegionCoreConfig, threads: usize) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut spec = ServiceSpec::workspace_binary("region-core", port, "/readyz")?
            .arg("serve")
            .env("REGION_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOKIO_WORKER_THREADS", threads.max(1).to_string());
        spec.env.extend(config.env);
        Self::start(spec).await
    }

    /// [`Self::region_core`] charging through `gw`, the sandbox gateway
    /// started for it; if the core cannot start, `gw` is stopped too, so
    /// nothing is left running. Returns both.
    pub async fn region_core_over(
        config: RegionCoreConfig,
        threads: usize,
        gw: Service,
    ) -> anyhow::Result<(Self, Service)> {
        match Self::region_core(config.charging_through(&gw), threads).await {
            Ok(core) => {
                eprintln!(
                    "loadgen: region core (release binary) at {} (log {})",
                    core.url(),
                    core.log_file().display()
                );
                Ok((core, gw))
            }
            Err(e) => {
                gw.stop().await;
                Err(e)
            }
        }
    }

    /// A faultless sandbox gateway and a release region core charging
    /// through it (its webhooks pointed at the core; `config`'s settings
    /// plus the run's own event streams), for benches that only need
    /// purchases to work: runs `bench(core url, tag)`, then stops both
    /// and deletes the run's streams.
    pub async fn with_charging_core<T, F, Fut>(
        config: RegionCoreConfig,
        threads: usize,
        redis_url: &str,
        bench: F,
    ) -> anyhow::Result<T>
    where
        F: FnOnce(String, String) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let gw = Self::sandbox_gateway(0.0, None, Some(1)).await?;
        let tag = crate::seed::short_tag();
        let streams = format!("loadgen_{tag}:events");
        let config = config.set("REGION_EVENTS_STREAM_PREFIX", &streams);
        let (core, gw) = Self::region_core_over(config, threads, gw).await?;
        let result = async {
            testkit::gateway::Gateway::new(gw.url(), sandbox_gateway::DEFAULT_API_KEY)?
                .set_webhook(&format!("{}/v1/webhooks/payments", core.url()))
                .await?;
            bench(core.url().to_owned(), tag).await
        }
        .await;
        core.stop().await;
        gw.stop().await;
        if let Err(e) =
            crate::checks::delete_keys(redis_url, &format!("{streams}:*"), |_| true).await
        {
            eprintln!("loadgen: warning: could not delete the run's event streams: {e:#}");
        }
        result
    }

    /// `target/release/sandbox-gateway` failing `fault_rate` of payments,
    /// its webhooks pointed at a region core later
    /// ([`testkit::gateway::Gateway::set_webhook`]).
    pub async fn sandbox_gateway(
        fault_rate: f64,
        timeout_ms: Option<u64>,
        seed: Option<u64>,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut spec = ServiceSpec::workspace_binary("sandbox-gateway", port, "/healthz")?
            .env("SANDBOX_LISTEN", format!("127.0.0.1:{port}"))
            .env("SANDBOX_API_KEY", sandbox_gateway::DEFAULT_API_KEY)
            .env(
                "SANDBOX_WEBHOOK_SECRET",
                sandbox_gateway::DEFAULT_WEBHOOK_SECRET,
            )
            .env("SANDBOX_WEBHOOK_URL", "")
            .env("SANDBOX_FAULT_RATE", fault_rate.to_string());
        if let Some(t) = timeout_ms {
            spec = spec.env("SANDBOX_TIMEOUT_MS", t.to_string());
        }
        if let Some(s) = seed {
            spec = spec.env("SANDBOX_SEED", s.to_string());
        }
        Self::start(spec).await
    }

    async fn start(mut spec: ServiceSpec) -> anyhow::Result<Self> {
        // Quiet unless the caller asks for logs (they go to its log file).
        if std::env::var_os("RUST_LOG").is_none() {
            spec = spec.env("RUST_LOG", "warn");
        }
        let name = spec.program.display().to_string();
        let process = ServiceProcess::start(spec, READY_PATIENCE)
            .await
            .with_context(|| format!("starting {name}"))?;
        Ok(Self(process))
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        self.0.url()
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    /// Its log file (stdout and stderr).
    pub fn log_file(&self) -> &std::path::Path {
        self.0.log_file()
    }

    /// SIGKILL, as when its host dies: nothing is drained.
    pub async fn kill(&mut self) {
        self.0.kill().await;
    }

    /// SIGTERM, a graceful drain, and the exit.
    pub async fn stop(self) {
        self.0.stop(STOP_PATIENCE).await;
    }
}

/// A service serving on a loopback port from a runtime of its own, in an
/// OS thread of its own.
struct ServiceThread {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a service's start-up hands back: its URL, and the future that
/// stops it (run on the service's own runtime when asked to).
type Started = (String, LocalBoxFuture<'static, ()>);

impl ServiceThread {
    /// Runs `start` on a new runtime of `threads` workers in a thread
    /// named `name`, and returns once it is serving (or failed to start).
    async fn start<F, Fut>(name: &'static str, threads: usize, start: F) -> anyhow::Result<Self>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<Started>>,
    {
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name(format!("{name}-worker"))
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    match start().await {
                        Ok((url, stop)) => {
                            let _ = ready_tx.send(Ok(url));
                            let _ = stop_rx.await;
                            // Bounded: a stuck drain must not hang the run.
                            let _ = tokio::time::timeout(Duration::from_secs(10), stop).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .with_context(|| format!("spawning the {name} thread"))?;
        let url = ready_rx
            .await
            .with_context(|| format!("the {name} thread ended before it was ready"))?
            .with_context(|| format!("starting the in-process {name}"))?;
        Ok(Self {
            url,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops serving and waits for the service's runtime to end.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// What the Upstash gateway has served so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstashCounters {
    /// Authenticated HTTP requests: the Worker's round trips to Redis.
    pub requests: u64,
    /// Redis commands answered (an `EVALSHA` is one).
    pub commands: u64,
}

impl UpstashCounters {
    /// What was served between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            requests: self.requests.saturating_sub(earlier.requests),
            commands: self.commands.saturating_sub(earlier.commands),
        }
    }
}

/// The Upstash-compatible REST gateway (`upstash_gateway::spawn`) serving
/// on a loopback port from its own runtime thread, with its counters
/// readable from the load generator's side.
pub struct InProcessUpstash {
    service: ServiceThread,
    gateway: Arc<Mutex<Option<upstash_gateway::RunningGateway>>>,
}

impl InProcessUpstash {
    /// Starts a gateway over `redis_url` accepting `token`, on a free
    /// loopback port.
    pub async fn start(redis_url: &str, token: &str) -> anyhow::Result<Self> {
        let config = upstash_gateway::GatewayConfig {
            listen: "127.0.0.1:0".into(),
            redis_url: redis_url.to_owned(),
            token: token.to_owned(),
        };
        let gateway: Arc<Mutex<Option<upstash_gateway::RunningGateway>>> = Arc::default();
        let slot = gateway.clone();
        let service = ServiceThread::start("upstash-gateway", 1, move || async move {
            let running = upstash_gateway::spawn(config).await?;
            let url = running.url();
            *lock(&slot) = Some(running);
            let stop = async move {
                // Taken out first: the lock is not held across the await.
                let running = lock(&slot).take();
                if let Some(r) = running {
                    r.stop().await;
                }
            };
            Ok((url, stop.boxed_local()))
        })
        .await?;
        Ok(Self { service, gateway })
    }

    /// Base URL: the Worker's `UPSTASH_REDIS_REST_URL`.
    pub fn url(&self) -> &str {
        &self.service.url
    }

    /// Requests and commands served so far.
    pub fn counters(&self) -> UpstashCounters {
        lock(&self.gateway)
            .as_ref()
            .map(|g| UpstashCounters {
                requests: g.requests_served(),
                commands: g.commands_served(),
            })
            .unwrap_or_default()
    }

    /// Stops serving and waits for the gateway's runtime to end.
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

/// A poisoned lock still holds a usable value (a panic elsewhere must not
/// hide the counters or keep the gateway from stopping).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
