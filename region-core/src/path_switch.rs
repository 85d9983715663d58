//! The shard-wide switch between the Redis fast path and the
//! Postgres-only path, so that the replicas of a shard never take holds
//! through both at once (docs/adr/0016-replicas-leases-and-the-redis-path.md).
//!
//! The state is one row in the shard's Postgres (`redis_path_state`): a
//! generation, even while holds go through Redis, odd while they go to
//! Postgres alone.
//!
//! - A replica whose breaker opens switches the shard to Postgres alone
//!   ([`mark_down`]) before it writes a hold that way.
//! - Every replica reads the generation every `REGION_PATH_SYNC_MS` and
//!   follows it (`RedisPath::observe_generation`), and every replica
//!   reports whether it reaches Redis (`replica_redis_links`).
//! - Only the leader of the `redis-path` lease switches back
//!   ([`bring_up`]), once every live replica reaches Redis: it re-asserts
//!   the live holds from Postgres and bumps the generation in one
//!   transaction that holds the switch's lock exclusively.
//! - Every hold batch takes that lock shared and reads the generation
//!   ([`lock_shared`]); a hold is written only if the path it took is the
//!   generation's (a hold locked in Redis in the generation now current,
//!   or a Postgres-only hold while the shard is on Postgres alone).
//!   Others are sent back to try again on the current path.
//!
//! So a switch waits for the batches in flight, the batches after it see
//! it, the re-assertion sees every hold written on the Postgres-only path,
//! and no Redis-path hold commits while the shard is on Postgres alone.

use crate::lease::{Leadership, Term};
use crate::redis_path::RedisPath;
use shared::breaker::State as BreakerState;
use sqlx::{PgConnection, PgPool};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Advisory-lock key of the switch ("pathsw"). Transaction-scoped
/// (`pg_advisory_xact_lock*`), so it is safe through any pool or proxy.
const SWITCH_LOCK: i64 = 0x7061_7468_7377;

/// A replica's link report older than this is not counted (a replica
/// that stopped).
pub const LINK_FRESH_SECS: f64 = 5.0;

/// How often a replica reports its link when nothing changes.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Least time between two attempts of the leader to switch back.
const BRING_UP_EVERY: Duration = Duration::from_millis(500);

/// Whether a generation is on the fast path.
pub fn is_fast(generation: i64) -> bool {
    generation % 2 == 0
}

/// The shard's generation.
pub async fn read(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!("SELECT generation FROM redis_path_state")
        .fetch_one(db)
        .await
}

/// Takes the switch's lock shared for the rest of the caller's
/// transaction and reads the generation (two statements: the read's
/// snapshot must come after the lock is granted).
pub async fn lock_shared(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query!("SELECT pg_advisory_xact_lock_shared($1)", SWITCH_LOCK)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar!("SELECT generation FROM redis_path_state")
        .fetch_one(&mut *conn)
        .await
}

/// Switches the shard to the Postgres-only path (if it is not there
/// already) once the batches in flight have committed. Returns the
/// generation now current.
pub async fn mark_down(db: &PgPool, replica: &str, reason: &str) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", SWITCH_LOCK)
        .execute(&mut *tx)
        .await?;
    let switched = sqlx::query_scalar!(
        "UPDATE redis_path_state
            SET generation = generation + 1, changed_at = now(), changed_by = $1, reason = $2
          WHERE generation % 2 = 0
          RETURNING generation",
        replica,
        reason
    )
    .fetch_optional(&mut *tx)
    .await?;
    let generation = match switched {
        Some(g) => {
            tracing::warn!(
                generation = g,
                %reason,
                "the shard switched to the Postgres-only hold path"
            );
            metrics::counter!("redis_path_switches_total", "to" => "postgres_only").increment(1);
            g
        }
        None => {
            sqlx::query_scalar!("SELECT generation FROM redis_path_state")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    tx.commit().await?;
    Ok(generation)
}

/// What [`bring_up`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BringUp {
    /// Switched back to the fast path: this generation.
    Up(i64),
    /// It was on the fast path already.
    AlreadyUp(i64),
    /// Not yet: these replicas do not reach Redis.
    LinksDown(Vec<String>),
}

/// The leader's switch back to the fast path: with the switch's lock held
/// exclusively (no hold batch in flight), fenced by the `redis-path`
/// lease, it checks that every live replica reaches Redis, re-asserts the
/// live holds and booked seats from Postgres, and bumps the generation.
pub async fn bring_up(
    db: &PgPool,
    redis: &RedisPath,
    term: &Term,
    replica: &str,
) -> anyhow::Result<BringUp> {
    let mut tx = db.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", SWITCH_LOCK)
        .execute(&mut *tx)
        .await?;
    term.fence(&mut tx).await?;
    let generation = sqlx::query_scalar!("SELECT generation FROM redis_path_state FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    if is_fast(generation) {
        return Ok(BringUp::AlreadyUp(generation));
    }
    let down = sqlx::query_scalar!(
        "SELECT replica FROM replica_redis_links
          WHERE NOT ok AND seen_at > now() - make_interval(secs => $1)
          ORDER BY replica",
        LINK_FRESH_SECS
    )
    .fetch_all(&mut *tx)
    .await?;
    if !down.is_empty() {
        return Ok(BringUp::LinksDown(down));
    }
    // Other connections read the holds: every batch that could write one
    // is waiting on our lock, so what they read is complete.
    let seats = crate::recovery::reassert(db, redis, None).await?;
    let generation = sqlx::query_scalar!(
        "UPDATE redis_path_state
            SET generation = generation + 1, changed_at = now(), changed_by = $1,
                reason = 'every replica reaches redis; live holds re-asserted'
          RETURNING generation",
        replica
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("redis_path_switches_total", "to" => "redis").increment(1);
    metrics::counter!("redis_recoveries_total").increment(1);
    tracing::info!(
        generation,
        seats,
        "live holds re-asserted; the shard is back on the Redis fast path"
    );
    Ok(BringUp::Up(generation))
}

/// Records whether this replica reaches Redis.
pub async fn report_link(db: &PgPool, replica: &str, ok: bool) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO replica_redis_links (replica, ok, seen_at) VALUES ($1, $2, now())
         ON CONFLICT (replica) DO UPDATE SET ok = EXCLUDED.ok, seen_at = EXCLUDED.seen_at",
        replica,
        ok
    )
    .execute(db)
    .await?;
    Ok(())
}

/// One replica's side of the switch.
pub struct Follower {
    db: PgPool,
    redis: RedisPath,
    leadership: Leadership,
    replica: String,
    reported: Option<(bool, Instant)>,
    last_bring_up: Option<Instant>,
}

impl Follower {
    /// This replica (`REGION_REPLICA_ID`) following the shard's switch;
    /// it switches back only while it leads `leadership`.
    pub fn new(db: PgPool, redis: RedisPath, leadership: Leadership, replica: String) -> Self {
        Self {
            db,
            redis,
            leadership,
            replica,
            reported: None,
            last_bring_up: None,
        }
    }

    /// Follows the switch every `every` until `shutdown` flips.
    pub async fn run(mut self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self.step().await {
                tracing::debug!(error = %e, "path switch step failed; will retry");
            }
        }
        // Stopping: this replica's link no longer counts.
        let _ = sqlx::query!(
            "DELETE FROM replica_redis_links WHERE replica = $1",
            &self.replica
        )
        .execute(&self.db)
        .await;
    }

    /// Reads the generation, reports the link, switches the shard to
    /// Postgres alone if this replica lost Redis, and, leading, switches
    /// it back when every replica reaches Redis.
    pub async fn step(&mut self) -> anyhow::Result<()> {
        let generation = read(&self.db).await?;
        self.redis.observe_generation(generation);
        if is_fast(generation) {
            match self.redis.breaker_state() {
                BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                    self.report(false).await?;
                    let reason = format!("{} cannot reach redis", self.replica);
                    let g = mark_down(&self.db, &self.replica, &reason).await?;
                    self.redis.observe_generation(g);
                }
                // The leader re-asserted for everyone.
                BreakerState::Recovering => self.redis.finish_recovery(),
                BreakerState::Closed { .. } => self.report(true).await?,
            }
            return Ok(());
        }
        match self.redis.breaker_state() {
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                // Answers: Recovering, until the shard is switched back.
                self.redis.probe_if_due().await;
            }
            // No hold uses Redis now: a PING keeps the link's state true.
            BreakerState::Closed { .. } | BreakerState::Recovering => {
                let _ = self.redis.ping().await;
            }
        }
        let ok = matches!(
            self.redis.breaker_state(),
            BreakerState::Closed { .. } | BreakerState::Recovering
        );
        self.report(ok).await?;
        let due = self
            .last_bring_up
            .is_none_or(|at| at.elapsed() >= BRING_UP_EVERY);
        if let (true, true, Some(term)) = (ok, due, self.leadership.current()) {
            self.last_bring_up = Some(Instant::now());
            match bring_up(&self.db, &self.redis, &term, &self.replica).await {
                Ok(BringUp::Up(g) | BringUp::AlreadyUp(g)) => {
                    self.redis.observe_generation(g);
                    self.redis.finish_recovery();
                }
                Ok(BringUp::LinksDown(down)) => {
                    tracing::debug!(?down, "not switching back: replicas without redis");
                }
                // A Redis failure in the re-assertion has fed the breaker.
                Err(e) => {
                    tracing::warn!(error = %e, "switching back to the fast path failed; will retry");
                }
            }
        }
        Ok(())
    }

    async fn report(&mut self, ok: bool) -> Result<(), sqlx::Error> {
        let due = match self.reported {
            Some((was, at)) => was != ok || at.elapsed() >= REPORT_EVERY,
            None => true,
        };
        if due {
            report_link(&self.db, &self.replica, ok).await?;
            self.reported = Some((ok, Instant::now()));
        }
        Ok(())
    }
}
