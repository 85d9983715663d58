//! The transactional outbox. A state change and the event describing it
//! are written in one transaction ([`record`]); the relay ([`run`],
//! [`relay_once`]) publishes unpublished events in `seq` order to an
//! [`EventSink`] (Redis Streams by default, one stream per city) and only
//! then marks them published. A crash between the two publishes again:
//! delivery is at least once, in order per booking, and consumers
//! de-duplicate by `event_id`.

pub mod redis_stream;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
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
    tx: &mut Transaction<'_, Postgres>,
    show_id: Uuid,
    aggregate_id: Uuid,
    event_type: &str,
    payload: Value,
) -> Result<Uuid, sqlx::Error> {
    let event_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO outbox (event_id, city_code, aggregate_id, event_type, payload)
         SELECT $1, v.city_code, $3, $4, $5
           FROM shows sh
           JOIN screens sc ON sc.id = sh.screen_id
           JOIN venues v ON v.id = sc.venue_id
          WHERE sh.id = $2",
    )
    .bind(event_id)
    .bind(show_id)
    .bind(aggregate_id)
    .bind(event_type)
    .bind(payload)
    .execute(&mut **tx)
    .await?;
    Ok(event_id)
}

/// Publishes one batch of unpublished events and marks them. Returns how
/// many were published (0 when none were due or another relay holds the
/// lock).
pub async fn relay_once(db: &PgPool, sink: &dyn EventSink) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    type Row = (i64, Uuid, String, Uuid, String, Value, DateTime<Utc>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, event_id, city_code, aggregate_id, event_type, payload, created_at
           FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let events: Vec<OutboxEvent> = rows
        .into_iter()
        .map(
            |(seq, event_id, city, aggregate_id, event_type, payload, created_at)| OutboxEvent {
                seq,
                event_id,
                city,
                aggregate_id,
                event_type,
                payload,
                created_at,
            },
        )
        .collect();
    sink.publish(&events).await?;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    sqlx::query("UPDATE outbox SET published_at = now() WHERE seq = ANY($1)")
        .bind(&seqs)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("outbox_published_total").increment(events.len() as u64);
    Ok(events.len())
}

/// Relays until `shutdown` flips: after every `kick` (a commit that wrote
/// events) and at least every `poll`.
pub async fn run(
    db: PgPool,
    sink: Arc<dyn EventSink>,
    kick: Arc<Notify>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        loop {
            match relay_once(&db, sink.as_ref()).await {
                Ok(n) if n as i64 == BATCH => continue, // more are waiting
                Ok(_) => break,
                Err(e) => {
                    metrics::counter!("outbox_relay_errors_total").increment(1);
                    tracing::warn!(error = ?e, "outbox relay pass failed; will retry");
                    break;
                }
            }
        }
        tokio::select! {
            _ = kick.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => return,
        }
    }
}
