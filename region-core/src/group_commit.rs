//! Group commit for independent units of work: requests queue a job, a
//! writer task drains what is waiting and runs every job of the batch in
//! ONE Postgres transaction, each inside its own savepoint, then commits
//! once. A job that fails rolls back to its savepoint and changes nothing
//! (per-job all-or-nothing); the others still commit. The shard's commit
//! rate then stops bounding its request rate, and a request handler never
//! holds a pooled connection: connections in use are at most the number
//! of writers, however many buyers wait. A full queue is answered at once
//! ([`Overloaded`] → 503 with `Retry-After`), never by a pile of timeouts.
//!
//! A kind of job may also write a whole batch together, one statement
//! per step for all its jobs ([`Job::run_together`]): per-statement work
//! (planning, executor start-up, triggers) is most of what a write costs
//! Postgres, so a batch of N jobs then costs about what one did. That
//! runs in the batch's own savepoint; whatever it leaves, or everything
//! if it fails, is then run job by job as above.
//!
//! The hold writer (`holds::writer`) predates this and decides a whole
//! batch at once (seat conflicts between the batch's own holds); jobs
//! here do not interact, so each is decided alone.

use crate::db::{codes, sqlstate};
use crate::error::ApiError;
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::{Acquire, PgConnection, PgPool};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// One unit of work for a [`GroupCommit`].
pub trait Job: Send + Sync + 'static {
    /// What jobs of this kind share (settings, caches, other adapters).
    type Ctx: Send + Sync + 'static;
    /// What a job gives back once committed.
    type Out: Send + 'static;
    /// Jobs with the same shard go to the same writer, so they never wait
    /// on each other's row locks from two transactions.
    fn shard(&self) -> u64;
    /// The work, on a connection inside the job's savepoint. An `Err`
    /// undoes everything the job wrote.
    fn run<'a>(
        &'a self,
        ctx: &'a Self::Ctx,
        conn: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<Self::Out, ApiError>>;
    /// After the batch committed: side effects that must follow the
    /// commit (caches, notifications), once for all its committed jobs.
    fn after_commit<'a>(ctx: &'a Self::Ctx, done: &'a [Self::Out]) -> BoxFuture<'a, ()>;

    /// Writes what it can of the whole batch together (one statement per
    /// step for all of it, in the batch's savepoint): `Some` for each job
    /// done so, `None` for each left to [`Job::run`] alone. An `Err` rolls
    /// the savepoint back and every job runs alone, so one bad job never
    /// fails the others. By default nothing is done together.
    fn run_together<'a>(
        _ctx: &'a Self::Ctx,
        _conn: &'a mut PgConnection,
        jobs: &'a [&'a Self],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Option<Self::Out>>>>
    where
        Self: Sized,
    {
        let none = jobs.iter().map(|_| None).collect();
        async move { Ok(none) }.boxed()
    }
}

/// Runs a batch on `conn`, inside its transaction: first together
/// ([`Job::run_together`], in a savepoint), then each job left over
/// alone ([`run_each`]). One result per job, in order.
async fn run_batch<J: Job>(
    name: &'static str,
    ctx: &J::Ctx,
    conn: &mut PgConnection,
    jobs: &[&J],
) -> Result<Vec<Result<J::Out, ApiError>>, sqlx::Error> {
    let mut sp = (&mut *conn).begin().await?;
    let together = match J::run_together(ctx, &mut sp, jobs).await {
        Ok(together) if together.len() == jobs.len() => {
            sp.commit().await?;
            together
        }
        failed => {
            sp.rollback().await?;
            let why = failed.map_or_else(|e| format!("{e:#}"), |_| "a result was lost".into());
            tracing::warn!(kind = name, error = %why, jobs = jobs.len(), "batch not written together; writing each job alone");
            metrics::counter!("group_commit_one_by_one_total", "kind" => name).increment(1);
            jobs.iter().map(|_| None).collect()
        }
    };
    let rest: Vec<&J> = jobs
        .iter()
        .zip(&together)
        .filter(|(_, done)| done.is_none())
        .map(|(j, _)| *j)
        .collect();
    let mut alone = run_each(ctx, conn, &rest).await?.into_iter();
    Ok(together
        .into_iter()
        .map(|done| match done {
            Some(out) => Ok(out),
            None => alone
                .next()
                .unwrap_or_else(|| Err(anyhow::anyhow!("a job was lost in its batch").into())),
        })
        .collect())
}

/// Runs each job in its own savepoint on `conn`: a job's `Err` rolls back
/// its savepoint and leaves nothing; the others stand.
async fn run_each<J: Job>(
    ctx: &J::Ctx,
    conn: &mut PgConnection,
    jobs: &[&J],
) -> Result<Vec<Result<J::Out, ApiError>>, sqlx::Error> {
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut sp = (&mut *conn).begin().await?;
        match job.run(ctx, &mut sp).await {
            Ok(out) => {
                sp.commit().await?;
                results.push(Ok(out));
            }
            Err(e) => {
                sp.rollback().await?;
                results.push(Err(e));
            }
        }
    }
    Ok(results)
}

/// The queue is full: shed load.
#[derive(Debug, thiserror::Error)]
#[error("{0} queue is full")]
pub struct Overloaded(pub &'static str);

/// Writer sizing.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Writer tasks (each holds at most one connection).
    pub writers: usize,
    /// Most jobs per transaction.
    pub batch_max: usize,
    /// Jobs waiting, over all writers, before new ones are refused.
    pub queue: usize,
}

type Reply<O> = oneshot::Sender<Result<O, ApiError>>;

struct Queued<J: Job> {
    job: J,
    reply: Reply<J::Out>,
    /// Retryable failures so far (deadlock, serialization).
    attempts: u32,
}

/// Handles to one kind of job's writers (cheap to clone).
pub struct GroupCommit<J: Job> {
    name: &'static str,
    senders: Arc<Vec<mpsc::Sender<Queued<J>>>>,
}

impl<J: Job> Clone for GroupCommit<J> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            senders: self.senders.clone(),
        }
    }
}

/// A job that hit a deadlock or serialization failure is tried again in
/// the next batch, up to this many times in all.
const MAX_ATTEMPTS: u32 = 3;

impl<J: Job> GroupCommit<J> {
    /// Spawns the writers; `name` labels metrics and logs. They end when
    /// every handle is dropped.
    pub fn spawn(name: &'static str, db: PgPool, ctx: Arc<J::Ctx>, sizing: Sizing) -> Self {
        let writers = sizing.writers.max(1);
        let per_writer = (sizing.queue / writers).max(1);
        let senders = (0..writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(per_writer);
                tokio::spawn(writer_loop(
                    name,
                    rx,
                    tx.downgrade(),
                    db.clone(),
                    ctx.clone(),
                    sizing.batch_max.max(1),
                ));
                tx
            })
            .collect();
        Self {
            name,
            senders: Arc::new(senders),
        }
    }

    /// Queues a job and waits for its commit.
    pub async fn submit(&self, job: J) -> Result<Result<J::Out, ApiError>, Overloaded> {
        let sender = &self.senders[(job.shard() as usize) % self.senders.len()];
        let (reply, rx) = oneshot::channel();
        sender
            .try_send(Queued {
                job,
                reply,
                attempts: 0,
            })
            .map_err(|_| {
                metrics::counter!("group_commit_shed_total", "kind" => self.name).increment(1);
                Overloaded(self.name)
            })?;
        Ok(rx.await.unwrap_or_else(|_| {
            Err(ApiError::Internal(anyhow::anyhow!(
                "{} writer stopped",
                self.name
            )))
        }))
    }

    /// [`submit`](Self::submit), a full queue answered as the fast `503
    /// overloaded` its caller retries after; `retry` tells the caller
    /// how (logged below ERROR: shedding is expected overload).
    pub async fn submit_or_shed(&self, job: J, retry: &str) -> Result<J::Out, ApiError> {
        match self.submit(job).await {
            Ok(result) => result,
            Err(Overloaded(kind)) => {
                tracing::info!(kind, "shed: writer queue full");
                Err(ApiError::unavailable(
                    "overloaded",
                    format!("too many writes in flight; {retry}"),
                ))
            }
        }
    }
}

fn retryable(e: &ApiError) -> bool {
    let ApiError::Internal(cause) = e else {
        return false;
    };
    cause.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>().is_some_and(|db| {
            matches!(
                sqlstate(db).as_deref(),
                Some(codes::DEADLOCK | codes::SERIALIZATION)
            )
        })
    })
}

async fn writer_loop<J: Job>(
    name: &'static str,
    mut rx: mpsc::Receiver<Queued<J>>,
    // To put a retried job back without keeping the queue open forever.
    requeue: mpsc::WeakSender<Queued<J>>,
    db: PgPool,
    ctx: Arc<J::Ctx>,
    batch_max: usize,
) {
    let mut batch = Vec::with_capacity(batch_max);
    // No linger: while one batch commits the next one fills by itself,
    // so batches grow with load and a lone job is written at once.
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        let jobs = std::mem::take(&mut batch);
        metrics::histogram!("group_commit_batch_size", "kind" => name).record(jobs.len() as f64);
        let started = Instant::now();
        let results = write_batch(name, &db, ctx.as_ref(), &jobs).await;
        metrics::histogram!("group_commit_batch_seconds", "kind" => name)
            .record(started.elapsed().as_secs_f64());
        let mut done = Vec::new();
        let mut replies = Vec::new();
        for (queued, result) in jobs.into_iter().zip(results) {
            match result {
                Ok(out) => {
                    done.push(out);
                    replies.push(queued.reply);
                }
                Err(e) if retryable(&e) && queued.attempts + 1 < MAX_ATTEMPTS => {
                    tracing::debug!(kind = name, error = %e, "group-commit job retried");
                    let again = Queued {
                        attempts: queued.attempts + 1,
                        ..queued
                    };
                    match requeue.upgrade() {
                        Some(tx) => {
                            if let Err(
                                mpsc::error::TrySendError::Full(q)
                                | mpsc::error::TrySendError::Closed(q),
                            ) = tx.try_send(again)
                            {
                                let _ = q.reply.send(Err(e));
                            }
                        }
                        None => {
                            let _ = again.reply.send(Err(e));
                        }
                    }
                }
                Err(e) => {
                    let _ = queued.reply.send(Err(e));
                }
            }
        }
        let after = Instant::now();
        J::after_commit(ctx.as_ref(), &done).await;
        // Part of the writer's cycle too: the next batch waits for it.
        metrics::histogram!("group_commit_after_commit_seconds", "kind" => name)
            .record(after.elapsed().as_secs_f64());
        for (reply, out) in replies.into_iter().zip(done) {
            // The requester may have gone; its work stands, committed.
            let _ = reply.send(Ok(out));
        }
    }
}

/// One transaction: the jobs together where they can be, a savepoint per
/// job otherwise. If the transaction itself fails
/// (begin or commit), every job fails with that error.
async fn write_batch<J: Job>(
    name: &'static str,
    db: &PgPool,
    ctx: &J::Ctx,
    jobs: &[Queued<J>],
) -> Vec<Result<J::Out, ApiError>> {
    match try_write_batch(name, db, ctx, jobs).await {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(error = %e, jobs = jobs.len(), "group commit failed");
            let msg = e.to_string();
            jobs.iter().map(|_| Err(batch_failed(&msg))).collect()
        }
    }
}

fn batch_failed(why: &str) -> ApiError {
    ApiError::Unavailable {
        code: "database_unavailable",
        message: format!("the write could not be committed ({why}); retry shortly"),
        retry_after_s: 1,
    }
}

async fn try_write_batch<J: Job>(
    name: &'static str,
    db: &PgPool,
    ctx: &J::Ctx,
    jobs: &[Queued<J>],
) -> Result<Vec<Result<J::Out, ApiError>>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let refs: Vec<&J> = jobs.iter().map(|q| &q.job).collect();
    let results = run_batch(name, ctx, &mut tx, &refs).await?;
    debug_assert_eq!(results.len(), jobs.len());
    let committing = Instant::now();
    tx.commit().await?;
    // The flush to the WAL: the part of a batch no statement saves.
    metrics::histogram!("group_commit_commit_seconds", "kind" => name)
        .record(committing.elapsed().as_secs_f64());
    Ok(results)
}
