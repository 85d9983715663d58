//! Builds and runs the region core: connects Postgres (running migrations)
//! and Redis, spawns the hold writers, the expiry sweeper, the shard's
//! path switch (or, in the negative control, a replica's own Redis
//! recovery), the refund worker, the outbox relay and notifier,
//! reconciliation and the pools' sampler, and serves the HTTP API.
//! `Application::build` binds the listener first, so tests can ask for
//! port 0.

use crate::auth::{AuthFailures, TokenKeys};
use crate::catalog_client::CatalogClient;
use crate::checkout::jobs::CheckoutWriters;
use crate::checkout::settle;
use crate::config::Settings;
use crate::error::ApiError;
use crate::group_commit::Sizing;
use crate::holds::writer::{HoldWriters, WriterConfig};
use crate::lease::{Leadership, Lease};
use crate::outbox::redis_stream::{LazyRedis, RedisStreamSink};
use crate::payments::http::HttpGateway;
use crate::redis_locator::RedisLocator;
use crate::redis_path::RedisPath;
use crate::redlock::Redlock;
use crate::refunds::Backoff;
use crate::shows::ShowCache;
use crate::state::AppState;
use crate::{
    audit, bookings, catalog, checkins, checkout, diagnostics, health, holds, live, mail, notifier,
    outbox, path_switch, payments, pool_sampler, reconcile, recovery, refunds, reports, retention,
    sale_config, seat_map, show_cancel, sweeper, webhook,
};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use shared::breaker::{Breaker, BreakerSettings};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Largest request body accepted (hold and catalog bodies are small).
const BODY_LIMIT: usize = 256 * 1024;

/// The HTTP router over a built state.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(catalog::router())
        .merge(holds::router())
        .merge(checkout::router())
        .merge(bookings::router())
        .merge(checkins::router())
        .merge(webhook::router())
        .merge(reconcile::router())
        .merge(reports::router())
        .merge(diagnostics::router())
        .merge(mail::admin::router())
        .merge(show_cancel::router())
        .merge(audit::router())
        .merge(sale_config::router())
        .merge(notifier::router())
        .merge(seat_map::router())
        .merge(live::router())
        .merge(health::router())
        .fallback(|| async { ApiError::not_found("no_route", "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            Duration::from_millis(state.settings.http_body_timeout_ms),
        ))
        // After routing (`Router::layer` wraps each route), so the timer
        // sees the route's template; outside the body limit and timeout, so
        // it times their refusals too.
        .layer(axum::middleware::from_fn(crate::http_metrics::track))
        .layer(crate::http_log::layer())
        .with_state(state)
}

/// Connects to Postgres and applies pending migrations.
pub async fn connect_db(settings: &Settings) -> anyhow::Result<PgPool> {
    let db = PgPoolOptions::new()
        .max_connections(settings.db_pool_size)
        // A sale grows the pool to its maximum; give the connections back
        // within half a minute of it (sqlx keeps idle ones 10 min by
        // default), so the replicas KEDA adds for the next sale, and the
        // shard's other jobs, find Postgres' max_connections unspent.
        .idle_timeout(Duration::from_secs(30))
        .acquire_timeout(Duration::from_secs(3))
        .connect(&settings.database_url)
        .await
        .with_context(|| "connecting to REGION_DATABASE_URL".to_string())?;
    migrate(&db).await?;
    Ok(db)
}

/// The shard-wide path switch's own connections (its lease, the follower,
/// and the switch back, which holds the switch's lock on one connection
/// while it re-asserts holds on another).
async fn connect_coordination_db(settings: &Settings) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&settings.database_url)
        .await
        .with_context(|| "connecting the path switch to REGION_DATABASE_URL".to_string())
}

/// The group-commit writers' own connections, one per writer, outside
/// the request pool. A request may hold a pooled connection while it
/// waits for a writer (a flash-sale hold keeps its per-user lock so); if
/// the writers drew from that pool, enough such requests would leave
/// them none, and everything would wait for the acquire timeout.
pub async fn connect_writer_db(settings: &Settings) -> anyhow::Result<PgPool> {
    let writers = settings.hold_writers + 2 * settings.checkout_writers;
    PgPoolOptions::new()
        .max_connections(writers as u32)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&settings.database_url)
        .await
        .with_context(|| "connecting the writers to REGION_DATABASE_URL".to_string())
}

/// Applies the migrations in `migrations/` (the only way the schema changes).
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(db)
        .await
        .context("running migrations")
}

/// A built, listening region core.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
}

/// Where the shard's Redis is: through Sentinel when sentinels are set,
/// else at `REGION_REDIS_URL`.
fn redis_locator(settings: &Settings) -> anyhow::Result<RedisLocator> {
    if settings.redis_sentinels.is_empty() {
        return RedisLocator::fixed(&settings.redis_url).context("configuring REGION_REDIS_URL");
    }
    RedisLocator::sentinel(
        &settings.redis_sentinels,
        &settings.redis_sentinel_service,
        settings.redis_timeout().max(Duration::from_millis(500)),
    )
    .context("configuring REGION_REDIS_SENTINELS")
}

/// Redlock's lock servers, when `REGION_REDLOCK_URLS` names them.
fn redlock(settings: &Settings) -> anyhow::Result<Option<Redlock>> {
    if settings.redlock_urls.is_empty() {
        return Ok(None);
    }
    // A server that forgot its locks is trusted again once the longest
    // lock (a hold with its one extension) could have expired.
    let window = settings.hold_ttl()
        + Duration::from_secs(settings.hold_extension_secs)
        + Duration::from_secs(1);
    let redlock = Redlock::new(&settings.redlock_urls, settings.redis_timeout())
        .context("configuring REGION_REDLOCK_URLS")?
        .with_recovery_window(window);
    tracing::info!(
        servers = redlock.len(),
        quorum = redlock.quorum(),
        "seat locks through Redlock"
    );
    Ok(Some(match settings.unsafe_redlock_quorum {
        Some(q) => redlock.with_unsafe_quorum(q),
        None => redlock,
    }))
}

/// The Redis breaker from the settings.
fn redis_breaker(settings: &Settings) -> Breaker {
    Breaker::new(BreakerSettings {
        failures: settings.breaker_threshold,
        open_ms: settings.breaker_open_ms,
        // The probe is one PING awaited in place: lost only if it
        // outlives its own timeout.
        probe_timeout_ms: u64::try_from(settings.redis_timeout().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(4),
    })
}

/// Starts the shard's background work (expiry sweeper, the path switch
/// on `coordination`'s connections when replicas coordinate, refund
/// worker, outbox relay and notifier when enabled, retention);
/// reconciliation starts later, as it needs the whole state.
fn spawn_workers(
    settings: &Settings,
    (db, coordination): (&PgPool, Option<&PgPool>),
    (redis, locator): (&RedisPath, &RedisLocator),
    gateway: &Arc<dyn payments::PaymentGateway>,
    (outbox_kick, refund_kick): (&Arc<Notify>, &Arc<Notify>),
    tickets: &Arc<crate::tickets::TicketKeys>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut background = vec![
        tokio::spawn(sweeper::run(
            db.clone(),
            redis.clone(),
            Duration::from_millis(settings.sweep_interval_ms),
            shutdown.clone(),
        )),
        tokio::spawn(refunds::run(
            db.clone(),
            gateway.clone(),
            Backoff {
                base: Duration::from_millis(settings.refund_backoff_base_ms),
                max: Duration::from_secs(settings.refund_backoff_max_secs),
            },
            refund_kick.clone(),
            outbox_kick.clone(),
            Duration::from_millis(settings.refund_poll_ms),
            shutdown.clone(),
        )),
    ];
    if let Some(db) = coordination {
        // One replica leads the switch back to the fast path; every one
        // follows the shard's path and reports its link.
        let (leadership, renewer) = Leadership::spawn(
            Lease::new(
                db.clone(),
                "redis-path",
                &settings.replica_id,
                Duration::from_millis(settings.lease_ttl_ms),
            ),
            Duration::from_millis(settings.lease_renew_ms),
            shutdown.clone(),
        );
        background.push(renewer);
        let follower = path_switch::Follower::new(
            db.clone(),
            redis.clone(),
            leadership,
            settings.replica_id.clone(),
        );
        background.push(tokio::spawn(follower.run(
            Duration::from_millis(settings.path_sync_ms),
            shutdown.clone(),
        )));
    } else {
        // The negative control: each replica recovers on its own.
        background.push(tokio::spawn(recovery::run(
            db.clone(),
            redis.clone(),
            shutdown.clone(),
        )));
    }
    if settings.outbox_relay {
        let timeout = settings.redis_timeout().max(Duration::from_millis(500));
        let sink =
            RedisStreamSink::located(locator.clone(), &settings.events_stream_prefix, timeout);
        background.push(tokio::spawn(outbox::run(
            db.clone(),
            Arc::new(sink),
            outbox_kick.clone(),
            Duration::from_millis(settings.outbox_poll_ms),
            shutdown.clone(),
        )));
        background.push(tokio::spawn(notifier::run(
            db.clone(),
            LazyRedis::located(locator.clone(), timeout),
            settings.events_stream_prefix.clone(),
            format!("core-{}-{}", settings.shard_code, settings.replica_id),
            shutdown.clone(),
        )));
    }
    // Every replica sends mail: the workers claim rows, never the same.
    background.push(tokio::spawn(mail::run(
        db.clone(),
        settings.mail.clone(),
        tickets.clone(),
        shutdown.clone(),
    )));
    background.push(tokio::spawn(retention::run(
        db.clone(),
        settings.retention.clone(),
        shutdown.clone(),
    )));
    background
}

impl Application {
    /// Connects, migrates, spawns background work and binds the listener.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        settings.replica_id = settings.replica_name();
        // Checked here, not in `config` (which depends on nothing of the
        // crate): the modules that use them parse them.
        mail::sender_domain(&settings.mail.mail_from)
            .map_err(|e| anyhow::anyhow!("invalid configuration: REGION_MAIL_FROM: {e}"))?;
        health::install_metrics();
        if settings.unsafe_disable_seat_protection {
            tracing::error!(
                "SEAT PROTECTION IS DISABLED (negative-control mode): double bookings are possible"
            );
        }
        let db = connect_db(&settings).await?;
        let writer_db = connect_writer_db(&settings).await?;
        let locator = redis_locator(&settings)?;
        let redis = RedisPath::new(
            locator.clone(),
            redlock(&settings)?,
            settings.redis_timeout(),
            redis_breaker(&settings),
        )
        .await
        .context("configuring REGION_REDIS_URL")?;
        if !settings.unsafe_uncoordinated_redis_path {
            redis.coordinate(path_switch::read(&db).await?);
        }
        let writers = HoldWriters::spawn(
            writer_db.clone(),
            redis.clone(),
            WriterConfig {
                writers: settings.hold_writers,
                batch_max: settings.hold_batch_max,
                queue: settings.hold_queue,
                protect: !settings.unsafe_disable_seat_protection,
                linger: Duration::from_micros(settings.hold_batch_linger_us),
            },
        );
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("binding REGION_LISTEN={}", settings.listen))?;
        let gateway: Arc<dyn payments::PaymentGateway> = Arc::new(
            HttpGateway::new(
                &settings.gateway_url,
                &settings.gateway_api_key,
                settings.gateway_timeout(),
            )
            .context("configuring REGION_GATEWAY_URL")?,
        );
        let outbox_kick = Arc::new(Notify::new());
        let refund_kick = Arc::new(Notify::new());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let tickets = Arc::new(
            crate::tickets::TicketKeys::parse(&settings.ticket_keys)
                .map_err(|e| anyhow::anyhow!("invalid configuration: REGION_TICKET_KEYS: {e}"))?,
        );
        // The path switch's own connections: in a sale at capacity the
        // holds take every pooled connection, and a switch back (or a lease
        // renewal) waiting behind them kept the shard off Redis for 15-25 s
        // (`loadgen isolation`).
        let coordination = if redis.coordinated() {
            Some(connect_coordination_db(&settings).await?)
        } else {
            None
        };
        let mut pools = vec![
            (pool_sampler::MAIN, db.clone()),
            (pool_sampler::WRITERS, writer_db.clone()),
        ];
        if let Some(c) = &coordination {
            pools.push((pool_sampler::COORDINATION, c.clone()));
        }
        let mut background = spawn_workers(
            &settings,
            (&db, coordination.as_ref()),
            (&redis, &locator),
            &gateway,
            (&outbox_kick, &refund_kick),
            &tickets,
            &shutdown_rx,
        );
        background.push(tokio::spawn(pool_sampler::run(
            pools,
            pool_sampler::SAMPLE_EVERY,
            shutdown_rx.clone(),
        )));
        let reconcile_every = Duration::from_secs(settings.reconcile_interval_secs);
        let settings = Arc::new(settings);
        let shows = ShowCache::default();
        let checkout = CheckoutWriters::spawn(
            writer_db,
            settle::Ctx {
                db: db.clone(),
                settings: settings.clone(),
                redis: redis.clone(),
                shows: shows.clone(),
                outbox_kick: outbox_kick.clone(),
                refund_kick: refund_kick.clone(),
            },
            Sizing {
                writers: settings.checkout_writers,
                batch_max: settings.checkout_batch_max,
                queue: settings.checkout_queue,
            },
        );
        let reconcile_lease = Lease::new(
            db.clone(),
            "reconcile",
            &settings.replica_id,
            Duration::from_millis(settings.lease_ttl_ms),
        );
        let catalog = match &settings.catalog_url {
            Some(url) => Some(CatalogClient::new(
                url,
                Duration::from_millis(settings.catalog_timeout_ms),
                TokenKeys::new(&settings.signing.jwt_secret),
            )?),
            None => None,
        };
        let edge_cache = match &settings.edge_upstash_url {
            Some(url) => Some(
                crate::edge_cache::EdgeCache::new(
                    url,
                    &settings.edge_upstash_token,
                    &settings.edge_key_prefix,
                    Duration::from_secs(2),
                )
                .context("configuring REGION_EDGE_UPSTASH_URL")?,
            ),
            None => None,
        };
        // Other replicas' catalog edits reach this one's show cache.
        background.push(tokio::spawn(crate::shows::follow_changes(
            db.clone(),
            shows.clone(),
            shutdown_rx.clone(),
        )));
        let state = AppState {
            catalog,
            edge_cache,
            tokens: TokenKeys::with_failure_limit(
                &settings.signing.jwt_secret,
                AuthFailures::new(
                    settings.auth_failures_per_minute,
                    settings.trusted_proxy_list()?,
                ),
            ),
            db,
            redis,
            writers,
            checkout,
            shows,
            live: Arc::default(),
            settings,
            gateway,
            outbox_kick,
            refund_kick,
            tickets,
            reconcile_lease,
        };
        // Resumes show cancellations a crash left RUNNING (any replica).
        let cancellations = show_cancel::job::Runner::of(&state);
        background.push(tokio::spawn(cancellations.run(shutdown_rx.clone())));
        background.push(tokio::spawn(reconcile::run(
            state.clone(),
            reconcile_every,
            shutdown_rx,
        )));
        Ok(Self {
            listener,
            state,
            shutdown_tx,
            background,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The shared state (tests inspect Redis and Postgres through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains in-flight requests
    /// and stops the background tasks.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, "region core listening");
        let app = router(self.state.clone());
        crate::serve::serve(
            self.listener,
            app,
            Duration::from_millis(self.state.settings.http_header_timeout_ms),
            shutdown,
        )
        .await;
        let _ = self.shutdown_tx.send(true);
        for h in self.background {
            let _ = h.await;
        }
        tracing::info!("region core stopped");
        Ok(())
    }

    /// Serves in a background task; the returned handle stops it.
    pub fn spawn(self) -> anyhow::Result<RunningApp> {
        let addr = self.local_addr()?;
        let state = self.state.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            if let Err(e) = self.run_until(stop).await {
                tracing::error!(error = ?e, "region core failed");
            }
        });
        Ok(RunningApp {
            addr,
            state,
            stop: Some(stop_tx),
            task,
        })
    }
}

/// A region core serving in the background.
pub struct RunningApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningApp {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the background tasks.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}
