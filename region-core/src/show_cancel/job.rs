//! The cancellation job: batches of work on RUNNING cancellations until
//! each is DONE. Every batch is one transaction (holds released, bookings
//! cancelled with full refunds and events, the job's counters bumped), so
//! a crash loses at most the batch in flight, which is rolled back and
//! done again; nothing is done twice (only ACTIVE holds and CONFIRMED
//! bookings are taken, under their row locks).
//!
//! Claims, not a lease: a batch claims its job row with
//! `FOR UPDATE SKIP LOCKED`, so every replica may run this loop, two
//! replicas never work on one show at once, different shows proceed in
//! parallel, and a replica that dies mid-batch frees its claim the moment
//! Postgres drops its connection (a lease would hold the work back until
//! it lapsed, and need its epoch checked on every write). The batch's own
//! transaction is the fence: a paused replica's batch either commits
//! whole, or not at all.

use super::store::{self, CancelledBooking, ReleasedHold};
use crate::redis_path::{booked_value, RedisPath};
use chrono::Utc;
use shared::{SeatState, ShowId};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// Most holds, and most bookings, one batch takes: small enough that a
/// batch's locks are brief next to buyers cancelling on their own.
const BATCH: i64 = 25;

/// How often every replica looks for RUNNING cancellations (after a
/// restart, and while one waits for its refunds to be sent).
const POLL: Duration = Duration::from_secs(1);

/// What the job needs: the shard's Postgres, Redis (to free the seats in
/// the fast path and the live map), and the workers to wake.
#[derive(Clone)]
pub struct Runner {
    /// This shard's Postgres.
    pub db: PgPool,
    /// The fast path and the live seat map.
    pub redis: RedisPath,
    /// Wakes the outbox relay after a batch wrote events.
    pub outbox_kick: Arc<Notify>,
    /// Wakes the refund worker after a batch created refunds.
    pub refund_kick: Arc<Notify>,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// No RUNNING job this replica may claim.
    Idle,
    /// Work done on this job; more may follow.
    Worked,
    /// Nothing to do on this job but wait (refunds in flight, a booking
    /// a buyer is cancelling, a charge not yet settled).
    Waiting(Uuid),
    /// This job is DONE now.
    Finished,
}

impl Runner {
    /// The runner over the app's parts.
    pub fn of(state: &crate::state::AppState) -> Self {
        Self {
            db: state.db.clone(),
            redis: state.redis.clone(),
            outbox_kick: state.outbox_kick.clone(),
            refund_kick: state.refund_kick.clone(),
        }
    }

    /// Runs batches until `shutdown` flips: every [`POLL`] (a cancellation
    /// left RUNNING by a crash is resumed by whichever replica looks first).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.drain().await;
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Runs batches until no job this replica can claim has work now.
    pub async fn drain(&self) {
        let mut waiting = HashSet::new();
        loop {
            match self.step().await {
                Ok(Step::Idle) => return,
                Ok(Step::Worked | Step::Finished) => {}
                // Each job waiting goes to the back of the queue; once
                // every one claimable is waiting, stop until the next poll.
                Ok(Step::Waiting(id)) => {
                    if !waiting.insert(id) {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "show cancellation batch failed; will retry");
                    return;
                }
            }
        }
    }

    /// One batch of one job.
    async fn step(&self) -> anyhow::Result<Step> {
        let mut tx = self.db.begin().await?;
        let Some(job) = store::claim(&mut tx).await? else {
            return Ok(Step::Idle);
        };
        let holds = store::release_holds(&mut tx, job.show_id, BATCH).await?;
        let bookings = store::cancel_bookings(&mut tx, &job, BATCH, Utc::now()).await?;
        if holds.is_empty() && bookings.is_empty() {
            let progress = store::progress(&mut tx, &job).await?;
            if progress.finished() {
                store::finish(&mut tx, job.id).await?;
                tx.commit().await?;
                metrics::counter!("show_cancellations_finished_total").increment(1);
                tracing::info!(job = %job.id, show = %job.show_id, ?progress, "show cancellation done");
                return Ok(Step::Finished);
            }
            // Bumps `updated_at`: the next claim prefers other jobs.
            store::count_progress(&mut tx, job.id, 0, 0).await?;
            tx.commit().await?;
            return Ok(Step::Waiting(job.id));
        }
        store::count_progress(&mut tx, job.id, bookings.len(), holds.len()).await?;
        tx.commit().await?;
        metrics::counter!("bookings_cancelled_total").increment(bookings.len() as u64);
        metrics::counter!("holds_released_total").increment(holds.len() as u64);
        if !bookings.is_empty() {
            self.outbox_kick.notify_one();
            self.refund_kick.notify_one();
        }
        self.free_in_redis(ShowId(job.show_id), &holds, &bookings)
            .await;
        Ok(Step::Worked)
    }

    /// After the commit: the seats Postgres has freed are freed in the
    /// fast path (compare-and-delete by the hold's or booking's value, so
    /// a key someone else owns is left alone) and shown free on the live
    /// map. A failure here is logged: the keys expire (holds) or the show
    /// takes no new holds anyway (bookings).
    async fn free_in_redis(
        &self,
        show: ShowId,
        holds: &[ReleasedHold],
        bookings: &[CancelledBooking],
    ) {
        for h in holds {
            let labels: Vec<&str> = h.labels.iter().map(String::as_str).collect();
            if let Err(e) = self.redis.release(show, &labels, h.hold_id).await {
                tracing::debug!(error = %e, "released hold's redis keys left to their TTL");
            }
        }
        for b in bookings {
            let labels: Vec<&str> = b.freed.iter().map(|(_, l)| l.as_str()).collect();
            let value = booked_value(b.booking_id);
            if let Err(e) = self.redis.release_value(show, &labels, &value).await {
                tracing::debug!(error = %e, "cancelled booking's redis keys left in place");
            }
        }
        let freed: Vec<(i32, SeatState)> = holds
            .iter()
            .flat_map(|h| h.freed.iter().copied())
            .chain(
                bookings
                    .iter()
                    .flat_map(|b| b.freed.iter().map(|(o, _)| *o)),
            )
            .map(|o| (o, SeatState::Available))
            .collect();
        self.redis.seatmap_update(&[(show, freed)]).await;
    }
}
