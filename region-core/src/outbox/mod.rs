//! The transactional outbox. A state change and the event describing it
//! are written in one transaction ([`record`]); the relay ([`run`],
//! [`relay_once`]) publishes unpublished events in `seq` order to an
//! [`EventSink`] (Redis Streams by default, one stream per city) and only
//! then marks them published. A crash between the two publishes again:
//! delivery is at least once, in order per booking, and consumers
//! de-duplicate by `event_id`.

pub mod redis_stream;

use crate::backoff::Backoff;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// Advisory-lock key: one relay publishes at a time per database, so two
/// region-core replicas cannot interleave (and reorder) a booking's events.
const RELAY_LOCK: i64 = 0x6f75_7462_6f78; // "outbox"

/// Most events one relay pass publishes.
const BATCH: i64 = 500;

/// An event as published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Position in the outbox (publication order).
    pub seq: i64,
    /// Unique id: consumers de-duplicate by it.
    pub event_id: Uuid,
    /// City whose stream it goes to.
    pub city: String,
    /// Booking or payment id.
    pub aggregate_id: Uuid,
    /// e.g. `booking.confirmed`.
    pub event_type: String,
    /// The event body.
    pub payload: Value,
    /// When the state change committed.
    pub created_at: DateTime<Utc>,
}

/// Where the relay publishes. Implement it to add a broker (Kafka, NATS …).
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Publishes `events` in order. An error means some prefix may have
    /// been published: the relay will publish them all again.
    async fn publish(&self, events: &[OutboxEvent]) -> anyhow::Result<()>;
}

/// Writes an event in the caller's transaction. The city comes from the
/// show, so each city's events go to its own stream.
pub async fn record(
    tx: &mut PgConnection,
    show_id: Uuid,
    aggregate_id: Uuid,
    event_type: &str,
    payload: Value,
) -> Result<(), sqlx::Error> {
    record_many(tx, show_id, &[(aggregate_id, event_type, payload)]).await
}

/// Writes several events of one show in the caller's transaction, in
/// order, with one statement. Each is (aggregate id, type, payload).
pub async fn record_many(
    tx: &mut PgConnection,
    show_id: Uuid,
    events: &[(Uuid, &str, Value)],
) -> Result<(), sqlx::Error> {
    let events: Vec<ShowEvent<'_>> = events
        .iter()
        .map(|(aggregate, kind, payload)| ShowEvent {
            show_id,
            aggregate: *aggregate,
            kind,
            payload: payload.clone(),
        })
        .collect();
    record_all(tx, &events).await
}

/// One event of some show, for [`record_all`].
pub struct ShowEvent<'a> {
    /// The show (its city names the stream).
    pub show_id: Uuid,
    /// The aggregate the event is about.
    pub aggregate: Uuid,
    /// Event type.
    pub kind: &'a str,
    /// Payload.
    pub payload: Value,
}

/// Writes events of any shows in the caller's transaction, in order, with
/// one statement (a batch of confirmations records all of its events so).
pub async fn record_all(
    tx: &mut PgConnection,
    events: &[ShowEvent<'_>],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let shows: Vec<Uuid> = events.iter().map(|e| e.show_id).collect();
    let aggregates: Vec<Uuid> = events.iter().map(|e| e.aggregate).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    sqlx::query!(
        "INSERT INTO outbox (event_id, city_code, aggregate_id, event_type, payload)
         SELECT e.id, v.city_code, e.aggregate, e.kind, e.payload
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[]) WITH ORDINALITY
                  AS e(id, show_id, aggregate, kind, payload, n)
           JOIN shows sh ON sh.id = e.show_id
           JOIN screens sc ON sc.id = sh.screen_id
           JOIN venues v ON v.id = sc.venue_id
          ORDER BY e.n",
        &ids,
        &shows,
        &aggregates,
        &kinds as &[&str],
        &payloads as &[&Value]
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Publishes one batch of unpublished events and marks them. Returns how
/// many were published (0 when none were due or another relay holds the
/// lock).
pub async fn relay_once(db: &PgPool, sink: &dyn EventSink) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock($1) AS "locked!""#,
        RELAY_LOCK
    )
    .fetch_one(&mut *tx)
    .await?;
    if !locked {
        return Ok(0);
    }
    let events = sqlx::query_as!(
        OutboxEvent,
        r#"SELECT seq, event_id, city_code AS city, aggregate_id, event_type, payload, created_at
             FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1"#,
        BATCH
    )
    .fetch_all(&mut *tx)
    .await?;
    if events.is_empty() {
        return Ok(0);
    }
    sink.publish(&events).await?;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    sqlx::query!(
        "UPDATE outbox SET published_at = now() WHERE seq = ANY($1)",
        &seqs
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("outbox_published_total").increment(events.len() as u64);
    Ok(events.len())
}

/// How the relay retries a failing sink: from 200 ms doubling to 30 s,
/// with jitter. Kicks from new commits are ignored while backing off, so a
/// Redis outage under checkout load costs a handful of attempts a minute,
/// not one per checkout.
pub const RELAY_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(30),
};

/// The relay's view of its sink, so it logs on changes only: one WARN when
/// publishing starts failing, one INFO when it recovers, DEBUG in between.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayHealth {
    /// Failed passes in a row.
    pub failures: u32,
}

/// What a pass's outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Was healthy, now failing: log it.
    StartedFailing,
    /// Still failing (`failures` in a row): stay quiet.
    StillFailing,
    /// Was failing, works again after `failures` failed passes: log it.
    Recovered {
        /// How many passes failed before this one worked.
        after: u32,
    },
    /// Still healthy.
    Healthy,
}

impl RelayHealth {
    /// Records a pass's outcome and says what changed.
    pub fn record(&mut self, ok: bool) -> HealthChange {
        match (ok, self.failures) {
            (true, 0) => HealthChange::Healthy,
            (true, after) => {
                self.failures = 0;
                HealthChange::Recovered { after }
            }
            (false, 0) => {
                self.failures = 1;
                HealthChange::StartedFailing
            }
            (false, n) => {
                self.failures = n.saturating_add(1);
                HealthChange::StillFailing
            }
        }
    }
}

/// Publishes batches until none is full (more may be waiting after a full one).
async fn drain(db: &PgPool, sink: &dyn EventSink) -> anyhow::Result<()> {
    while relay_once(db, sink).await? as i64 == BATCH {}
    Ok(())
}

/// How often the relay measures its lag (at most).
const LAG_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Exports the relay's lag: how many events wait and how old the oldest is.
async fn report_lag(db: &PgPool) {
    let lag = sqlx::query!(
        r#"SELECT count(*) AS "waiting!",
                  COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS "oldest_s!"
             FROM outbox WHERE published_at IS NULL"#
    )
    .fetch_one(db)
    .await;
    if let Ok(lag) = lag {
        metrics::gauge!("outbox_unpublished_events").set(lag.waiting as f64);
        metrics::gauge!("outbox_relay_lag_seconds").set(lag.oldest_s);
    }
}

/// Relays until `shutdown` flips: after every `kick` (a commit that wrote
/// events) and at least every `poll`; while the sink fails, after
/// [`RELAY_BACKOFF`] instead.
pub async fn run(
    db: PgPool,
    sink: Arc<dyn EventSink>,
    kick: Arc<Notify>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut health = RelayHealth::default();
    // The lag gauges are scraped every few seconds: measuring them after
    // every kick (every checkout batch) would cost a query per batch.
    let mut lag_reported: Option<std::time::Instant> = None;
    loop {
        let outcome = drain(&db, sink.as_ref()).await;
        if lag_reported.is_none_or(|at| at.elapsed() >= LAG_REPORT_EVERY) {
            report_lag(&db).await;
            lag_reported = Some(std::time::Instant::now());
        }
        match (health.record(outcome.is_ok()), outcome) {
            (HealthChange::StartedFailing, Err(e)) => {
                tracing::warn!(error = ?e, "outbox relay cannot publish; backing off (logged again when it recovers)");
            }
            (HealthChange::StillFailing, Err(e)) => {
                tracing::debug!(error = ?e, failures = health.failures, "outbox relay still failing");
            }
            (HealthChange::Recovered { after }, _) => {
                tracing::info!(failed_passes = after, "outbox relay publishing again");
            }
            _ => {}
        }
        if health.failures > 0 {
            metrics::counter!("outbox_relay_errors_total").increment(1);
            let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0);
            tokio::select! {
                _ = tokio::time::sleep(RELAY_BACKOFF.delay(health.failures, jitter)) => {}
                _ = shutdown.changed() => return,
            }
        } else {
            tokio::select! {
                _ = kick.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_changes_are_reported_once_each_way() {
        let mut h = RelayHealth::default();
        assert_eq!(h.record(true), HealthChange::Healthy);
        assert_eq!(h.record(false), HealthChange::StartedFailing);
        for _ in 0..100 {
            assert_eq!(h.record(false), HealthChange::StillFailing);
        }
        assert_eq!(h.record(true), HealthChange::Recovered { after: 101 });
        assert_eq!(h.record(true), HealthChange::Healthy);
    }

    #[test]
    fn a_failing_relay_waits_longer_and_longer_up_to_the_cap() {
        let delays: Vec<Duration> = (1..=12).map(|n| RELAY_BACKOFF.delay(n, 1.0)).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[0], Duration::from_millis(200));
        assert_eq!(delays[11], Duration::from_secs(30));
    }
}
