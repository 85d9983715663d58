//! The benchmark's own world: a fresh Postgres database created for the run
//! (and dropped after it), and a region core served in-process against it.
//!
//! The in-process core runs on its own multi-thread tokio runtime in its
//! own OS thread, so the load generator's tasks never share workers with
//! the server's: a busy client then delays its own sends (which the open
//! model records as latency), not the server's request handling.

use anyhow::Context;
use region_core::{Application, Settings};
use sqlx::{Connection, PgConnection};
use std::time::Duration;
use tokio::sync::oneshot;

/// A database created for this run.
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl FreshDatabase {
    /// `CREATE DATABASE loadgen_<random>` through `admin_url`.
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("loadgen_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| "connecting to LOADGEN_ADMIN_DATABASE_URL".to_string())?;
        // The name is ours (hex digits only), so formatting it in is safe.
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let _ = conn.close().await;
        let mut url =
            reqwest::Url::parse(admin_url).context("LOADGEN_ADMIN_DATABASE_URL is not a URL")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database (closing any connection still open to it).
    pub async fn drop_now(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .with_context(|| format!("DROP DATABASE {}", self.name))?;
        let _ = conn.close().await;
        Ok(())
    }
}

/// A region core serving on a loopback port from its own runtime thread.
pub struct InProcessServer {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessServer {
    /// Builds (migrating the database) and starts a region core with
    /// `settings` on a runtime of `threads` workers.
    pub async fn start(settings: Settings, threads: usize) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("region-core".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name("region-core-worker")
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
                    let built = async {
                        let app = Application::build(settings).await?;
                        app.spawn()
                    }
                    .await;
                    match built {
                        Ok(running) => {
                            let _ = ready_tx.send(Ok(running.url()));
                            let _ = stop_rx.await;
                            // Bounded: a stuck drain must not hang the run.
                            let _ =
                                tokio::time::timeout(Duration::from_secs(10), running.stop()).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .context("spawning the region-core thread")?;
        let url = ready_rx
            .await
            .context("the region-core thread ended before it was ready")?
            .context("starting the in-process region core")?;
        Ok(Self {
            url,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops serving and waits for the server's runtime to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
