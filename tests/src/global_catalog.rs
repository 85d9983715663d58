//! The global catalog as a real process (`region-core catalog`, the
//! binary `scripts/test.sh` builds) on its own fresh database and a free
//! port, so a test can kill it and start it again.

use crate::{fresh_database, SECRET};
use std::time::Duration;
use testkit::process::{free_port, ServiceProcess, ServiceSpec};

/// A `region-core catalog` child process.
pub struct CatalogProcess {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its database.
    pub database_url: String,
    process: ServiceProcess,
}

impl CatalogProcess {
    /// Starts one on a new database and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let database_url = fresh_database().await?;
        let port = free_port()?;
        let spec = ServiceSpec::workspace_binary("region-core", port, "/healthz")?
            .arg("catalog")
            .env("CATALOG_DATABASE_URL", database_url.clone())
            .env("CATALOG_LISTEN", format!("127.0.0.1:{port}"))
            .env("REGION_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn");
        let process = ServiceProcess::start(spec, Duration::from_secs(20)).await?;
        Ok(Self {
            url: process.url().to_owned(),
            database_url,
            process,
        })
    }

    /// Kills it (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Starts it again on the same database and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart(Duration::from_secs(20)).await
    }
}
