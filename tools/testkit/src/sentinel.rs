//! A Redis master, one replica and three sentinels on free ports (the
//! `redis-server` binary in sentinel mode), for the failover tests and the
//! cross-shard benchmark. Nothing is kept on disk but the sentinels' own
//! config files, in a directory that goes with the set.

use crate::redis_server::RedisServer;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The Sentinel service name the set monitors.
pub const SERVICE: &str = "booking";

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn query(port: u16, cmd: &mut redis::Cmd) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(1))?;
    cmd.query(&mut c)
}

/// A master, a replica and three sentinels (quorum 2).
pub struct SentinelSet {
    nodes: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    dir: PathBuf,
}

impl SentinelSet {
    /// Starts the set and waits until the sentinels see the replica (a
    /// failover needs one).
    pub fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "testkit-sentinel-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let master = RedisServer::start()?;
        let master_port = master.port;
        // Loaded straight from the master's socket: otherwise the replica
        // writes the RDB of its first sync as dump.rdb in the caller's
        // working directory.
        let replica = RedisServer::start_with(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
            "--repl-diskless-load".into(),
            "on-empty-db".into(),
        ])?;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port()?;
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\n\
                     sentinel failover-timeout {SERVICE} 5000\n\
                     sentinel parallel-syncs {SERVICE} 1\n"
                ),
            )?;
            sentinels.push(RedisServer::launch(
                port,
                vec![conf.display().to_string(), "--sentinel".into()],
            )?);
        }
        let set = Self {
            nodes: vec![master, replica],
            sentinels,
            dir,
        };
        set.wait_for(
            "the sentinels to see the replica",
            Duration::from_secs(30),
            |s| {
                s.sentinels.iter().all(|n| {
                    matches!(
                        query(n.port, redis::cmd("SENTINEL").arg("replicas").arg(SERVICE)),
                        Ok(redis::Value::Array(ref v)) if !v.is_empty()
                    )
                })
            },
        )?;
        Ok(set)
    }

    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if ok(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("timed out waiting for {what}")
    }

    /// The sentinels' URLs (`REGION_REDIS_SENTINELS`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The master's port as the first sentinel that answers says.
    pub fn master_port(&self) -> anyhow::Result<u16> {
        for n in &self.sentinels {
            if let Ok(v) = query(
                n.port,
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(SERVICE),
            ) {
                let addr: Vec<String> = redis::from_redis_value(&v)?;
                if let Some(p) = addr.get(1) {
                    return Ok(p.parse()?);
                }
            }
        }
        anyhow::bail!("no sentinel names a master")
    }

    /// `redis://` URL of the current master.
    pub fn master_url(&self) -> anyhow::Result<String> {
        Ok(format!("redis://127.0.0.1:{}", self.master_port()?))
    }

    /// Kills the current master (SIGKILL) and waits until the sentinels
    /// name another one. Returns the new master's port.
    pub fn kill_master_and_fail_over(&mut self, timeout: Duration) -> anyhow::Result<u16> {
        let old = self.master_port()?;
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == old) {
            node.kill();
        }
        self.wait_for("a failover", timeout, |s| {
            s.master_port().is_ok_and(|p| p != old)
        })?;
        self.master_port()
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        self.sentinels.clear();
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
