//! The local mail catcher (`tools/mailcatcher/catcher.py`, an SMTP server
//! on aiosmtpd) as a child process on a free port, keeping each message
//! it accepts as a file in a directory of its own. The end-to-end tests
//! and the mail benchmark send real SMTP to it and read the messages back.
//!
//! Where Python and the script are: `MAIL_CATCHER_PYTHON` and
//! `MAIL_CATCHER_SCRIPT` (what `scripts/mail-toolchain.sh` prints), else
//! the toolchain's default virtualenv and the workspace's script.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running catcher.
pub struct MailCatcher {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn python() -> PathBuf {
    std::env::var_os("MAIL_CATCHER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/booking-mail/venv/bin/python")
        })
}

fn script() -> PathBuf {
    std::env::var_os("MAIL_CATCHER_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../mailcatcher/catcher.py"))
}

impl MailCatcher {
    /// Starts a catcher keeping messages in a new temporary directory.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("mail-{}", uuid::Uuid::new_v4().simple()));
        Self::start_in(&dir, 0).await
    }

    /// Starts a catcher on `port` (0: a free one) keeping messages in
    /// `dir` (created if missing; what is there stays).
    pub async fn start_in(dir: &Path, port: u16) -> anyhow::Result<Self> {
        Self::spawn(dir, port, false).await
    }

    /// Starts a server on `port` (0: a free one) that refuses every
    /// message for good (554 to DATA), as one rejecting the sender would;
    /// `dir` is where a catcher started later on the same port keeps what
    /// it accepts.
    pub async fn start_refusing_in(dir: &Path, port: u16) -> anyhow::Result<Self> {
        Self::spawn(dir, port, true).await
    }

    async fn spawn(dir: &Path, port: u16, refuse: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (python, script) = (python(), script());
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg("--dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string());
        if refuse {
            command.arg("--refuse");
        }
        let mut child = command
            // Its stdin closing stops it: the harness dying cannot leave it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting the mail catcher ({} {}): run scripts/mail-toolchain.sh",
                    python.display(),
                    script.display()
                )
            })?;
        let stdout = child.stdout.take().context("catcher stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(p) = line.strip_prefix("SMTP_PORT=") {
                    return Ok(p.trim().parse::<u16>().ok());
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .context("the mail catcher did not report its port (is aiosmtpd installed?)")?;
        Ok(Self {
            child,
            port,
            dir: dir.to_owned(),
        })
    }

    /// `smtp://127.0.0.1:PORT` (REGION_SMTP_URL).
    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where it keeps messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every message received so far, oldest first, as received.
    pub fn messages(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        messages_in(&self.dir)
    }

    /// Stops it (the messages stay in its directory).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The messages a catcher kept in `dir`, oldest first.
pub fn messages_in(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}
