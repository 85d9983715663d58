//! Start-up configuration. Every setting has a default that runs locally
//! and an environment variable (`REGION_…`) to override it; values are
//! validated once, at start-up, with a message naming the variable.

use clap::Args;
use std::time::Duration;

/// Settings of one region-core process (one city shard).
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "REGION_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// This shard's Postgres (source of truth).
    #[arg(
        long,
        env = "REGION_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/booking"
    )]
    pub database_url: String,

    /// Postgres pool size.
    #[arg(long, env = "REGION_DB_POOL_SIZE", default_value_t = 24)]
    pub db_pool_size: u32,

    /// This shard's Redis (seat locks, seat maps).
    #[arg(
        long,
        env = "REGION_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Redis Sentinel instead of a fixed `REGION_REDIS_URL`: the sentinels'
    /// URLs, comma-separated (`redis://10.0.0.5:26379,…`). The master of
    /// `REGION_REDIS_SENTINEL_SERVICE` is looked up through them, and
    /// again after every failed call, so a failover is followed.
    #[arg(long, env = "REGION_REDIS_SENTINELS", value_delimiter = ',')]
    pub redis_sentinels: Vec<String>,

    /// The Sentinel service (master name) of this shard's Redis.
    #[arg(long, env = "REGION_REDIS_SENTINEL_SERVICE", default_value = "booking")]
    pub redis_sentinel_service: String,

    /// Redlock (opt-in): 3 or 5 independent Redis servers' URLs,
    /// comma-separated. The seat locks then need a majority of them; seat
    /// maps, Pub/Sub and streams stay on the shard's Redis. Unset: the
    /// seat locks live on the shard's Redis.
    #[arg(long, env = "REGION_REDLOCK_URLS", value_delimiter = ',')]
    pub redlock_urls: Vec<String>,

    /// Negative-control switch for tests ONLY: Redlock grants a lock with
    /// this many servers instead of a majority. Never set in production.
    #[arg(long, env = "REGION_UNSAFE_REDLOCK_QUORUM", hide = true)]
    pub unsafe_redlock_quorum: Option<usize>,

    /// Short shard code, used in keys and booking numbers.
    #[arg(long, env = "REGION_SHARD_CODE", default_value = "dev")]
    pub shard_code: String,

    /// This replica's name among its shard's replicas: it holds leases
    /// and reads its own event-stream entries under it, so keep it stable
    /// across restarts (a pod name). Empty: `<host>-<pid>`.
    #[arg(long, env = "REGION_REPLICA_ID", default_value = "")]
    pub replica_id: String,

    /// How long a once-per-shard job's lease lasts without renewal, in
    /// milliseconds: a dead leader's job is taken over after at most this
    /// plus `REGION_LEASE_RENEW_MS`.
    #[arg(long, env = "REGION_LEASE_TTL_MS", default_value_t = 5000)]
    pub lease_ttl_ms: u64,

    /// How often leases are renewed (and, by the others, asked for), in
    /// milliseconds; well under the TTL.
    #[arg(long, env = "REGION_LEASE_RENEW_MS", default_value_t = 1000)]
    pub lease_renew_ms: u64,

    /// How often each replica reads the shard's hold path (Redis or
    /// Postgres alone) and reports its link to Redis, in milliseconds.
    #[arg(long, env = "REGION_PATH_SYNC_MS", default_value_t = 100)]
    pub path_sync_ms: u64,

    /// HS256 key that user and operator JWTs are verified with.
    #[command(flatten)]
    pub signing: SigningKey,

    /// How long a hold keeps its seats, in seconds.
    #[arg(long, env = "REGION_HOLD_TTL_SECS", default_value_t = 600)]
    pub hold_ttl_secs: u64,

    /// How much the one allowed extension adds, in seconds.
    #[arg(long, env = "REGION_HOLD_EXTENSION_SECS", default_value_t = 300)]
    pub hold_extension_secs: u64,

    /// Most seats one hold may take.
    #[arg(long, env = "REGION_MAX_SEATS_PER_HOLD", default_value_t = 10)]
    pub max_seats_per_hold: usize,

    /// How often the expiry sweeper runs, in milliseconds.
    #[arg(long, env = "REGION_SWEEP_INTERVAL_MS", default_value_t = 1000)]
    pub sweep_interval_ms: u64,

    /// Group-commit writers (each owns a share of the shows).
    #[arg(long, env = "REGION_HOLD_WRITERS", default_value_t = 2)]
    pub hold_writers: usize,

    /// Most holds one group commit may carry.
    #[arg(long, env = "REGION_HOLD_BATCH_MAX", default_value_t = 256)]
    pub hold_batch_max: usize,

    /// How long a writer waits for more holds before committing a batch
    /// that is not full, in microseconds (0: write at once).
    #[arg(long, env = "REGION_HOLD_BATCH_LINGER_US", default_value_t = 2500)]
    pub hold_batch_linger_us: u64,

    /// Holds waiting for a writer before new ones get 503.
    #[arg(long, env = "REGION_HOLD_QUEUE", default_value_t = 8192)]
    pub hold_queue: usize,

    /// Group-commit writers for each of the checkout's two writes (the
    /// payment before the charge, the confirmation after it); each holds
    /// at most one connection. One is fastest while a batch is written
    /// with one statement per step: a batch of fifty costs little more
    /// than a batch of five, and a second writer only splits batches and
    /// adds commits (docs/BENCHMARKS.md).
    #[arg(long, env = "REGION_CHECKOUT_WRITERS", default_value_t = 1)]
    pub checkout_writers: usize,

    /// Most checkouts one group commit may carry.
    #[arg(long, env = "REGION_CHECKOUT_BATCH_MAX", default_value_t = 64)]
    pub checkout_batch_max: usize,

    /// Checkout writes waiting for a writer (per kind) before new
    /// checkouts get 503 with `Retry-After`.
    #[arg(long, env = "REGION_CHECKOUT_QUEUE", default_value_t = 2048)]
    pub checkout_queue: usize,

    /// A Redis call slower than this counts as a failure, in milliseconds.
    #[arg(long, env = "REGION_REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// Consecutive Redis failures that open the circuit breaker.
    #[arg(long, env = "REGION_BREAKER_THRESHOLD", default_value_t = 3)]
    pub breaker_threshold: u32,

    /// How long the breaker stays open before probing Redis, in milliseconds.
    #[arg(long, env = "REGION_BREAKER_OPEN_MS", default_value_t = 1000)]
    pub breaker_open_ms: u64,

    /// Lifetime of a seat map rebuilt from Postgres, in seconds (bounds
    /// how long a lost update can leave the map stale).
    #[arg(long, env = "REGION_SEATMAP_TTL_SECS", default_value_t = 30)]
    pub seatmap_ttl_secs: u64,

    /// Live seat-map sockets (`GET /v1/shows/{id}/live`) one process
    /// serves; beyond it new ones get 503 with `Retry-After`.
    #[arg(long, env = "REGION_LIVE_MAX_SOCKETS", default_value_t = 20_000)]
    pub live_max_sockets: usize,

    /// How long a show's changes are gathered into one live delta, in
    /// milliseconds (a burst of holds costs few frames).
    #[arg(long, env = "REGION_LIVE_WINDOW_MS", default_value_t = 50)]
    pub live_window_ms: u64,

    /// Frames a live socket may fall behind before it is closed with the
    /// "resync" code (a slow viewer never slows the others).
    #[arg(long, env = "REGION_LIVE_BUFFER_FRAMES", default_value_t = 64)]
    pub live_buffer_frames: usize,

    /// While Redis is unreachable, live viewers get a snapshot from
    /// Postgres this often, in milliseconds.
    #[arg(long, env = "REGION_LIVE_DEGRADED_SNAPSHOT_MS", default_value_t = 3000)]
    pub live_degraded_snapshot_ms: u64,

    /// Pings to live sockets this often, in seconds; a peer that has not
    /// answered (any frame) for two intervals is closed.
    #[arg(long, env = "REGION_LIVE_PING_SECS", default_value_t = 15)]
    pub live_ping_secs: u64,

    /// Keys that admission passes from the edge's waiting room are signed
    /// with (comma-separated; the first signs, all verify, for rotation).
    /// Holds on flash-sale shows need a valid pass.
    #[arg(
        long,
        env = "REGION_ADMISSION_KEYS",
        default_value = "dev-only-admission-key-change-me",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admission_keys: Vec<String>,

    /// The payment gateway's base URL.
    #[arg(
        long,
        env = "REGION_GATEWAY_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub gateway_url: String,

    /// The payment gateway's secret API key.
    #[arg(
        long,
        env = "REGION_GATEWAY_API_KEY",
        default_value = "sk_sandbox_local"
    )]
    pub gateway_api_key: String,

    /// The secret gateway webhooks are signed with.
    #[arg(
        long,
        env = "REGION_GATEWAY_WEBHOOK_SECRET",
        default_value = "whsec_sandbox_local"
    )]
    pub gateway_webhook_secret: String,

    /// A gateway call slower than this has an unknown outcome (retried
    /// later with the same idempotency key), in milliseconds.
    #[arg(long, env = "REGION_GATEWAY_TIMEOUT_MS", default_value_t = 10_000)]
    pub gateway_timeout_ms: u64,

    /// The global catalog service (`region-core catalog`), e.g.
    /// `http://catalog.internal:8070`. Set, titles are global: creating
    /// one here creates it there, and a show's title must be in it. Unset,
    /// the shard keeps its own titles (one-city installs, tests).
    #[arg(long, env = "REGION_CATALOG_URL")]
    pub catalog_url: Option<String>,

    /// The edge's Upstash REST endpoint (the Worker's
    /// `UPSTASH_REDIS_REST_URL`). Set, every catalog write made here bumps
    /// the edge's catalog version keys, so the edge's cached reads of the
    /// city go stale at once whichever door the write came through
    /// (`crate::edge_cache`). Unset, only writes through the edge do.
    #[arg(long, env = "REGION_EDGE_UPSTASH_URL")]
    pub edge_upstash_url: Option<String>,

    /// The bearer token of `REGION_EDGE_UPSTASH_URL`.
    #[arg(long, env = "REGION_EDGE_UPSTASH_TOKEN", default_value = "")]
    pub edge_upstash_token: String,

    /// The Worker's `KEY_PREFIX`: put in front of the version keys.
    #[arg(long, env = "REGION_EDGE_KEY_PREFIX", default_value = "")]
    pub edge_key_prefix: String,

    /// A global catalog call slower than this fails with 503, in
    /// milliseconds.
    #[arg(long, env = "REGION_CATALOG_TIMEOUT_MS", default_value_t = 3_000)]
    pub catalog_timeout_ms: u64,

    /// How long a checkout's Idempotency-Key stays locked by a request
    /// that may have crashed before a retry may resume it, in seconds.
    #[arg(long, env = "REGION_IDEMPOTENCY_LOCK_SECS", default_value_t = 30)]
    pub idempotency_lock_secs: u64,

    /// How often reconciliation runs, in seconds.
    #[arg(long, env = "REGION_RECONCILE_INTERVAL_SECS", default_value_t = 300)]
    pub reconcile_interval_secs: u64,

    /// Reconciliation leaves payments younger than this alone (their
    /// checkout may still be running), in seconds.
    #[arg(long, env = "REGION_RECONCILE_GRACE_SECS", default_value_t = 60)]
    pub reconcile_grace_secs: u64,

    /// How often the refund worker looks for due refunds, in milliseconds.
    #[arg(long, env = "REGION_REFUND_POLL_MS", default_value_t = 1000)]
    pub refund_poll_ms: u64,

    /// First retry delay of a failed refund, in milliseconds (doubles per
    /// attempt, with jitter).
    #[arg(long, env = "REGION_REFUND_BACKOFF_BASE_MS", default_value_t = 1000)]
    pub refund_backoff_base_ms: u64,

    /// Longest delay between refund attempts, in seconds.
    #[arg(long, env = "REGION_REFUND_BACKOFF_MAX_SECS", default_value_t = 3600)]
    pub refund_backoff_max_secs: u64,

    /// How often the outbox relay looks for unpublished events, in
    /// milliseconds (it is also woken by every commit that writes one).
    #[arg(long, env = "REGION_OUTBOX_POLL_MS", default_value_t = 500)]
    pub outbox_poll_ms: u64,

    /// Outbox events go to Redis Streams named `<prefix>:<city>`.
    #[arg(long, env = "REGION_EVENTS_STREAM_PREFIX", default_value = "events")]
    pub events_stream_prefix: String,

    /// Run the outbox relay and the notifier in this process.
    #[arg(long, env = "REGION_OUTBOX_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_relay: bool,

    /// Fault injection for tests ONLY: a checkout stops dead at this
    /// recovery point, as if the process crashed there.
    #[arg(long, env = "REGION_TEST_CRASH_AT", hide = true)]
    pub test_crash_at: Option<CrashPoint>,

    /// Negative-control switch for tests ONLY: turns off the Redis lock and
    /// the Postgres availability/version checks. Never set in production.
    #[arg(
        long,
        env = "REGION_UNSAFE_DISABLE_SEAT_PROTECTION",
        default_value_t = false,
        hide = true
    )]
    pub unsafe_disable_seat_protection: bool,

    /// Negative-control switch for tests ONLY: each replica switches
    /// between the Redis and the Postgres-only hold path on its own
    /// breaker, without the shard-wide switch. Never set in production.
    #[arg(
        long,
        env = "REGION_UNSAFE_UNCOORDINATED_REDIS_PATH",
        default_value_t = false,
        hide = true
    )]
    pub unsafe_uncoordinated_redis_path: bool,

    /// A client must send its whole request header within this many
    /// milliseconds, or the connection is closed (slow-client defence).
    #[arg(long, env = "REGION_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,

    /// A request body must arrive within this many milliseconds, or the
    /// request fails (slow-client defence).
    #[arg(long, env = "REGION_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_body_timeout_ms: u64,

    /// Failed authentications allowed per client address a minute (the
    /// burst too); more get 429 with Retry-After.
    #[arg(long, env = "REGION_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,

    /// Proxies whose `X-Forwarded-For` is believed when telling clients
    /// apart (comma-separated addresses or CIDRs; the edge's egress). The
    /// client is the first untrusted hop from the right.
    #[arg(long, env = "REGION_TRUSTED_PROXIES", default_value = "127.0.0.1,::1")]
    pub trusted_proxies: String,

    /// How long finished records are kept before the retention job trims
    /// them.
    #[command(flatten)]
    pub retention: RetentionSettings,

    #[command(flatten)]
    pub mail: MailSettings,

    /// Keys that sign tickets: `id:secret` pairs, comma-separated (ids
    /// 1-255; a secret is any string of 32 characters or more, the key
    /// its SHA-256). The first signs; every one listed verifies, so keys
    /// rotate by listing the new one first and dropping the old one later.
    #[arg(
        long,
        env = "REGION_TICKET_KEYS",
        default_value = "1:dev-only-ticket-key-change-me-0000000000"
    )]
    pub ticket_keys: String,
}

/// E-mail to buyers over SMTP (`crate::mail`).
#[derive(Debug, Clone, Args)]
pub struct MailSettings {
    /// The SMTP server, as a URL: `smtp://host:25` (plain, for a local
    /// catcher), `smtp://host:587?tls=required` (STARTTLS),
    /// `smtps://host:465` (TLS from the start); credentials as
    /// `smtps://user:password@host`. Unset: no e-mail is sent (what a
    /// buyer is told is still recorded and queued, and goes out once it
    /// is set).
    #[arg(long, env = "REGION_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The sender (`Name <address>`); its domain ends every Message-ID.
    #[arg(
        long,
        env = "REGION_MAIL_FROM",
        default_value = "Tickets <tickets@localhost>"
    )]
    pub mail_from: String,

    /// Where the buyer's pages are (the edge), for links in e-mail.
    #[arg(
        long,
        env = "REGION_PUBLIC_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub public_url: String,

    /// Messages sent at once (each its own SMTP exchange and transaction).
    #[arg(long, env = "REGION_MAIL_WORKERS", default_value_t = 4)]
    pub mail_workers: usize,

    /// How often the mailer looks for due messages, in milliseconds.
    #[arg(long, env = "REGION_MAIL_POLL_MS", default_value_t = 500)]
    pub mail_poll_ms: u64,

    /// First retry delay after a failed send, in milliseconds (doubles
    /// per attempt, with jitter).
    #[arg(long, env = "REGION_MAIL_BACKOFF_BASE_MS", default_value_t = 2000)]
    pub mail_backoff_base_ms: u64,

    /// Longest delay between attempts, in seconds.
    #[arg(long, env = "REGION_MAIL_BACKOFF_MAX_SECS", default_value_t = 600)]
    pub mail_backoff_max_secs: u64,

    /// Attempts before a message the server keeps refusing permanently
    /// (5xx) is given up (`failed`). Temporary failures (4xx, the server
    /// unreachable) are retried for as long as it takes.
    #[arg(long, env = "REGION_MAIL_MAX_PERMANENT_FAILURES", default_value_t = 3)]
    pub mail_max_permanent_failures: u32,
}

/// Horizons of the retention job (see `retention`): what is trimmed, and
/// after how long. Live records (a locked or unfinished idempotency key, an
/// unpublished event, an active hold or one a payment refers to) are never
/// trimmed, whatever the horizon.
#[derive(Debug, Clone, Args)]
pub struct RetentionSettings {
    /// How often the retention job runs, in seconds.
    #[arg(long, env = "REGION_RETENTION_INTERVAL_SECS", default_value_t = 600)]
    pub retention_interval_secs: u64,

    /// Finished idempotency keys are kept this long after completion, in
    /// hours (at least 24, as Stripe keeps them: a client may retry a day
    /// later and must get the first answer).
    #[arg(long, env = "REGION_RETENTION_IDEMPOTENCY_HOURS", default_value_t = 24)]
    pub idempotency_hours: u64,

    /// Published outbox events are kept this long after publication, in hours.
    #[arg(long, env = "REGION_RETENTION_OUTBOX_HOURS", default_value_t = 168)]
    pub outbox_hours: u64,

    /// Delivered notifications (and handled webhook ids) are kept this long,
    /// in hours.
    #[arg(
        long,
        env = "REGION_RETENTION_NOTIFICATIONS_HOURS",
        default_value_t = 2160
    )]
    pub notifications_hours: u64,

    /// Released and expired holds no payment refers to are kept this long
    /// after they ended, in hours.
    #[arg(long, env = "REGION_RETENTION_HOLDS_HOURS", default_value_t = 168)]
    pub holds_hours: u64,

    /// Most rows one delete statement removes (short transactions, no long
    /// locks on busy tables).
    #[arg(long, env = "REGION_RETENTION_BATCH", default_value_t = 1000)]
    pub retention_batch: i64,
}

/// The `--jwt-secret` argument, shared with the tools that mint tokens.
pub use service_kit::SigningKey;

/// Where a test may make a checkout stop dead, as if the process crashed
/// (only honoured in builds with the `fault-injection` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPoint {
    /// Key and payment row committed; the gateway not yet called.
    AfterPaymentCreated,
    /// The gateway charged; nothing recorded yet.
    AfterGatewayCharge,
    /// Settled and committed; the response never sent.
    AfterSettle,
}

impl Settings {
    /// Defaults plus environment, as the binary would read them.
    pub fn from_env() -> anyhow::Result<Self> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }
        let w = <Wrapper as clap::Parser>::try_parse_from(["region-core"])?;
        w.settings.validate()?;
        Ok(w.settings)
    }

    /// Checks values that clap's types cannot.
    // About 100 lines on purpose: one `check` per setting, in the order
    // of the fields above, so a new setting's rule goes next to its
    // neighbours'; nothing here branches.
    pub fn validate(&self) -> anyhow::Result<()> {
        let check = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("invalid configuration: {msg}"))
            }
        };
        check(
            self.edge_upstash_url.is_none() || !self.edge_upstash_token.is_empty(),
            "REGION_EDGE_UPSTASH_URL needs REGION_EDGE_UPSTASH_TOKEN",
        )?;
        check(
            self.hold_ttl_secs >= 1,
            "REGION_HOLD_TTL_SECS must be at least 1",
        )?;
        check(
            (1..=100).contains(&self.max_seats_per_hold),
            "REGION_MAX_SEATS_PER_HOLD must be 1..=100",
        )?;
        check(
            self.hold_writers >= 1,
            "REGION_HOLD_WRITERS must be at least 1",
        )?;
        check(
            self.hold_batch_max >= 1,
            "REGION_HOLD_BATCH_MAX must be at least 1",
        )?;
        check(self.hold_queue >= 1, "REGION_HOLD_QUEUE must be at least 1")?;
        check(
            self.checkout_writers >= 1,
            "REGION_CHECKOUT_WRITERS must be at least 1",
        )?;
        check(
            self.checkout_batch_max >= 1,
            "REGION_CHECKOUT_BATCH_MAX must be at least 1",
        )?;
        check(
            self.checkout_queue >= 1,
            "REGION_CHECKOUT_QUEUE must be at least 1",
        )?;
        check(
            self.db_pool_size >= 4,
            "REGION_DB_POOL_SIZE must be at least 4",
        )?;
        check(
            self.breaker_threshold >= 1,
            "REGION_BREAKER_THRESHOLD must be at least 1",
        )?;
        check(
            self.signing.jwt_secret.len() >= 16,
            "REGION_JWT_SECRET must be at least 16 bytes",
        )?;
        check(
            self.redlock_urls.is_empty() || matches!(self.redlock_urls.len(), 3 | 5),
            "REGION_REDLOCK_URLS must name 3 or 5 Redis servers (or be unset)",
        )?;
        check(
            self.unsafe_redlock_quorum.is_none()
                || (cfg!(feature = "negative-control") && !self.redlock_urls.is_empty()),
            "REGION_UNSAFE_REDLOCK_QUORUM needs REGION_REDLOCK_URLS and a build with the negative-control feature (tests only)",
        )?;
        check(
            !self.unsafe_disable_seat_protection || cfg!(feature = "negative-control"),
            "REGION_UNSAFE_DISABLE_SEAT_PROTECTION needs a build with the negative-control feature (tests only)",
        )?;
        check(
            !self.admission_keys.is_empty() && self.admission_keys.iter().all(|k| k.len() >= 16),
            "REGION_ADMISSION_KEYS must hold at least one key, each at least 16 bytes",
        )?;
        check(
            self.test_crash_at.is_none() || cfg!(feature = "fault-injection"),
            "REGION_TEST_CRASH_AT needs a build with the fault-injection feature (tests only)",
        )?;
        check(
            self.gateway_url.starts_with("http://") || self.gateway_url.starts_with("https://"),
            "REGION_GATEWAY_URL must be an http(s) URL",
        )?;
        check(
            self.gateway_timeout_ms >= 1,
            "REGION_GATEWAY_TIMEOUT_MS must be at least 1",
        )?;
        check(
            self.idempotency_lock_secs * 1000 > self.gateway_timeout_ms,
            "REGION_IDEMPOTENCY_LOCK_SECS must outlast REGION_GATEWAY_TIMEOUT_MS",
        )?;
        check(
            self.reconcile_interval_secs >= 1,
            "REGION_RECONCILE_INTERVAL_SECS must be at least 1",
        )?;
        check(
            self.refund_backoff_base_ms >= 1 && self.refund_backoff_max_secs >= 1,
            "REGION_REFUND_BACKOFF_BASE_MS and REGION_REFUND_BACKOFF_MAX_SECS must be at least 1",
        )?;
        check(
            self.gateway_webhook_secret.len() >= 8,
            "REGION_GATEWAY_WEBHOOK_SECRET must be at least 8 bytes",
        )?;
        check(
            !self.shard_code.is_empty()
                && self.shard_code.len() <= 8
                && self.shard_code.bytes().all(|b| b.is_ascii_alphanumeric()),
            "REGION_SHARD_CODE must be 1-8 ASCII letters or digits",
        )?;
        check(
            self.lease_renew_ms >= 10 && self.lease_ttl_ms >= 3 * self.lease_renew_ms,
            "REGION_LEASE_TTL_MS must be at least three REGION_LEASE_RENEW_MS (at least 10)",
        )?;
        check(
            self.path_sync_ms >= 10,
            "REGION_PATH_SYNC_MS must be at least 10",
        )?;
        check(
            self.replica_id.len() <= 64
                && self
                    .replica_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "REGION_REPLICA_ID must be at most 64 letters, digits, '-', '_' or '.'",
        )?;
        check(
            self.http_header_timeout_ms >= 100 && self.http_body_timeout_ms >= 100,
            "REGION_HTTP_HEADER_TIMEOUT_MS and REGION_HTTP_BODY_TIMEOUT_MS must be at least 100",
        )?;
        check(
            self.auth_failures_per_minute >= 1,
            "REGION_AUTH_FAILURES_PER_MINUTE must be at least 1",
        )?;
        self.trusted_proxy_list()?;
        let r = &self.retention;
        check(
            r.idempotency_hours >= 24,
            "REGION_RETENTION_IDEMPOTENCY_HOURS must be at least 24 (clients retry a day later)",
        )?;
        check(
            r.retention_interval_secs >= 1 && r.retention_batch >= 1,
            "REGION_RETENTION_INTERVAL_SECS and REGION_RETENTION_BATCH must be at least 1",
        )?;
        check(
            r.outbox_hours >= 1 && r.notifications_hours >= 1 && r.holds_hours >= 1,
            "REGION_RETENTION_OUTBOX_HOURS, _NOTIFICATIONS_HOURS and _HOLDS_HOURS must be at least 1",
        )?;
        let m = &self.mail;
        check(
            m.mail_workers >= 1 && m.mail_poll_ms >= 1 && m.mail_backoff_base_ms >= 1,
            "REGION_MAIL_WORKERS, REGION_MAIL_POLL_MS and REGION_MAIL_BACKOFF_BASE_MS must be at least 1",
        )?;
        check(
            (m.public_url.starts_with("https://") || m.public_url.starts_with("http://"))
                && !m.public_url.contains(['"', '\'', '<', '>', ' ']),
            "REGION_PUBLIC_URL must be an http(s) URL (it goes into e-mail links as is)",
        )?;
        Ok(())
    }

    /// The parsed `REGION_TRUSTED_PROXIES`.
    pub fn trusted_proxy_list(&self) -> anyhow::Result<Vec<shared::client_ip::Cidr>> {
        shared::client_ip::parse_list(&self.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("invalid configuration: REGION_TRUSTED_PROXIES: {e}"))
    }

    /// The replica's name: `REGION_REPLICA_ID`, else `<host>-<pid>-<salt>`.
    pub fn replica_name(&self) -> String {
        if !self.replica_id.is_empty() {
            return self.replica_id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "region-core".into());
        // Two replicas in one process (tests) still differ.
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() & 0xffff);
        format!("{host}-{}-{salt:04x}", std::process::id())
    }

    /// A hold's lifetime.
    pub fn hold_ttl(&self) -> Duration {
        Duration::from_secs(self.hold_ttl_secs)
    }

    /// How long a crashed request's idempotency-key lock lasts.
    pub fn idempotency_lock(&self) -> Duration {
        Duration::from_secs(self.idempotency_lock_secs)
    }

    /// Gateway call timeout.
    pub fn gateway_timeout(&self) -> Duration {
        Duration::from_millis(self.gateway_timeout_ms)
    }

    /// Redis call timeout.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}
