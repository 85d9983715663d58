//! The sandbox payment gateway as a real process (the built
//! `sandbox-gateway` binary, started by `testkit::process`) on a free
//! port, for tests that freeze it (SIGSTOP) or kill it the way an
//! operator's gateway would stall or die. `scripts/test.sh` builds the
//! binary before the tests.

use crate::GATEWAY_KEY;
use std::time::Duration;
use testkit::process::{free_port, ServiceProcess, ServiceSpec};

/// A sandbox-gateway child process.
pub struct SandboxProcess {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    process: ServiceProcess,
}

impl SandboxProcess {
    /// Starts one and waits until it answers.
    pub async fn start(webhook_url: Option<&str>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let spec = ServiceSpec::workspace_binary("sandbox-gateway", port, "/healthz")?
            .env("SANDBOX_LISTEN", format!("127.0.0.1:{port}"))
            .env("SANDBOX_API_KEY", GATEWAY_KEY)
            .env("SANDBOX_WEBHOOK_URL", webhook_url.unwrap_or(""))
            .env("RUST_LOG", "warn");
        let process = ServiceProcess::start(spec, Duration::from_secs(10)).await?;
        Ok(Self {
            url: process.url().to_owned(),
            process,
        })
    }

    /// Freezes it (SIGSTOP): connections are accepted by the kernel but
    /// nothing is answered, as a stalled gateway does.
    pub fn freeze(&self) {
        self.process.freeze();
    }

    /// Resumes it (SIGCONT).
    pub fn resume(&self) {
        self.process.resume();
    }

    /// Its ledger (`GET /sandbox/ledger`).
    pub async fn ledger(&self) -> anyhow::Result<serde_json::Value> {
        Ok(reqwest::Client::new()
            .get(format!("{}/sandbox/ledger", self.url))
            .bearer_auth(GATEWAY_KEY)
            .send()
            .await?
            .json()
            .await?)
    }
}
