//! The sandbox payment gateway as a real process (the built
//! `sandbox-gateway` binary) on a free port, for tests that freeze it
//! (SIGSTOP) or kill it the way an operator's gateway would stall or die.
//! `scripts/test.sh` builds the binary before the tests.

use crate::GATEWAY_KEY;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A sandbox-gateway child process.
pub struct SandboxProcess {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
}

/// Where cargo put the workspace's binaries (next to this test's `deps/`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("no target dir above {}", exe.display()))?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `cargo build --bins` (scripts/test.sh does)",
        path.display()
    );
    Ok(path)
}

impl SandboxProcess {
    /// Starts one and waits until it answers.
    pub async fn start(webhook_url: Option<&str>) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(binary("sandbox-gateway")?)
            .env("SANDBOX_LISTEN", format!("127.0.0.1:{port}"))
            .env("SANDBOX_API_KEY", GATEWAY_KEY)
            .env("SANDBOX_WEBHOOK_URL", webhook_url.unwrap_or(""))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let me = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/healthz", me.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("sandbox-gateway did not answer on {}", me.url)
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Freezes it (SIGSTOP): connections are accepted by the kernel but
    /// nothing is answered, as a stalled gateway does.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
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

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
