//! Leases for the jobs that must run once per shard, held in the shard's
//! Postgres (`shard_leases`), with an epoch that fences the holder's
//! writes.
//!
//! Why not an advisory lock: a session lock lives on one connection (lost
//! silently when the pool recycles it, meaningless through a
//! transaction-pooling proxy), and neither kind fences: a leader that
//! paused past its lock's loss wakes up believing it still leads. Here a
//! leader's writes run [`Term::fence`] in their own transaction, which
//! checks the epoch with `FOR SHARE`: a takeover (which bumps the epoch)
//! waits for that transaction, and after it the old epoch matches nothing,
//! so the stale leader's transaction fails instead of writing.
//!
//! Expiry is judged by the database's clock alone (`now()`), so replicas'
//! clocks never need to agree. Locally a holder also stops trusting its
//! term once its own monotonic clock says the lease may have run out since
//! the last renewal it saw succeed.

use sqlx::{PgConnection, PgPool};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One job's lease, as this replica asks for it.
#[derive(Clone)]
pub struct Lease {
    db: PgPool,
    job: &'static str,
    holder: Arc<str>,
    ttl: Duration,
}

/// A term of leadership: the holder and the epoch its writes carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The job.
    pub job: &'static str,
    /// This replica.
    pub holder: Arc<str>,
    /// Grows by one each time the lease changes hands.
    pub epoch: i64,
}

/// A fenced write found that its term is over.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// Another replica holds the lease now (or it ran out).
    #[error("lease {job} lost: epoch {epoch} is over")]
    Lost {
        /// The job.
        job: &'static str,
        /// The epoch that ended.
        epoch: i64,
    },
    /// The check itself failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Lease {
    /// `holder` names this replica (`REGION_REPLICA_ID`).
    pub fn new(db: PgPool, job: &'static str, holder: &str, ttl: Duration) -> Self {
        Self {
            db,
            job,
            holder: Arc::from(holder),
            ttl,
        }
    }

    /// Takes the lease if it is free (or ran out), or renews it if this
    /// replica holds it; `min_gap` also leaves it to nobody until that
    /// long after the last term began (a periodic job's interval). Returns
    /// the term, or None while another replica holds it.
    pub async fn acquire(&self, min_gap: Duration) -> Result<Option<Term>, sqlx::Error> {
        let epoch = sqlx::query_scalar!(
            "INSERT INTO shard_leases (job, holder, epoch, expires_at)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3))
             ON CONFLICT (job) DO UPDATE
                SET epoch = CASE WHEN shard_leases.holder = EXCLUDED.holder
                                      AND shard_leases.expires_at > now()
                                 THEN shard_leases.epoch ELSE shard_leases.epoch + 1 END,
                    acquired_at = CASE WHEN shard_leases.holder = EXCLUDED.holder
                                            AND shard_leases.expires_at > now()
                                       THEN shard_leases.acquired_at ELSE now() END,
                    holder = EXCLUDED.holder,
                    expires_at = EXCLUDED.expires_at
              WHERE (shard_leases.holder = EXCLUDED.holder AND shard_leases.expires_at > now())
                 OR (shard_leases.expires_at <= now()
                     AND shard_leases.acquired_at <= now() - make_interval(secs => $4))
             RETURNING epoch",
            self.job,
            &*self.holder,
            secs(self.ttl),
            secs(min_gap)
        )
        .fetch_optional(&self.db)
        .await?;
        Ok(epoch.map(|epoch| Term {
            job: self.job,
            holder: self.holder.clone(),
            epoch,
        }))
    }

    /// Gives the lease up at once (shutdown, or a periodic pass that
    /// finished), so another replica need not wait for it to run out.
    pub async fn release(&self, term: &Term) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE shard_leases SET expires_at = now()
              WHERE job = $1 AND holder = $2 AND epoch = $3",
            term.job,
            &*term.holder,
            term.epoch
        )
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Runs `work` under a fresh term: renews the lease every third of its
    /// lifetime while `work` runs, and drops `work` (rolling back whatever
    /// transaction it had open) if a renewal finds the lease gone. Returns
    /// None if another replica holds the lease (or took it within
    /// `min_gap`). The lease is released when `work` ends.
    pub async fn run_pass<T, F, Fut>(
        &self,
        min_gap: Duration,
        work: F,
    ) -> Result<Option<T>, anyhow::Error>
    where
        F: FnOnce(Term) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let Some(term) = self.acquire(min_gap).await? else {
            return Ok(None);
        };
        let lost = self.keep_renewed(&term);
        let out = tokio::select! {
            r = work(term.clone()) => r,
            e = lost => Err(e.into()),
        };
        // Let a periodic job's next pass wait out its gap: keep the row's
        // start time, end the term now.
        if let Err(e) = self.release(&term).await {
            tracing::debug!(job = self.job, error = %e, "lease not released; it runs out");
        }
        out.map(Some)
    }

    /// Resolves when a renewal of `term` fails (it is never Ok).
    async fn keep_renewed(&self, term: &Term) -> FenceError {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.tick().await;
        let mut last_ok = Instant::now();
        loop {
            tick.tick().await;
            let asked = Instant::now();
            match self.acquire(Duration::ZERO).await {
                Ok(Some(t)) if t.epoch == term.epoch => last_ok = asked,
                Ok(_) => return self.lost(term),
                Err(e) if last_ok.elapsed() >= self.ttl => {
                    tracing::warn!(job = self.job, error = %e, "lease not renewed in time");
                    return self.lost(term);
                }
                Err(e) => tracing::debug!(job = self.job, error = %e, "lease renewal failed"),
            }
        }
    }

    fn lost(&self, term: &Term) -> FenceError {
        metrics::counter!("lease_lost_total", "job" => self.job).increment(1);
        FenceError::Lost {
            job: self.job,
            epoch: term.epoch,
        }
    }
}

impl Term {
    /// Checks, inside the caller's transaction, that this term still
    /// holds the lease, and keeps a takeover waiting until the caller's
    /// transaction ends. Call it before the writes it guards.
    pub async fn fence(&self, conn: &mut PgConnection) -> Result<(), FenceError> {
        let held = sqlx::query_scalar!(
            r#"SELECT true AS "held!" FROM shard_leases
                WHERE job = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                  FOR SHARE"#,
            self.job,
            &*self.holder,
            self.epoch
        )
        .fetch_optional(&mut *conn)
        .await?;
        match held {
            Some(_) => Ok(()),
            None => {
                metrics::counter!("lease_fenced_writes_total", "job" => self.job).increment(1);
                Err(FenceError::Lost {
                    job: self.job,
                    epoch: self.epoch,
                })
            }
        }
    }
}

/// Continuous leadership of one job: every replica runs this; the one
/// holding the lease renews it every `every`, the others try to take it
/// as often, so a dead leader is replaced within its lease's lifetime plus
/// `every`. [`Leadership::current`] gives the current term (None while
/// another replica leads).
#[derive(Clone)]
pub struct Leadership {
    state: Arc<Mutex<Option<(Term, Instant)>>>,
    ttl: Duration,
}

impl Leadership {
    /// Starts the renewal loop; it releases the lease when `shutdown`
    /// flips.
    pub fn spawn(
        lease: Lease,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let this = Self {
            state: Arc::default(),
            ttl: lease.ttl,
        };
        let state = this.state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                let asked = Instant::now();
                let got = lease.acquire(Duration::ZERO).await;
                let mut slot = state.lock().unwrap_or_else(|p| p.into_inner());
                let before = slot.as_ref().map(|(t, _)| t.clone());
                match got {
                    Ok(Some(term)) => *slot = Some((term, asked)),
                    Ok(None) => *slot = None,
                    // The database is unreachable: keep the term until it
                    // may have run out, then let it go.
                    Err(e) => {
                        tracing::debug!(job = lease.job, error = %e, "lease renewal failed");
                        if slot
                            .as_ref()
                            .is_some_and(|(_, at)| at.elapsed() >= lease.ttl)
                        {
                            *slot = None;
                        }
                    }
                }
                let after = slot.as_ref().map(|(t, _)| t.clone());
                drop(slot);
                if before != after {
                    match &after {
                        Some(t) => tracing::info!(job = lease.job, epoch = t.epoch, "leading"),
                        None if before.is_some() => {
                            tracing::info!(job = lease.job, "no longer leading")
                        }
                        None => {}
                    }
                    metrics::gauge!("lease_held", "job" => lease.job).set(if after.is_some() {
                        1.0
                    } else {
                        0.0
                    });
                }
            }
            let held = state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(|(t, _)| t);
            if let Some(term) = held {
                let _ = lease.release(&term).await;
            }
        });
        (this, task)
    }

    /// This replica's term, if it leads and the lease cannot have run out
    /// since the last renewal seen to succeed.
    pub fn current(&self) -> Option<Term> {
        let slot = self.state.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref()
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(t, _)| t.clone())
    }
}
