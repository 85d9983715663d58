//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/browser-toolchain.sh`), for the
//! tests of the buyer's pages: one `chromedriver` per test on a free
//! port, one browser session per simulated buyer, an accessibility check
//! with axe-core, and screenshots.
//!
//! Chromium runs as root here, hence `--no-sandbox`.

use anyhow::{bail, Context};
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use testkit::process::free_port;
use tokio::process::{Child, Command};

/// A running chromedriver (killed on drop).
pub struct Driver {
    child: Child,
    url: String,
}

/// How a browser session starts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Window width in CSS pixels (height 900).
    pub width: u32,
    /// Make `WebSocket` unusable in every page (as behind a proxy that
    /// drops upgrades): the pages must fall back to polling.
    pub block_websockets: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            width: 1280,
            block_websockets: false,
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Driver {
    /// Starts chromedriver ($BROWSER_CHROMEDRIVER, else /usr/bin/chromedriver).
    pub async fn start() -> anyhow::Result<Self> {
        let bin = env_or("BROWSER_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port()?;
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin} (run scripts/browser-toolchain.sh)"))?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{url}/status")).await {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready on {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { child, url })
    }

    /// A new headless browser.
    pub async fn browser(&self, opts: Options) -> anyhow::Result<Client> {
        let chromium = env_or("BROWSER_CHROMIUM", "/usr/bin/chromium");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    format!("--window-size={},900", opts.width),
                ],
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .context("opening a WebDriver session")?;
        if opts.block_websockets {
            // Before any page script: every WebSocket fails at once, as
            // behind a proxy that refuses upgrades.
            self.cdp(
                &client,
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": "window.WebSocket = function () { throw new Error('WebSockets are blocked'); };" }),
            )
            .await?;
        }
        Ok(client)
    }

    /// Runs a Chrome DevTools Protocol command in `client`'s browser
    /// (chromedriver's `POST /session/{id}/goog/cdp/execute`).
    pub async fn cdp(&self, client: &Client, cmd: &str, params: Value) -> anyhow::Result<Value> {
        let session = client.session_id().await?.context("no WebDriver session")?;
        let resp = reqwest::Client::new()
            .post(format!("{}/session/{session}/goog/cdp/execute", self.url))
            .json(&json!({ "cmd": cmd, "params": params }))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("CDP {cmd}: {status} {body}");
        }
        Ok(body["value"].clone())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Accessibility violations of the current page that axe-core rates
/// serious or critical (`$BROWSER_AXE_JS`).
pub async fn axe_violations(client: &Client) -> anyhow::Result<Vec<String>> {
    // Where scripts/browser-toolchain.sh puts it, unless told otherwise.
    let path = std::env::var("BROWSER_AXE_JS").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        let tools = std::env::var("BROWSER_TOOLS_DIR")
            .unwrap_or_else(|_| format!("{home}/.cache/booking-browser"));
        format!("{tools}/npm/node_modules/axe-core/axe.min.js")
    });
    let source = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (run scripts/browser-toolchain.sh)"))?;
    client
        .execute(&format!("{source}\nreturn true;"), vec![])
        .await
        .context("injecting axe-core")?;
    let result = client
        .execute_async(
            "const done = arguments[arguments.length - 1];\n\
             axe.run(document, { resultTypes: ['violations'] })\n\
               .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }))))\n\
               .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
            vec![],
        )
        .await
        .context("running axe-core")?;
    Ok(result
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious") | Some("critical")))
        .map(|v| {
            format!(
                "{} ({}): {} at {}",
                v["id"], v["impact"], v["help"], v["nodes"]
            )
        })
        .collect())
}

/// Saves a screenshot of the current page under `target/screenshots/`.
pub async fn screenshot(client: &Client, name: &str) -> anyhow::Result<PathBuf> {
    let png = client.screenshot().await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png)?;
    Ok(path)
}

/// Waits until `check` holds (polling every 100 ms), or fails with `what`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
