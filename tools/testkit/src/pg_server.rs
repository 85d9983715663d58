//! A private PostgreSQL server (initdb into a temp dir, on a free port):
//! for tests that stop and start Postgres, and for benchmarks that need
//! server settings of their own (`pg_stat_statements` preloaded); the
//! shared server is never touched.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A throw-away Postgres cluster.
pub struct PgServer {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// `-c name=value` settings it runs with.
    settings: Vec<(String, String)>,
}

/// What the tests run with: fast and forgetful (no fsync; a crash of a
/// test server loses nothing anyone needs).
const TEST_SETTINGS: &[(&str, &str)] = &[("fsync", "off"), ("max_connections", "60")];

fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .ok_or_else(|| anyhow::anyhow!("no /usr/lib/postgresql/*/bin/initdb"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgServer {
    /// initdb and start on a free port, with the tests' settings.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(TEST_SETTINGS)
    }

    /// initdb and start on a free port with `settings` (`-c name=value`
    /// each) over Postgres's defaults: durable unless they say otherwise.
    pub fn start_with(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            // Postgres refuses to run as root.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let settings = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let s = Self {
            port,
            dir,
            bin,
            settings,
        };
        s.as_owner(
            &s.bin.join("initdb"),
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-D",
                &s.data(),
            ],
        )?;
        s.resume()?;
        Ok(s)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn as_owner(&self, program: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        run(cmd.args(args))
    }

    /// URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it at once (like a crash).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.as_owner(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    /// Starts it (again).
    pub fn resume(&self) -> anyhow::Result<()> {
        let mut opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.display()
        );
        for (name, value) in &self.settings {
            opts.push_str(&format!(" -c {name}={value}"));
        }
        let log = self.dir.join("pg.log").display().to_string();
        self.as_owner(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        )?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("postgres did not start on port {}", self.port)
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
