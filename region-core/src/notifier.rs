//! The notifier: an idempotent consumer of the outbox streams. It reads
//! each city's `events:<city>` stream in the consumer group `notifier`
//! and records what the buyer is told (booking confirmed, refund sent …)
//! in `notifications`, keyed by the event id, so an event delivered twice
//! (the relay is at-least-once) is recorded once. Entries are
//! acknowledged only after the insert commits; on restart the group's
//! pending entries are read first. Every replica is a consumer of the
//! group under its own name (`core-<shard>-<replica>`), so they share the
//! work; what a replica that stopped left pending is claimed by another
//! after 30 s. The same statement queues the e-mail
//! a buyer is sent (`crate::mail`).
//!
//! Also serves `GET /v1/me/notifications`.

use crate::auth::User;
use crate::error::ApiError;
use crate::outbox::redis_stream::{stream_key, LazyRedis};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use redis::streams::StreamReadReply;
use shared::api::{Notification, NotificationList};
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Consumer group name.
pub const GROUP: &str = "notifier";

/// Notification route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/me/notifications", get(list))
}

async fn list(
    State(state): State<AppState>,
    user: User,
) -> Result<axum::Json<NotificationList>, ApiError> {
    let notifications = sqlx::query_as!(
        Notification,
        "SELECT event_id, kind, body, created_at FROM notifications
              WHERE user_id = $1 ORDER BY created_at DESC, event_id DESC LIMIT 100",
        &user.id
    )
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(NotificationList { notifications }))
}

/// Consumes until `shutdown` flips. `consumer` names this process in the
/// group (stable across restarts, so its pending entries come back to it).
pub async fn run(
    db: PgPool,
    redis: LazyRedis,
    prefix: String,
    consumer: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reader = Consumer::new(&db, &redis, &prefix, &consumer);
    loop {
        let res = tokio::select! {
            r = reader.pass(Duration::from_millis(500)) => r,
            _ = shutdown.changed() => return,
        };
        match res {
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = ?e, "notifier pass failed; retrying");
                redis.reset().await;
                reader.forget_streams();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// How long the list of cities' streams is trusted: a city added since
/// has its events read at most this much later.
const STREAMS_REFRESH: Duration = Duration::from_secs(10);

/// A consumer of the cities' streams, remembering which streams exist
/// (and have the group) between passes, so a busy pass costs one
/// XREADGROUP, one INSERT per stream and one XACK, not a city query and
/// a group creation per city every time.
pub struct Consumer<'a> {
    db: &'a PgPool,
    redis: &'a LazyRedis,
    prefix: &'a str,
    consumer: &'a str,
    keys: Vec<String>,
    keys_at: Option<std::time::Instant>,
    claimed_at: Option<std::time::Instant>,
}

/// Entries another consumer (a replica that died, or was renamed) left
/// unacknowledged this long are taken over.
const ORPHANED_AFTER_MS: u64 = 30_000;

/// How often orphaned entries are looked for.
const CLAIM_EVERY: Duration = Duration::from_secs(10);

impl<'a> Consumer<'a> {
    /// A consumer named `consumer` in the group.
    pub fn new(db: &'a PgPool, redis: &'a LazyRedis, prefix: &'a str, consumer: &'a str) -> Self {
        Self {
            db,
            redis,
            prefix,
            consumer,
            keys: Vec::new(),
            keys_at: None,
            claimed_at: None,
        }
    }

    /// After an error (Redis restarted, a stream deleted): check the
    /// streams and their groups again on the next pass.
    pub fn forget_streams(&mut self) {
        self.keys_at = None;
    }

    /// The cities' stream keys, each with the group created.
    async fn streams(
        &mut self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> anyhow::Result<()> {
        if self
            .keys_at
            .is_some_and(|at| at.elapsed() < STREAMS_REFRESH)
        {
            return Ok(());
        }
        let cities = sqlx::query_scalar!("SELECT code FROM cities ORDER BY code")
            .fetch_all(self.db)
            .await?;
        let keys: Vec<String> = cities.iter().map(|c| stream_key(self.prefix, c)).collect();
        for key in &keys {
            // From the stream's start, so events published before the group
            // existed are not skipped. BUSYGROUP just means it exists.
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(conn)
                .await;
            if let Err(e) = r {
                if e.code() != Some("BUSYGROUP") {
                    return Err(e.into());
                }
            }
        }
        self.keys = keys;
        self.keys_at = Some(std::time::Instant::now());
        Ok(())
    }

    /// Takes over what consumers that stopped left pending (every replica
    /// is a consumer of the group, under its own name), so an event a dead
    /// replica had read is still recorded. They are read with our own
    /// pending entries next.
    async fn claim_orphans(
        &mut self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> anyhow::Result<()> {
        if self.claimed_at.is_some_and(|at| at.elapsed() < CLAIM_EVERY) {
            return Ok(());
        }
        for key in &self.keys {
            let _: redis::Value = redis::cmd("XAUTOCLAIM")
                .arg(key)
                .arg(GROUP)
                .arg(self.consumer)
                .arg(ORPHANED_AFTER_MS)
                .arg("0-0")
                .arg("COUNT")
                .arg(500)
                .arg("JUSTID")
                .query_async(conn)
                .await?;
        }
        self.claimed_at = Some(std::time::Instant::now());
        Ok(())
    }

    /// One pass over every city's stream: pending entries first, then new
    /// ones (waiting up to `block`). Returns how many entries were handled.
    pub async fn pass(&mut self, block: Duration) -> anyhow::Result<usize> {
        let mut conn = self.redis.get().await?;
        self.streams(&mut conn).await?;
        if self.keys.is_empty() {
            tokio::time::sleep(block).await;
            return Ok(0);
        }
        self.claim_orphans(&mut conn).await?;
        let mut handled = 0;
        // Pending (delivered to us before a crash, never acknowledged, or
        // claimed from a dead replica), then new.
        for (start, block_ms) in [("0", None), (">", Some(block.as_millis() as u64))] {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(self.consumer)
                .arg("COUNT")
                .arg(200);
            if let Some(ms) = block_ms {
                cmd.arg("BLOCK").arg(ms);
            }
            cmd.arg("STREAMS");
            for k in &self.keys {
                cmd.arg(k);
            }
            for _ in &self.keys {
                cmd.arg(start);
            }
            let reply: Option<StreamReadReply> = cmd.query_async(&mut conn).await?;
            let Some(reply) = reply else { continue };
            for stream in reply.keys {
                if stream.ids.is_empty() {
                    continue;
                }
                record(self.db, &stream.ids).await?;
                let acks: Vec<&str> = stream.ids.iter().map(|e| e.id.as_str()).collect();
                handled += acks.len();
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream.key)
                    .arg(GROUP)
                    .arg(&acks)
                    .query_async(&mut conn)
                    .await?;
            }
        }
        Ok(handled)
    }
}

/// One pass with a fresh [`Consumer`] (tests, one-off runs).
pub async fn consume_once(
    db: &PgPool,
    redis: &LazyRedis,
    prefix: &str,
    consumer: &str,
    block: Duration,
) -> anyhow::Result<usize> {
    Consumer::new(db, redis, prefix, consumer).pass(block).await
}

/// Records a stream's entries in one statement (one commit); an event id
/// already recorded changes nothing.
async fn record(db: &PgPool, entries: &[redis::streams::StreamId]) -> anyhow::Result<()> {
    let (mut ids, mut users, mut kinds, mut bodies) = (vec![], vec![], vec![], vec![]);
    for entry in entries {
        let get = |f: &str| -> Option<String> { entry.get::<String>(f) };
        let (Some(event_id), Some(kind), Some(payload)) =
            (get("event_id"), get("type"), get("payload"))
        else {
            tracing::warn!(id = %entry.id, "stream entry without event fields; skipped");
            continue;
        };
        let event_id = Uuid::parse_str(&event_id)?;
        let body: serde_json::Value = serde_json::from_str(&payload)?;
        let Some(user) = body
            .get("user_id")
            .and_then(|u| u.as_str())
            .map(str::to_owned)
        else {
            continue; // not addressed to a user
        };
        ids.push(event_id);
        users.push(user);
        kinds.push(kind);
        bodies.push(body);
    }
    if ids.is_empty() {
        return Ok(());
    }
    // The e-mail to send goes in with the notification (crate::mail): an
    // event seen before inserts neither, so it is never mailed twice.
    // Only addresses get mail (a web buyer's user id is their e-mail).
    let event_types: Vec<String> = crate::mail::compose::EVENT_TYPES
        .map(str::to_owned)
        .to_vec();
    let inserted = sqlx::query_scalar!(
        r#"WITH fresh AS (
               INSERT INTO notifications (event_id, user_id, kind, body)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])
               ON CONFLICT (event_id) DO NOTHING
               RETURNING event_id, user_id, kind, body),
           mail AS (
               INSERT INTO outgoing_mail (event_id, kind, recipient, body)
               SELECT event_id, kind, user_id, body FROM fresh
                WHERE kind = ANY($5) AND is_mail_address(user_id))
           SELECT count(*) AS "n!" FROM fresh"#,
        &ids,
        &users,
        &kinds,
        &bodies,
        &event_types
    )
    .fetch_one(db)
    .await?;
    let duplicates = ids.len() as u64 - u64::try_from(inserted).unwrap_or(0);
    if duplicates > 0 {
        metrics::counter!("notifier_duplicates_total").increment(duplicates);
    }
    Ok(())
}
