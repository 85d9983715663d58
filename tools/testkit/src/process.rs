//! The workspace's own binaries (region core, sandbox gateway, Upstash
//! gateway) run as real processes on loopback ports: the benchmarks
//! measure the release binaries an operator deploys, and the fault tests
//! kill (SIGKILL) or freeze (SIGSTOP) them the way a host fails.
//!
//! One launcher for both: a child with the environment it is configured
//! by, its output in a log file (its tail shown when it fails to start),
//! and a readiness URL polled until it answers 2xx.

use anyhow::Context;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Where cargo put the workspace's binaries for the running executable:
/// next to it (`target/release/loadgen`), or one level up from a test's
/// `deps/` directory (`target/debug/deps/chaos-…`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory above {}", exe.display()))?;
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it first (`cargo build --bins`, or `--release` for the \
         benchmarks; scripts/test.sh and scripts/up.sh do)",
        path.display()
    );
    Ok(path)
}

/// A free loopback port (bound and released: a race with another process
/// taking it is possible but does not happen on a test machine).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to start a service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Binary name (found with [`binary`]) or path.
    pub program: PathBuf,
    /// Arguments, e.g. `["serve"]`.
    pub args: Vec<String>,
    /// Its configuration.
    pub env: Vec<(String, String)>,
    /// `http://127.0.0.1:<port>` it will serve on (its listen variable in
    /// `env` must agree).
    pub url: String,
    /// Path polled until it answers 2xx, e.g. `/readyz`.
    pub ready_path: String,
    /// Where stdout and stderr go.
    pub log_file: PathBuf,
}

impl ServiceSpec {
    /// A workspace binary named `name` on `port`, logging to a file in the
    /// temp directory.
    pub fn workspace_binary(name: &str, port: u16, ready_path: &str) -> anyhow::Result<Self> {
        Ok(Self {
            program: binary(name)?,
            args: Vec::new(),
            env: Vec::new(),
            url: format!("http://127.0.0.1:{port}"),
            ready_path: ready_path.to_owned(),
            log_file: std::env::temp_dir().join(format!("{name}-{port}.log")),
        })
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }
}

/// A running service process. Killed when dropped.
pub struct ServiceProcess {
    spec: ServiceSpec,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts it and waits up to `patience` for its readiness URL.
    pub async fn start(spec: ServiceSpec, patience: Duration) -> anyhow::Result<Self> {
        let mut me = Self { spec, child: None };
        me.restart(patience).await?;
        Ok(me)
    }

    /// Starts it again (after [`kill`](Self::kill)) with the same
    /// configuration, appending to the same log.
    pub async fn restart(&mut self, patience: Duration) -> anyhow::Result<()> {
        self.kill().await;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log_file)
            .with_context(|| format!("opening {}", self.spec.log_file.display()))?;
        let child = Command::new(&self.spec.program)
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.program.display()))?;
        self.child = Some(child);
        self.wait_ready(patience).await
    }

    async fn wait_ready(&mut self, patience: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}{}", self.spec.url, self.spec.ready_path);
        let until = tokio::time::Instant::now() + patience;
        loop {
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if exited || tokio::time::Instant::now() >= until {
                let why = if exited { "exited" } else { "is not ready" };
                anyhow::bail!(
                    "{} {why} ({url}); its log:\n{}",
                    self.spec.program.display(),
                    log_tail(&self.spec.log_file)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.spec.url
    }

    /// Its log file.
    pub fn log_file(&self) -> &Path {
        &self.spec.log_file
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Sends a signal by name (`-STOP`, `-CONT`, `-TERM`).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            signal(c, sig);
        }
    }

    /// Freezes it (SIGSTOP): the kernel still accepts connections, nothing
    /// answers them, as on a stalled host.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL: nothing is finished for it, as when a host dies.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "-CONT");
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// SIGTERM and a graceful drain (bounded by `patience`, then SIGKILL).
    pub async fn stop(mut self, patience: Duration) {
        self.terminate(patience).await;
    }

    /// SIGTERM, as Kubernetes stops a pod, and a wait of up to `patience`
    /// for it to exit (then SIGKILL). Its exit status if it exited by
    /// itself; [`restart`](Self::restart) starts it again.
    pub async fn terminate(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // A frozen process acts on no signal but SIGKILL: resume it
        // first so the stop is graceful.
        signal(&c, "-CONT");
        signal(&c, "-TERM");
        match tokio::time::timeout(patience, c.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = c.start_kill();
                let _ = c.wait().await;
                None
            }
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // Resumed, so a frozen child does not outlive the harness; then
        // `kill_on_drop` sends the SIGKILL.
        self.resume();
    }
}

/// `kill <sig> <pid>` (the standard library sends only SIGKILL).
fn signal(c: &Child, sig: &str) {
    if let Some(pid) = c.id() {
        let _ = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status();
    }
}

/// The last 30 lines of a log, for an error message.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    format!(
        "{}\n(full log: {})",
        lines[from..].join("\n"),
        path.display()
    )
}
