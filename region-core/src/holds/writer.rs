//! Group commit for the durable half of a hold. Requests that passed the
//! Redis lock queue here; a writer drains what is waiting (up to a batch
//! limit) and writes all of it in one Postgres transaction, deciding each
//! hold on its own (see `decide`). The shard's hold rate is then bounded
//! by Redis and the batch size, not by one commit per hold.
//!
//! Shows are spread over writers by id, so one show's rows are only ever
//! locked by one writer: batches never wait on each other for seat rows.

use super::decide::{decide, decide_unprotected, Decision, SeatKey};
use super::store::{self, ApplyError, NewHold};
use crate::db::{codes, sqlstate};
use crate::redis_path::RedisPath;
use shared::{SeatState, ShowId};
use sqlx::PgPool;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// What happened to one queued hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written: the seats are held.
    Held,
    /// Not written: these seats were not free in Postgres.
    Unavailable(Vec<Uuid>),
    /// Not written: the shard switched paths since the hold chose its
    /// own (`crate::path_switch`); try again on the current one.
    PathChanged,
    /// Not written: the show is cancelled (`crate::show_cancel`).
    ShowCancelled,
}

/// The batch could not be written (database down, repeated deadlocks).
#[derive(Debug, Clone, thiserror::Error)]
#[error("hold batch failed: {0}")]
pub struct WriteFailed(pub String);

struct Job {
    hold: NewHold,
    reply: oneshot::Sender<Result<Outcome, WriteFailed>>,
}

/// The queue is full: shed load with a 503.
#[derive(Debug, thiserror::Error)]
#[error("hold queue is full")]
pub struct Overloaded;

/// Handles to the writer tasks.
#[derive(Clone)]
pub struct HoldWriters {
    senders: Vec<mpsc::Sender<Job>>,
}

/// Writer settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Number of writer tasks.
    pub writers: usize,
    /// Most holds per transaction.
    pub batch_max: usize,
    /// Queue capacity (total over writers).
    pub queue: usize,
    /// False only for the negative control.
    pub protect: bool,
    /// How long a writer waits for more holds before writing a batch that
    /// is not full.
    pub linger: std::time::Duration,
}

impl HoldWriters {
    /// Spawns the writer tasks. They end when every handle is dropped.
    pub fn spawn(db: PgPool, redis: RedisPath, cfg: WriterConfig) -> Self {
        let per_writer = (cfg.queue / cfg.writers).max(1);
        let senders = (0..cfg.writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(per_writer);
                tokio::spawn(writer_loop(rx, db.clone(), redis.clone(), cfg));
                tx
            })
            .collect();
        Self { senders }
    }

    /// Queues a hold and waits for its group commit.
    pub async fn submit(&self, hold: NewHold) -> Result<Result<Outcome, WriteFailed>, Overloaded> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        hold.show_id.hash(&mut h);
        let sender = &self.senders[(h.finish() as usize) % self.senders.len()];
        let (reply, rx) = oneshot::channel();
        sender
            .try_send(Job { hold, reply })
            .map_err(|_| Overloaded)?;
        Ok(rx
            .await
            .unwrap_or_else(|_| Err(WriteFailed("writer stopped".into()))))
    }
}

async fn writer_loop(mut rx: mpsc::Receiver<Job>, db: PgPool, redis: RedisPath, cfg: WriterConfig) {
    let mut batch = Vec::with_capacity(cfg.batch_max);
    while rx.recv_many(&mut batch, cfg.batch_max).await > 0 {
        // Linger: a transaction costs Postgres about the same for one hold
        // as for fifty, so at mid rates a short wait for company cuts the
        // number of transactions (and the CPU they take) several-fold.
        if !cfg.linger.is_zero() && batch.len() < cfg.batch_max {
            tokio::time::sleep(cfg.linger).await;
            while batch.len() < cfg.batch_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let jobs = std::mem::take(&mut batch);
        metrics::histogram!("hold_batch_size").record(jobs.len() as f64);
        let holds: Vec<&NewHold> = jobs.iter().map(|j| &j.hold).collect();
        let started = std::time::Instant::now();
        let result = write_batch_with_retry(&db, &redis, &holds, cfg.protect).await;
        metrics::histogram!("hold_batch_seconds").record(started.elapsed().as_secs_f64());
        // The seat map is updated before answering (one Redis round trip
        // per batch) so a buyer who reads the map after a 201 sees the hold.
        if let Ok(outcomes) = &result {
            redis.seatmap_update(&held_changes(&holds, outcomes)).await;
        }
        for (i, job) in jobs.into_iter().enumerate() {
            let r = match &result {
                Ok(outcomes) => Ok(outcomes[i].clone()),
                Err(e) => Err(e.clone()),
            };
            // The requester may have gone away; its hold still stands and
            // will expire like any other.
            let _ = job.reply.send(r);
        }
    }
}

/// Seat-map changes (seats now HELD) of the accepted holds.
fn held_changes(holds: &[&NewHold], outcomes: &[Outcome]) -> Vec<(ShowId, Vec<(i32, SeatState)>)> {
    let mut by_show: HashMap<Uuid, Vec<(i32, SeatState)>> = HashMap::new();
    for (h, o) in holds.iter().zip(outcomes) {
        if *o == Outcome::Held {
            by_show
                .entry(h.show_id)
                .or_default()
                .extend(h.ordinals.iter().map(|o| (*o, SeatState::Held)));
        }
    }
    by_show.into_iter().map(|(s, v)| (ShowId(s), v)).collect()
}

/// Retries a batch that hit a deadlock, a serialization failure or a
/// version mismatch: each attempt starts from freshly locked rows.
async fn write_batch_with_retry(
    db: &PgPool,
    redis: &RedisPath,
    holds: &[&NewHold],
    protect: bool,
) -> Result<Vec<Outcome>, WriteFailed> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match write_batch(db, redis, holds, protect, false).await {
            Ok(o) => return Ok(o),
            Err(e) => {
                let retryable = match &e {
                    ApplyError::VersionMismatch { .. } => true,
                    ApplyError::Db(db_err) => matches!(
                        sqlstate(db_err).as_deref(),
                        Some(codes::DEADLOCK | codes::SERIALIZATION)
                    ),
                };
                if !retryable || attempt >= 3 {
                    tracing::warn!(error = %e, attempt, "hold batch failed");
                    return Err(WriteFailed(e.to_string()));
                }
                tracing::debug!(error = %e, attempt, "hold batch retried");
            }
        }
    }
}

/// One transaction for a whole batch (also used, with a batch of one and
/// `nowait`, by the Postgres-only path). When the shard's replicas
/// coordinate their path (`crate::path_switch`), the batch first takes
/// the switch's lock shared and writes only the holds whose path is the
/// shard's now; the others come back as [`Outcome::PathChanged`].
pub async fn write_batch(
    db: &PgPool,
    redis: &RedisPath,
    all: &[&NewHold],
    protect: bool,
    nowait: bool,
) -> Result<Vec<Outcome>, ApplyError> {
    let mut tx = db.begin().await?;
    let admitted: Vec<bool> = if redis.coordinated() && protect {
        let current = crate::path_switch::lock_shared(&mut tx).await?;
        redis.observe_generation(current);
        all.iter().map(|h| h.path.admissible(current)).collect()
    } else {
        vec![true; all.len()]
    };
    // The show's status, read under its row lock in this transaction
    // (never from a replica's cache): a cancellation committed before
    // this is seen, and one not yet committed waits for this batch, whose
    // holds it then releases.
    // The negative control (`protect` off) runs with every check off,
    // this one included: its batches stay as they were before it.
    let cancelled = if protect {
        let shows: Vec<Uuid> = all.iter().map(|h| h.show_id).collect();
        crate::show_cancel::store::lock_cancelled(&mut tx, &shows).await?
    } else {
        std::collections::HashSet::new()
    };
    let holds: Vec<&NewHold> = all
        .iter()
        .zip(&admitted)
        .filter(|(h, ok)| **ok && !cancelled.contains(&h.show_id))
        .map(|(h, _)| *h)
        .collect();
    let keys: Vec<SeatKey> = holds
        .iter()
        .flat_map(|h| h.seat_ids.iter().map(|s| (h.show_id, *s)))
        .collect();
    let rows = store::lock_rows(&mut tx, &keys, nowait, protect).await?;
    let now = chrono::Utc::now();
    let requests: Vec<(Uuid, &[Uuid])> = holds
        .iter()
        .map(|h| (h.show_id, h.seat_ids.as_slice()))
        .collect();
    let decisions = if protect {
        decide(&requests, &rows, now)
    } else {
        decide_unprotected(&requests)
    };
    let (accepted, accepted_decisions): (Vec<&NewHold>, Vec<&Decision>) = holds
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| matches!(d, Decision::Accept { .. }))
        .map(|(h, d)| (*h, d))
        .unzip();
    store::apply_accepted(&mut tx, &accepted, &accepted_decisions, &rows, protect).await?;
    tx.commit().await?;
    let mut decided = decisions.into_iter().map(|d| match d {
        Decision::Accept { .. } => Outcome::Held,
        Decision::Reject { unavailable } => Outcome::Unavailable(unavailable),
    });
    Ok(all
        .iter()
        .zip(&admitted)
        .map(|(h, ok)| match ok {
            true if cancelled.contains(&h.show_id) => Outcome::ShowCancelled,
            true => decided.next().unwrap_or(Outcome::PathChanged),
            false => {
                metrics::counter!("holds_path_changed_total").increment(1);
                Outcome::PathChanged
            }
        })
        .collect())
}
