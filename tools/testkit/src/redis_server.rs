//! Private `redis-server` processes on free ports, for the tests that kill
//! and restart Redis and for the benchmarks that give each shard a Redis
//! of its own (the shared one is never touched). Nothing is kept on disk.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server child process. Killed when dropped.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A memory-only server's arguments on `port` (no RDB, no AOF).
fn memory_only(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts one on a free port with `extra` arguments after the
    /// memory-only ones (e.g. `--replicaof 127.0.0.1 <port>`).
    pub fn start_with(extra: &[String]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut args = memory_only(port);
        args.extend_from_slice(extra);
        Self::launch(port, args)
    }

    /// Starts `redis-server args…`, which must listen on `port` (a
    /// sentinel's arguments name its config file first).
    pub(crate) fn launch(port: u16, args: Vec<String>) -> anyhow::Result<Self> {
        let mut s = Self {
            port,
            args,
            child: None,
        };
        s.restart()?;
        Ok(s)
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same arguments (empty: it
    /// keeps nothing on disk).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("redis-server did not start on port {}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
