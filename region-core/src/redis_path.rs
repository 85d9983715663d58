//! The Redis fast path: seat locks (one Lua script takes every seat of a
//! hold or none), compare-and-delete release, extension, and the seat-map
//! bitfield. Every call has a timeout and feeds the circuit breaker; when
//! the breaker is open callers use Postgres alone.
//!
//! With `REGION_REDLOCK_URLS` the seat locks (and only they) go to a
//! majority of independent servers instead (`crate::redlock`); the seat
//! maps stay on the shard's Redis. Callers see the same methods.
//!
//! Keys share the show's hash tag (`seat:{<show>}:A5`, `seatmap:{<show>}`)
//! so one show stays in one Redis Cluster slot and the multi-key script
//! remains valid when a shard's Redis grows into a cluster.

use crate::redis_locator::RedisLocator;
use crate::redlock::{NoQuorum, Redlock};
use redis::aio::ConnectionManager;
use redis::Script;
use shared::breaker::{Admission, Breaker, State as BreakerState};
use shared::{SeatState, ShowId};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicI8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

use shared::redis_scripts::{
    ACQUIRE_LUA, ASSERT_LUA, EXTEND_LUA, RELEASE_LUA, SEATMAP_DROP_LUA, SEATMAP_PUT_LUA,
    SEATMAP_SNAPSHOT_LUA, SEATMAP_UPDATE_LUA,
};

/// The Redis key of one seat of a show.
pub fn seat_key(show: ShowId, label: &str) -> String {
    format!("seat:{{{show}}}:{label}")
}

fn seat_keys(show: ShowId, labels: &[&str]) -> Vec<String> {
    labels.iter().map(|l| seat_key(show, l)).collect()
}

/// The value of a booked seat's key: the fast path refuses it like a held
/// one, and only the booking's cancellation deletes it.
pub fn booked_value(booking: Uuid) -> String {
    format!("booked:{booking}")
}

/// The Redis key of a show's seat-map bitfield.
pub fn seatmap_key(show: ShowId) -> String {
    format!("seatmap:{{{show}}}")
}

/// The Redis key of a show's change counter: the sequence number of its
/// live seat map (`shared::live`), incremented with every map change.
pub fn seatmap_seq_key(show: ShowId) -> String {
    format!("seatmap:{{{show}}}:seq")
}

/// The Pub/Sub channel a show's numbered seat changes are published on
/// (one per show, so a replica only hears the shows its viewers watch).
pub fn live_channel(show: ShowId) -> String {
    format!("live:{{{show}}}")
}

/// How long an idle show's change counter is kept (30 days): long past
/// any show, short enough that old shows do not pile up. A counter that
/// expired starts again at 1, which viewers see as a gap and resync.
const SEQ_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// A show's seat map with the number of the last change it includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapAt {
    /// The bitfield (None: no map in Redis).
    pub map: Option<Vec<u8>>,
    /// The change number it includes up to.
    pub seq: u64,
}

/// Which breaker states allow a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Fast-path work: only while the breaker is closed.
    Closed,
    /// Clean-up and re-assertion: not while Redis is known to be down
    /// (fail fast), but yes while recovering.
    UnlessOpen,
}

/// Why a Redis call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    /// The breaker is open: Redis was not tried.
    #[error("redis circuit breaker is open")]
    BreakerOpen,
    /// No answer within the timeout.
    #[error("redis call timed out")]
    Timeout,
    /// Connection or protocol error.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redlock: no majority of the lock servers answered in time.
    #[error(transparent)]
    NoQuorum(#[from] NoQuorum),
}

/// Redis connection, scripts and circuit breaker of one shard.
#[derive(Clone)]
pub struct RedisPath {
    inner: Arc<Inner>,
}

struct Inner {
    locator: RedisLocator,
    /// The seat locks' servers when Redlock is on (else `locator`'s).
    redlock: Option<Redlock>,
    // std RwLock, not tokio's: it is only held to clone the handle, never
    // across an `.await`.
    conn: RwLock<Option<ConnectionManager>>,
    breaker: Mutex<Breaker>,
    /// Whether the shard's replicas switch paths together
    /// (`crate::path_switch`); false only for the negative control, where
    /// each follows its own breaker.
    coordinated: AtomicBool,
    /// The shard's path generation as last seen (even: the fast path is
    /// on; odd: Postgres alone). Only grows.
    generation: AtomicI64,
    /// The breaker's clock: monotonic milliseconds from here.
    epoch: Instant,
    /// The value last set on the `redis_path_active` gauge (-1: none yet),
    /// so the gauge is touched only when the path changes.
    path_gauge: AtomicI8,
    timeout: Duration,
    acquire: Script,
    release: Script,
    extend: Script,
    assert_hold: Script,
    seatmap_update: Script,
    seatmap_snapshot: Script,
    seatmap_put: Script,
}

impl RedisPath {
    /// Connects lazily: if Redis is down at start-up the breaker opens and
    /// the supervisor connects once it answers. With `redlock`, seat locks
    /// go to its servers.
    pub async fn new(
        locator: RedisLocator,
        redlock: Option<Redlock>,
        timeout: Duration,
        breaker: Breaker,
    ) -> anyhow::Result<Self> {
        let this = Self {
            inner: Arc::new(Inner {
                locator,
                redlock,
                conn: RwLock::new(None),
                breaker: Mutex::new(breaker),
                coordinated: AtomicBool::new(false),
                generation: AtomicI64::new(0),
                epoch: Instant::now(),
                path_gauge: AtomicI8::new(-1),
                timeout,
                acquire: Script::new(ACQUIRE_LUA),
                release: Script::new(RELEASE_LUA),
                extend: Script::new(EXTEND_LUA),
                assert_hold: Script::new(ASSERT_LUA),
                seatmap_update: Script::new(SEATMAP_UPDATE_LUA),
                seatmap_snapshot: Script::new(SEATMAP_SNAPSHOT_LUA),
                seatmap_put: Script::new(SEATMAP_PUT_LUA),
            }),
        };
        let reached = match this.connect().await {
            Ok(_) => this.ping_redlock().await,
            Err(e) => Err(e),
        };
        if let Err(e) = reached {
            tracing::warn!(error = %e, "redis unreachable at start-up; holds use Postgres until it answers");
            let now = this.now_ms();
            this.breaker().trip(now);
        }
        this.publish_path();
        Ok(this)
    }

    async fn connect(&self) -> Result<ConnectionManager, RedisFailure> {
        if let Some(c) = self.current_conn() {
            return Ok(c);
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.inner.timeout)
            .set_response_timeout(self.inner.timeout)
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(self.inner.timeout * 4, async {
            let client = self.inner.locator.client().await?;
            client.get_connection_manager_with_config(config).await
        })
        .await
        .map_err(|_| RedisFailure::Timeout)??;
        *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn current_conn(&self) -> Option<ConnectionManager> {
        self.inner
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.inner.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the breaker, then reports the path it leaves this replica on.
    fn update_breaker<R>(&self, change: impl FnOnce(&mut Breaker) -> R) -> R {
        let r = change(&mut self.breaker());
        self.publish_path();
        r
    }

    /// Sets `redis_path_active` (1: holds take the fast path here) when it
    /// changed. Called after every change of the breaker or of the shard's
    /// generation, the two things [`Self::fast_path_available`] reads. Two
    /// racing callers may leave the gauge one change behind; the next call
    /// (every Redis answer, every path sync of the follower) puts it right.
    fn publish_path(&self) {
        let active = i8::from(self.fast_path_available());
        if self.inner.path_gauge.swap(active, Ordering::SeqCst) != active {
            metrics::gauge!("redis_path_active").set(f64::from(active));
        }
    }

    /// Whether holds may take the fast path now: this replica reaches
    /// Redis and, when replicas coordinate, the shard is on the fast path.
    pub fn fast_path_available(&self) -> bool {
        self.breaker().is_closed() && self.shard_on_fast_path()
    }

    /// Follow the shard's path switch from now on, starting at
    /// `generation` (read from Postgres at start-up).
    pub fn coordinate(&self, generation: i64) {
        self.inner.generation.store(generation, Ordering::SeqCst);
        self.inner.coordinated.store(true, Ordering::SeqCst);
        self.publish_path();
    }

    /// Whether this replica follows the shard's path switch.
    pub fn coordinated(&self) -> bool {
        self.inner.coordinated.load(Ordering::SeqCst)
    }

    /// The shard's path generation as last seen.
    pub fn generation(&self) -> i64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// Records a generation read from Postgres (never goes back). A
    /// replica waiting in `Recovering` for the shard's switch back closes
    /// its breaker when it sees it: the leader re-asserted for everyone.
    pub fn observe_generation(&self, generation: i64) {
        let before = self
            .inner
            .generation
            .fetch_max(generation, Ordering::SeqCst);
        if generation > before
            && generation % 2 == 0
            && self.coordinated()
            && self.breaker_state() == BreakerState::Recovering
        {
            self.finish_recovery();
        }
        self.publish_path();
    }

    /// Whether the shard is on the fast path (always, uncoordinated).
    pub fn shard_on_fast_path(&self) -> bool {
        !self.coordinated() || self.generation() % 2 == 0
    }

    /// One PING through the breaker (a failure counts towards opening
    /// it): keeps this replica's view of its link honest while no hold
    /// uses Redis.
    pub async fn ping(&self) -> Result<(), RedisFailure> {
        self.run(Gate::UnlessOpen, |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await?;
        match &self.inner.redlock {
            Some(r) => self.quorum(Gate::UnlessOpen, r.ping()).await,
            None => Ok(()),
        }
    }

    /// Redlock: whether a majority of the lock servers answers a PING
    /// (not through the breaker). Ok without Redlock.
    async fn ping_redlock(&self) -> Result<(), RedisFailure> {
        match &self.inner.redlock {
            Some(r) => Ok(r.ping().await?),
            None => Ok(()),
        }
    }

    /// Whether the seat locks go through Redlock.
    pub fn redlock(&self) -> Option<&Redlock> {
        self.inner.redlock.as_ref()
    }

    /// The breaker's state (for health and tests).
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker().state()
    }

    fn allowed(&self, gate: Gate) -> bool {
        matches!(
            (gate, self.breaker_state()),
            (_, BreakerState::Closed { .. }) | (Gate::UnlessOpen, BreakerState::Recovering)
        )
    }

    /// Runs one Redlock call (its own per-server timeouts inside) through
    /// the gate, feeding the breaker: a missed quorum is one failure.
    async fn quorum<T>(
        &self,
        gate: Gate,
        call: impl Future<Output = Result<T, NoQuorum>>,
    ) -> Result<T, RedisFailure> {
        if !self.allowed(gate) {
            return Err(RedisFailure::BreakerOpen);
        }
        match call.await {
            Ok(v) => {
                let now = self.now_ms();
                self.update_breaker(|b| b.record(false, now));
                Ok(v)
            }
            Err(e) => {
                self.record_failure();
                Err(e.into())
            }
        }
    }

    /// Runs one Redis operation with the timeout, feeding the breaker,
    /// unless `gate` says the breaker's state rules it out.
    async fn run<T, F, Fut>(&self, gate: Gate, op: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.allowed(gate) {
            return Err(RedisFailure::BreakerOpen);
        }
        let conn = match self.current_conn() {
            Some(c) => c,
            None => self
                .connect()
                .await
                .inspect_err(|_| self.record_failure())?,
        };
        match tokio::time::timeout(self.inner.timeout, op(conn)).await {
            Ok(Ok(v)) => {
                let now = self.now_ms();
                self.update_breaker(|b| b.record(false, now));
                Ok(v)
            }
            Ok(Err(e)) => {
                // A script error is a bug of ours, not an outage.
                if e.kind() != redis::ErrorKind::ResponseError {
                    self.record_failure();
                }
                Err(e.into())
            }
            Err(_) => {
                self.record_failure();
                Err(RedisFailure::Timeout)
            }
        }
    }

    fn record_failure(&self) {
        // Behind Sentinel the master may have moved (the connection points
        // at a dead or demoted node): find it again on the next call.
        if self.inner.locator.is_sentinel() {
            *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = None;
            self.inner.locator.forget();
        }
        let now = self.now_ms();
        if self.update_breaker(|b| b.record(true, now)) {
            tracing::warn!("redis circuit breaker opened: holds switch to the Postgres-only path");
            metrics::counter!("redis_breaker_opened_total").increment(1);
        }
    }

    /// Takes all `labels` of `show` for `hold` or none. `Ok(vec![])` means
    /// taken; otherwise the 0-based indexes of seats already locked.
    pub async fn acquire(
        &self,
        show: ShowId,
        labels: &[&str],
        hold: Uuid,
        ttl: Duration,
    ) -> Result<Vec<usize>, RedisFailure> {
        let keys = seat_keys(show, labels);
        if let Some(r) = &self.inner.redlock {
            return self
                .quorum(Gate::Closed, r.acquire(&keys, &hold.to_string(), ttl))
                .await;
        }
        let script = &self.inner.acquire;
        let mut inv = script.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(hold.to_string()).arg(ttl.as_millis() as u64);
        let taken: Vec<usize> = self
            .run(Gate::Closed, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(taken.into_iter().map(|i| i.saturating_sub(1)).collect())
    }

    /// Deletes the seat keys still owned by `hold`.
    pub async fn release(
        &self,
        show: ShowId,
        labels: &[&str],
        hold: Uuid,
    ) -> Result<u32, RedisFailure> {
        self.release_value(show, labels, &hold.to_string()).await
    }

    /// Deletes the seat keys whose value is still `value` (a hold id, or
    /// [`booked_value`] of a cancelled booking).
    pub async fn release_value(
        &self,
        show: ShowId,
        labels: &[&str],
        value: &str,
    ) -> Result<u32, RedisFailure> {
        let keys = seat_keys(show, labels);
        if let Some(r) = &self.inner.redlock {
            return self.quorum(Gate::UnlessOpen, r.release(&keys, value)).await;
        }
        let mut inv = self.inner.release.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(value);
        self.run(Gate::UnlessOpen, |mut c| async move {
            inv.invoke_async(&mut c).await
        })
        .await
    }

    /// Re-sets the seat keys of `hold` with a new TTL (extension).
    /// `Ok(false)` if a key belongs to another hold.
    pub async fn extend(
        &self,
        show: ShowId,
        labels: &[&str],
        hold: Uuid,
        ttl: Duration,
    ) -> Result<bool, RedisFailure> {
        let keys = seat_keys(show, labels);
        if let Some(r) = &self.inner.redlock {
            return self
                .quorum(Gate::Closed, r.extend(&keys, &hold.to_string(), ttl))
                .await;
        }
        let mut inv = self.inner.extend.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(hold.to_string()).arg(ttl.as_millis().max(1) as u64);
        let ok: i32 = self
            .run(Gate::Closed, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(ok == 1)
    }

    /// Writes the seat keys of a hold that Postgres granted on the
    /// Postgres-only path, overwriting whatever Redis thinks: a fast-path
    /// request holding one of those keys right now will be refused by
    /// Postgres, and its compare-and-delete leaves our value alone.
    pub async fn assert_hold(
        &self,
        show: ShowId,
        labels: &[&str],
        hold: Uuid,
        ttl: Duration,
    ) -> Result<(), RedisFailure> {
        self.assert_value(show, labels, &hold.to_string(), ttl)
            .await
    }

    /// Sets seat keys to `value` unconditionally: Postgres has decided who
    /// owns these seats (a Postgres-only hold, or a confirmed booking).
    pub async fn assert_value(
        &self,
        show: ShowId,
        labels: &[&str],
        value: &str,
        ttl: Duration,
    ) -> Result<(), RedisFailure> {
        let keys = seat_keys(show, labels);
        if let Some(r) = &self.inner.redlock {
            return self
                .quorum(Gate::Closed, r.assert_value(&keys, value, ttl))
                .await;
        }
        let mut inv = self.inner.assert_hold.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(value).arg(ttl.as_millis().max(1) as u64);
        let _: i32 = self
            .run(Gate::Closed, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    /// What the seat keys of `labels` hold now (`None`: no key), for an
    /// operator's consistency check. Read where the locks live (through
    /// Redlock's majority when it is on), in batches, each with the
    /// timeout; unlike the hold path it leaves the breaker alone: a slow
    /// diagnostic read must not switch the shard to Postgres.
    pub async fn seat_values(
        &self,
        show: ShowId,
        labels: &[&str],
    ) -> Result<Vec<Option<String>>, RedisFailure> {
        /// Keys per MGET: a large show does not block Redis for long.
        const BATCH: usize = 500;
        let mut values = Vec::with_capacity(labels.len());
        for chunk in labels.chunks(BATCH) {
            let keys = seat_keys(show, chunk);
            if let Some(r) = &self.inner.redlock {
                values.extend(r.values(&keys).await?);
                continue;
            }
            let mut conn = match self.current_conn() {
                Some(c) => c,
                None => self.connect().await?,
            };
            let got: Vec<Option<String>> = tokio::time::timeout(
                self.inner.timeout,
                redis::cmd("MGET").arg(&keys).query_async(&mut conn),
            )
            .await
            .map_err(|_| RedisFailure::Timeout)??;
            values.extend(got);
        }
        Ok(values)
    }

    /// A show's seat map and its change number, read together.
    pub async fn seatmap_snapshot(&self, show: ShowId) -> Result<MapAt, RedisFailure> {
        let mut inv = self.inner.seatmap_snapshot.prepare_invoke();
        inv.key(seatmap_key(show)).key(seatmap_seq_key(show));
        let (map, seq): (Option<Vec<u8>>, u64) = self
            .run(Gate::Closed, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(MapAt { map, seq })
    }

    /// Stores a seat map rebuilt from Postgres, read after the counter
    /// stood at `seq`; refused (false) if a change was numbered since.
    pub async fn seatmap_put(
        &self,
        show: ShowId,
        seq: u64,
        map: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, RedisFailure> {
        let mut inv = self.inner.seatmap_put.prepare_invoke();
        inv.key(seatmap_key(show))
            .key(seatmap_seq_key(show))
            .arg(seq)
            .arg(map)
            .arg(ttl.as_millis().max(1) as u64);
        let stored: i32 = self
            .run(Gate::Closed, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(stored == 1)
    }

    /// Applies seat state changes to the seat maps of several shows in one
    /// round trip, numbering and publishing each show's change for its
    /// live viewers (`SEATMAP_UPDATE_LUA`). Best effort: a stale map heals
    /// when it is rebuilt, and a viewer whose map is stale resyncs then.
    pub async fn seatmap_update(&self, changes: &[(ShowId, Vec<(i32, SeatState)>)]) {
        if changes.is_empty() || !self.fast_path_available() {
            return;
        }
        let mut pipe = redis::pipe();
        for (show, seats) in changes {
            if seats.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.inner.seatmap_update.get_hash())
                .arg(2)
                .arg(seatmap_key(*show))
                .arg(seatmap_seq_key(*show))
                .arg(live_channel(*show))
                .arg(SEQ_TTL_MS);
            for (ordinal, state) in seats {
                cmd.arg(*ordinal).arg(state.code());
            }
            pipe.add_command(cmd).ignore();
        }
        let script = self.inner.seatmap_update.clone();
        let res = self
            .run(Gate::Closed, |mut c| async move {
                match pipe.query_async::<()>(&mut c).await {
                    // After a Redis restart the script cache is empty: load and retry once.
                    Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                        script.prepare_invoke().load_async(&mut c).await?;
                        pipe.query_async::<()>(&mut c).await
                    }
                    other => other,
                }
            })
            .await;
        if let Err(e) = res {
            tracing::debug!(error = %e, "seat map update skipped");
        }
    }

    /// Adds to `pipe` the drop of a show's seat map with a resync notice
    /// to its viewers (`SEATMAP_DROP_LUA`, by EVAL: the pipeline may run
    /// on a Redis that has just restarted with an empty script cache).
    pub fn seatmap_drop_into(pipe: &mut redis::Pipeline, show: ShowId) {
        pipe.cmd("EVAL")
            .arg(SEATMAP_DROP_LUA)
            .arg(2)
            .arg(seatmap_key(show))
            .arg(seatmap_seq_key(show))
            .arg(live_channel(show))
            .arg(SEQ_TTL_MS)
            .ignore();
    }

    /// A new Pub/Sub connection (live seat maps: one per watched show),
    /// unless the breaker says Redis is down.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisFailure> {
        if !self.fast_path_available() {
            return Err(RedisFailure::BreakerOpen);
        }
        let fut = async {
            let client = self.inner.locator.client().await?;
            client.get_async_pubsub().await
        };
        Ok(tokio::time::timeout(self.inner.timeout * 4, fut)
            .await
            .map_err(|_| RedisFailure::Timeout)??)
    }

    /// Ends an open period if it is time and Redis answers; returns true
    /// when the caller should now re-assert live holds.
    pub async fn probe_if_due(&self) -> bool {
        let now = self.now_ms();
        if self.update_breaker(|b| b.admit(now)) != (Admission::Go { probe: true }) {
            return false;
        }
        match self.connect().await {
            Ok(mut c) => {
                let pong = tokio::time::timeout(
                    self.inner.timeout,
                    redis::cmd("PING").query_async::<String>(&mut c),
                )
                .await;
                // Redlock: the lock servers must answer too (a majority).
                if matches!(pong, Ok(Ok(_))) && self.ping_redlock().await.is_ok() {
                    self.update_breaker(Breaker::begin_recovery);
                    return true;
                }
                let now = self.now_ms();
                self.update_breaker(|b| b.record(true, now));
                false
            }
            Err(_) => {
                let now = self.now_ms();
                self.update_breaker(|b| b.record(true, now));
                false
            }
        }
    }

    /// Re-assertion finished: the fast path is open again.
    pub fn finish_recovery(&self) {
        self.update_breaker(Breaker::finish_recovery);
        tracing::info!("redis circuit breaker closed: holds use the fast path again");
    }

    /// A failure during re-assertion: wait and probe again.
    pub fn recovery_failed(&self) {
        let now = self.now_ms();
        self.update_breaker(|b| b.record(true, now));
    }

    /// Compare-and-delete of single keys, each with its own hold id: undoes
    /// re-asserted keys whose hold ended meanwhile.
    pub async fn release_each(&self, keys: &[(String, Uuid)]) -> Result<(), RedisFailure> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, hold) in keys {
            // EVAL, not EVALSHA: this runs right after a restart, when the
            // script cache is empty.
            pipe.cmd("EVAL")
                .arg(RELEASE_LUA)
                .arg(1)
                .arg(key)
                .arg(hold.to_string())
                .ignore();
        }
        self.recovery_lock_pipe(pipe).await
    }

    /// Runs a batch of seat-lock commands during recovery: on the shard's
    /// Redis, or with Redlock on every lock server (a majority must
    /// answer; a server that is down catches up on the next pass).
    pub async fn recovery_lock_pipe(&self, pipe: redis::Pipeline) -> Result<(), RedisFailure> {
        match &self.inner.redlock {
            Some(r) => self.quorum(Gate::UnlessOpen, r.pipe_on_all(&pipe)).await,
            None => self.recovery_pipe(pipe).await,
        }
    }

    /// The seat-lock keys matching `pattern`: on the shard's Redis, or
    /// with Redlock on every lock server that answers.
    pub async fn scan_lock_keys(&self, pattern: &str) -> Result<Vec<String>, RedisFailure> {
        match &self.inner.redlock {
            Some(r) => self.quorum(Gate::UnlessOpen, r.scan_keys(pattern)).await,
            None => self.scan_keys(pattern).await,
        }
    }

    /// Runs an arbitrary command batch during recovery (not gated by the
    /// breaker, which is `Recovering` then).
    pub async fn recovery_pipe(&self, pipe: redis::Pipeline) -> Result<(), RedisFailure> {
        self.run(Gate::UnlessOpen, |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// All keys matching `pattern` (SCAN), for re-assertion.
    pub async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, RedisFailure> {
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .run(Gate::UnlessOpen, |mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}
