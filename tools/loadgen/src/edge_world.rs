//! The world of a benchmark driven through the edge: a sandbox payment
//! gateway and a region core (release binaries, as processes), the
//! Upstash-compatible gateway in-process over the shared Redis, and the
//! built Worker in workerd routing the bench city to that core. Shared by
//! `loadgen flash-sale` and `loadgen sellout`.
//!
//! Started in dependency order and stopped in reverse (the edge first: it
//! calls the others), every started service stopped on every path.

use crate::server::{InProcessUpstash, RegionCoreConfig, Service, WorldArgs};
use std::collections::BTreeMap;
use std::path::PathBuf;
use testkit::workerd::{EdgeLaunch, EdgeWorker};

/// Token of the in-process Upstash gateway.
pub const UPSTASH_TOKEN: &str = "loadgen-upstash-token";

/// What the world is made of.
pub struct EdgeWorldSpec<'a> {
    /// Postgres and Redis of the run.
    pub world: &'a WorldArgs,
    /// Operator/user token key (the edge's JWT_SECRET too).
    pub signing: &'a service_kit::SigningKey,
    /// The run's fresh database.
    pub database_url: &'a str,
    /// The city the edge routes to the core.
    pub city: &'a str,
    /// The edge's `KEY_PREFIX` (the run's own keys in the shared Redis).
    pub key_prefix: &'a str,
    /// The core's `REGION_EVENTS_STREAM_PREFIX`.
    pub streams: &'a str,
    /// The run's tag (log file names).
    pub tag: &'a str,
    /// Share of payments the sandbox turns into faults.
    pub fault_rate: f64,
    /// More `REGION_*` settings of the core.
    pub core_env: Vec<(String, String)>,
    /// The Worker's directory, Node.js, thread counts.
    pub run: &'a EdgeRunArgs,
}

/// Options of a run through the edge (`flash-sale`, `sellout`).
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeRunArgs {
    /// The `functions/` directory (its `build/` from scripts/build-edge.sh
    /// and `dev/serve.mjs`).
    #[arg(long, default_value = testkit::workerd::FUNCTIONS_DIR)]
    pub functions_dir: PathBuf,

    /// The Node.js binary that runs serve.mjs.
    #[arg(long, env = "LOADGEN_NODE", default_value = "node")]
    pub node: String,

    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    /// Worker threads of the spawned region core's runtime
    /// (TOKIO_WORKER_THREADS).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,

    /// Keep the fresh database after the run (for inspection).
    #[arg(long)]
    pub keep_database: bool,
}

/// The running services.
pub struct EdgeWorld {
    /// The sandbox payment gateway.
    pub gateway: Service,
    /// The Upstash-compatible gateway the Worker keeps its state through.
    pub upstash: InProcessUpstash,
    /// The region core.
    pub core: Service,
    /// The Worker in workerd.
    pub edge: EdgeWorker,
    /// The run's admission-pass key (the edge's `ADMISSION_KEY`, the
    /// core's `REGION_ADMISSION_KEYS`).
    pub admission_key: String,
}

impl EdgeWorld {
    /// Starts the services; on failure stops those already started.
    pub async fn start(spec: &EdgeWorldSpec<'_>) -> anyhow::Result<Self> {
        let admission_key = hex_key();
        let gateway = Service::sandbox_gateway(spec.fault_rate, None, None).await?;
        let upstash = match InProcessUpstash::start(&spec.world.redis_url, UPSTASH_TOKEN).await {
            Ok(u) => u,
            Err(e) => {
                gateway.stop().await;
                return Err(e);
            }
        };
        let mut config =
            RegionCoreConfig::new(spec.database_url, &spec.world.redis_url, spec.signing)
                .set("REGION_ADMISSION_KEYS", &admission_key)
                .charging_through(&gateway)
                .set("REGION_EVENTS_STREAM_PREFIX", spec.streams);
        for (k, v) in &spec.core_env {
            config = config.set(k, v);
        }
        let core = match Service::region_core(config, spec.run.server_threads).await {
            Ok(c) => c,
            Err(e) => {
                upstash.stop().await;
                gateway.stop().await;
                return Err(e);
            }
        };
        eprintln!(
            "loadgen: region core at {} (log {}), sandbox gateway at {} (the workspace's binaries), upstash gateway at {}",
            core.url(),
            core.log_file().display(),
            gateway.url(),
            upstash.url()
        );
        let edge = match launch_edge(spec, &core, &upstash, &admission_key).await {
            Ok(edge) => edge,
            Err(e) => {
                core.stop().await;
                upstash.stop().await;
                gateway.stop().await;
                return Err(e);
            }
        };
        eprintln!(
            "loadgen: edge Worker in workerd at {} (KEY_PREFIX {}, log {})",
            edge.url(),
            spec.key_prefix,
            edge.log_file().display()
        );
        let world = Self {
            gateway,
            upstash,
            core,
            edge,
            admission_key,
        };
        if let Err(e) = world.point_webhooks().await {
            world.stop().await;
            return Err(e);
        }
        Ok(world)
    }

    async fn point_webhooks(&self) -> anyhow::Result<()> {
        testkit::gateway::Gateway::new(self.gateway.url(), sandbox_gateway::DEFAULT_API_KEY)?
            .set_webhook(&format!("{}/v1/webhooks/payments", self.core.url()))
            .await
    }

    /// Stops everything, the edge first (it calls the others).
    pub async fn stop(self) {
        self.edge.stop().await;
        self.core.stop().await;
        self.upstash.stop().await;
        self.gateway.stop().await;
    }
}

async fn launch_edge(
    spec: &EdgeWorldSpec<'_>,
    core: &Service,
    upstash: &InProcessUpstash,
    admission_key: &str,
) -> anyhow::Result<EdgeWorker> {
    let vars = [
        (
            "REGIONS",
            serde_json::to_string(&BTreeMap::from([(spec.city, core.url())]))?,
        ),
        ("UPSTASH_REDIS_REST_URL", upstash.url().to_owned()),
        ("UPSTASH_REDIS_REST_TOKEN", UPSTASH_TOKEN.to_owned()),
        ("ADMISSION_KEY", admission_key.to_owned()),
        ("JWT_SECRET", spec.signing.jwt_secret.clone()),
        ("KEY_PREFIX", spec.key_prefix.to_owned()),
        // Simulated users name their address in CF-Connecting-IP, as
        // Cloudflare does for real ones.
        ("TRUST_CF_CONNECTING_IP", "true".to_owned()),
    ];
    let launch = EdgeLaunch {
        functions_dir: spec.run.functions_dir.clone(),
        node: spec.run.node.clone(),
        vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        log_file: std::env::temp_dir().join(format!("loadgen-edge-{}.log", spec.tag)),
    };
    EdgeWorker::start(&launch).await
}

/// Removes what a run left in the shared Redis (the edge's keys, the
/// shows' seat keys, the event streams) and its fresh database (unless
/// kept for inspection).
pub async fn cleanup(
    world: &WorldArgs,
    keep_database: bool,
    db: testkit::db::FreshDatabase,
    key_prefix: &str,
    streams: &str,
    shows: &[uuid::Uuid],
) {
    let redis = &world.redis_url;
    match crate::checks::delete_keys(redis, &format!("{key_prefix}*"), |_| true).await {
        Ok(n) => eprintln!("loadgen: deleted {n} edge keys under {key_prefix}"),
        Err(e) => eprintln!("loadgen: warning: could not delete the edge's keys: {e:#}"),
    }
    if let Err(e) = crate::checks::delete_show_keys(redis, shows).await {
        eprintln!("loadgen: warning: redis cleanup of the shows' seats failed: {e:#}");
    }
    if let Err(e) = crate::checks::delete_keys(redis, &format!("{streams}:*"), |_| true).await {
        eprintln!("loadgen: warning: could not delete the run's event streams: {e:#}");
    }
    if keep_database {
        eprintln!("loadgen: kept database {}", db.name());
    } else if let Err(e) = db.drop_now().await {
        eprintln!("loadgen: warning: could not drop the fresh database: {e:#}");
    }
}

/// 32 random bytes as hex: the run's admission-pass signing key.
pub fn hex_key() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
