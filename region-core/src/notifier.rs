//! The notifier: an idempotent consumer of the outbox streams. It reads
//! each city's `events:<city>` stream in the consumer group `notifier`
//! and records what the buyer is told (booking confirmed, refund sent …)
//! in `notifications`, keyed by the event id, so an event delivered twice
//! (the relay is at-least-once) is recorded once. Entries are
//! acknowledged only after the insert commits; on restart the group's
//! pending entries are read first.
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
    loop {
        let res = tokio::select! {
            r = consume_once(&db, &redis, &prefix, &consumer, Duration::from_millis(500)) => r,
            _ = shutdown.changed() => return,
        };
        match res {
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = ?e, "notifier pass failed; retrying");
                redis.reset().await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// One pass over every city's stream: pending entries first, then new
/// ones (waiting up to `block`). Returns how many entries were handled.
pub async fn consume_once(
    db: &PgPool,
    redis: &LazyRedis,
    prefix: &str,
    consumer: &str,
    block: Duration,
) -> anyhow::Result<usize> {
    let cities = sqlx::query_scalar!("SELECT code FROM cities ORDER BY code")
        .fetch_all(db)
        .await?;
    if cities.is_empty() {
        tokio::time::sleep(block).await;
        return Ok(0);
    }
    let mut conn = redis.get().await?;
    let keys: Vec<String> = cities.iter().map(|c| stream_key(prefix, c)).collect();
    for key in &keys {
        // From the stream's start, so events published before the group
        // existed are not skipped. BUSYGROUP just means it exists.
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            if e.code() != Some("BUSYGROUP") {
                return Err(e.into());
            }
        }
    }
    let mut handled = 0;
    // Pending (delivered to us before a crash, never acknowledged), then new.
    for (start, block_ms) in [("0", None), (">", Some(block.as_millis() as u64))] {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(200);
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS");
        for k in &keys {
            cmd.arg(k);
        }
        for _ in &keys {
            cmd.arg(start);
        }
        let reply: Option<StreamReadReply> = cmd.query_async(&mut conn).await?;
        let Some(reply) = reply else { continue };
        for stream in reply.keys {
            let mut acks = Vec::new();
            for entry in &stream.ids {
                record(db, entry).await?;
                acks.push(entry.id.clone());
            }
            if !acks.is_empty() {
                handled += acks.len();
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream.key)
                    .arg(GROUP)
                    .arg(&acks)
                    .query_async(&mut conn)
                    .await?;
            }
        }
    }
    Ok(handled)
}

/// Records one entry; a duplicate event id changes nothing.
async fn record(db: &PgPool, entry: &redis::streams::StreamId) -> anyhow::Result<()> {
    let get = |f: &str| -> Option<String> { entry.get::<String>(f) };
    let (Some(event_id), Some(kind), Some(payload)) =
        (get("event_id"), get("type"), get("payload"))
    else {
        tracing::warn!(id = %entry.id, "stream entry without event fields; skipped");
        return Ok(());
    };
    let event_id = Uuid::parse_str(&event_id)?;
    let body: serde_json::Value = serde_json::from_str(&payload)?;
    let Some(user) = body
        .get("user_id")
        .and_then(|u| u.as_str())
        .map(str::to_owned)
    else {
        return Ok(()); // not addressed to a user
    };
    let inserted = sqlx::query!(
        "INSERT INTO notifications (event_id, user_id, kind, body) VALUES ($1, $2, $3, $4)
         ON CONFLICT (event_id) DO NOTHING",
        event_id,
        &user,
        &kind,
        &body
    )
    .execute(db)
    .await?
    .rows_affected();
    if inserted == 0 {
        metrics::counter!("notifier_duplicates_total").increment(1);
    }
    Ok(())
}
