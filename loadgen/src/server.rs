//! The benchmark's own world: a fresh Postgres database created for the run
//! (and dropped after it), a region core served in-process against it, for
//! `checkout` and `flash-sale` a sandbox payment gateway served in-process
//! too, and for `flash-sale` the Upstash-compatible REST gateway the edge
//! Worker keeps its state through.
//!
//! Each in-process service runs on its own multi-thread tokio runtime in
//! its own OS thread, so the
//! load generator's tasks never share workers with the server's: a busy
//! client then delays its own sends (which the open model records as
//! latency), not the server's request handling.

use anyhow::Context;
use futures::future::{FutureExt, LocalBoxFuture};
use region_core::{Application, Settings};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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

    /// Redis for the in-process core and the Redis baseline.
    #[arg(
        long,
        env = "LOADGEN_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
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

/// A region core serving on a loopback port from its own runtime thread.
pub struct InProcessServer(ServiceThread);

impl InProcessServer {
    /// Builds (migrating the database) and starts a region core with
    /// `settings` on a runtime of `threads` workers.
    pub async fn start(settings: Settings, threads: usize) -> anyhow::Result<Self> {
        let service = ServiceThread::start("region-core", threads, move || async move {
            let running = Application::build(settings).await?.spawn()?;
            Ok((running.url(), running.stop().boxed_local()))
        })
        .await?;
        Ok(Self(service))
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// Stops serving and waits for the server's runtime to end.
    pub async fn stop(self) {
        self.0.stop().await;
    }
}

/// A sandbox payment gateway serving on a loopback port from its own
/// runtime thread (so its work, timeouts and webhook deliveries never
/// queue behind the load generator's tasks or the region core's).
pub struct InProcessGateway(ServiceThread);

impl InProcessGateway {
    /// Starts a sandbox gateway with `config` (its `listen` is usually
    /// `127.0.0.1:0`) on a runtime of `threads` workers.
    pub async fn start(
        config: sandbox_gateway::SandboxConfig,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let service = ServiceThread::start("sandbox-gateway", threads, move || async move {
            let running = sandbox_gateway::spawn(config).await?;
            Ok((running.url(), running.stop().boxed_local()))
        })
        .await?;
        Ok(Self(service))
    }

    /// Base URL, e.g. `http://127.0.0.1:41235`.
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// Stops serving and waits for the gateway's runtime to end.
    pub async fn stop(self) {
        self.0.stop().await;
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
