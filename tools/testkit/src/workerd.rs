//! The built edge Worker serving in workerd: a `node functions/dev/serve.mjs
//! --port 0` child (Miniflare), started with the vars and secrets it is
//! configured by, its log in a file. The end-to-end edge tests, the
//! flash-sale benchmark and nothing else start it; operators run it with
//! `wrangler`.

use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::process::log_tail;

/// The Worker vars and secrets `serve.mjs` knows (docs/edge.md,
/// "Configuration"). Each one a caller does not set is passed empty (the
/// Worker's default), so nothing leaks in from the environment the harness
/// happens to run in.
pub const WORKER_VARS: [&str; 18] = [
    "REGIONS",
    "RATE_LIMITS",
    "DENY_LIST",
    "CACHE_TTLS",
    "REGION_TIMEOUT_MS",
    "BREAKER_FAILURES",
    "BREAKER_OPEN_MS",
    "MAX_BODY_BYTES",
    "UPSTASH_TIMEOUT_MS",
    "KEY_PREFIX",
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "ADMISSION_KEY",
    "ADMISSION_KEYS_PREVIOUS",
    "JWT_SECRET",
    "TRUST_CF_CONNECTING_IP",
    "TRUSTED_PROXIES",
    "LIVE_BUCKETS",
];

/// How long `serve.mjs` may take to print its `EDGE_URL=` line (usually
/// under a second; a loaded two-core machine takes longer).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace's `functions/` directory, as built into the binary.
pub const FUNCTIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../functions");

/// Fails with the fix if the Worker has not been built.
pub fn require_build(functions_dir: &Path) -> anyhow::Result<()> {
    let index = functions_dir.join("build").join("index.js");
    anyhow::ensure!(
        index.is_file(),
        "{} is missing: the edge runs the BUILT Worker; build it first with \
         scripts/build-edge.sh",
        index.display()
    );
    Ok(())
}

/// Names the first Worker source newer than the build (the run would
/// exercise old code), if any.
pub fn stale_source(functions_dir: &Path) -> Option<PathBuf> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = modified(&functions_dir.join("build/index_bg.wasm"))?;
    let mut stack = vec![functions_dir.join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if modified(&p).is_some_and(|m| m > built) {
                return Some(p);
            }
        }
    }
    None
}

/// What the Worker is started with.
#[derive(Debug, Clone)]
pub struct EdgeLaunch {
    /// The `functions/` directory (its `build/` and `dev/serve.mjs`).
    pub functions_dir: PathBuf,
    /// The Node.js binary.
    pub node: String,
    /// Worker vars and secrets by name (see [`WORKER_VARS`]).
    pub vars: BTreeMap<String, String>,
    /// Where Miniflare's and the Worker's logs go.
    pub log_file: PathBuf,
}

impl EdgeLaunch {
    /// The workspace's Worker, `node` from `EDGE_NODE` (else `node`), a
    /// log file in the temp directory.
    pub fn new(vars: BTreeMap<String, String>) -> Self {
        Self {
            functions_dir: PathBuf::from(FUNCTIONS_DIR),
            node: std::env::var("EDGE_NODE").unwrap_or_else(|_| "node".into()),
            vars,
            log_file: std::env::temp_dir().join(format!("edge-{}.log", uuid::Uuid::new_v4())),
        }
    }
}

/// The built Worker serving in workerd.
pub struct EdgeWorker {
    child: Child,
    url: String,
    log_file: PathBuf,
}

impl EdgeWorker {
    /// Starts `serve.mjs --port 0` and waits for its `EDGE_URL=` line.
    pub async fn start(launch: &EdgeLaunch) -> anyhow::Result<Self> {
        require_build(&launch.functions_dir)?;
        if let Some(p) = stale_source(&launch.functions_dir) {
            eprintln!(
                "warning: {} is newer than functions/build: rerun scripts/build-edge.sh",
                p.display()
            );
        }
        let script = launch.functions_dir.join("dev").join("serve.mjs");
        let log = std::fs::File::create(&launch.log_file)
            .with_context(|| format!("creating {}", launch.log_file.display()))?;
        let mut cmd = Command::new(&launch.node);
        cmd.arg(&script)
            .args(["--port", "0", "--host", "127.0.0.1", "--log-level", "warn"]);
        for name in WORKER_VARS {
            let value = launch.vars.get(name).map(String::as_str).unwrap_or("");
            cmd.arg("--var").arg(format!("{name}={value}"));
        }
        for (name, value) in &launch.vars {
            if !WORKER_VARS.contains(&name.as_str()) {
                cmd.arg("--var").arg(format!("{name}={value}"));
            }
        }
        // A pipe it watches: when the harness dies, its end closes and
        // serve.mjs stops workerd (docs/edge.md, "Stopping").
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Last resort (SIGKILL); serve.mjs's watchdog then ends workerd.
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting `{} {}` (is Node.js 20 on PATH? EDGE_NODE names it)",
                launch.node,
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
                    log_tail(&launch.log_file)
                );
            }
        };
        // Nothing else is printed on stdout; keep reading so a stray line
        // can never fill the pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            url,
            log_file: launch.log_file.clone(),
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

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
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

impl Drop for EdgeWorker {
    fn drop(&mut self) {
        // `kill_on_drop` kills the child (serve.mjs's watchdog then ends
        // workerd). A failing test gets the Worker's log.
        if std::thread::panicking() {
            eprintln!(
                "---- edge (serve.mjs / workerd) log, last lines ----\n{}",
                log_tail(&self.log_file)
            );
        }
    }
}
