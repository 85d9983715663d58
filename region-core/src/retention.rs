//! Retention: trims what has served its purpose so tables do not grow
//! forever. Finished idempotency keys after their horizon (at least 24 h),
//! published outbox events, delivered notifications and handled webhook
//! ids, and released or expired holds that no payment refers to (with
//! their seat rows).
//!
//! What is live is never trimmed, whatever the horizon: an idempotency key
//! that is locked or unfinished, or whose payment is not settled; an
//! unpublished event; an active or consumed hold, or one a payment or a
//! seat still names. Each statement deletes at most `batch` rows, so
//! transactions stay short; a pass repeats until a statement deletes
//! fewer. Deleting is idempotent, so two replicas trimming at once do no
//! harm; an advisory lock still keeps it to one at a time.

use crate::config::RetentionSettings;
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// Advisory-lock key of the retention pass ("retain").
const RETENTION_LOCK: i64 = 0x7265_7461_696e;

/// Rows trimmed by one pass, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// `idempotency_keys` rows.
    pub idempotency_keys: u64,
    /// `outbox` rows.
    pub outbox: u64,
    /// `notifications` rows.
    pub notifications: u64,
    /// `webhook_events` rows.
    pub webhook_events: u64,
    /// `holds` rows (their `hold_seats` go with them).
    pub holds: u64,
    /// `outgoing_mail` rows sent or given up.
    pub outgoing_mail: u64,
}

/// A statement deleting at most `$2` rows older than `$1` hours, as an
/// `async fn(db, hours, batch)` returning how many it deleted. (A macro,
/// not a constant: the query macro checks the statement at build time.)
macro_rules! trim_statement {
    ($name:ident, $sql:literal) => {
        async fn $name(db: &PgPool, hours: i32, batch: i64) -> Result<u64, sqlx::Error> {
            let done = sqlx::query!($sql, hours, batch).execute(db).await?;
            Ok(done.rows_affected())
        }
    };
}

// The statements. Written so that the `WHERE` clause alone says what is
// safe to delete.

trim_statement!(
    trim_idempotency,
    "
    WITH doomed AS (
        SELECT k.user_id, k.key FROM idempotency_keys k
         WHERE k.locked_at IS NULL
           AND k.updated_at < now() - make_interval(hours => $1)
           AND (k.recovery_point = 'finished'
                -- a key whose request failed before any payment existed
                OR (k.recovery_point = 'started'
                    AND NOT EXISTS (SELECT 1 FROM payments p
                                     WHERE p.user_id = k.user_id AND p.idem_key = k.key)))
           -- its payment (if any) is closed: nothing will resume it
           AND NOT EXISTS (SELECT 1 FROM payments p
                            WHERE p.user_id = k.user_id AND p.idem_key = k.key
                              AND p.settled IS NULL AND p.status IN ('CREATED', 'SUCCEEDED'))
         LIMIT $2
         FOR UPDATE OF k SKIP LOCKED),
    -- A data-modifying CTE always runs; the foreign key is checked at the
    -- end of the statement, when the payment no longer names the key.
    unlinked AS (
        UPDATE payments p SET idem_key = NULL
          FROM doomed d WHERE p.user_id = d.user_id AND p.idem_key = d.key)
    DELETE FROM idempotency_keys k USING doomed d
     WHERE k.user_id = d.user_id AND k.key = d.key"
);

trim_statement!(
    trim_outbox,
    "
    DELETE FROM outbox WHERE seq IN (
        SELECT seq FROM outbox
         WHERE published_at IS NOT NULL
           AND published_at < now() - make_interval(hours => $1)
         ORDER BY seq LIMIT $2)"
);

trim_statement!(
    trim_notifications,
    "
    DELETE FROM notifications WHERE event_id IN (
        SELECT event_id FROM notifications
         WHERE created_at < now() - make_interval(hours => $1)
         LIMIT $2)"
);

trim_statement!(
    trim_outgoing_mail,
    "
    DELETE FROM outgoing_mail WHERE event_id IN (
        SELECT event_id FROM outgoing_mail
         WHERE state <> 'pending'
           AND created_at < now() - make_interval(hours => $1)
         LIMIT $2)"
);

trim_statement!(
    trim_webhook_events,
    "
    DELETE FROM webhook_events WHERE event_id IN (
        SELECT event_id FROM webhook_events
         WHERE received_at < now() - make_interval(hours => $1)
         LIMIT $2)"
);

trim_statement!(
    trim_holds,
    "
    WITH doomed AS (
        SELECT h.id FROM holds h
         WHERE h.state IN ('RELEASED', 'EXPIRED')
           AND h.updated_at < now() - make_interval(hours => $1)
           AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.hold_id = h.id)
           AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.hold_id = h.id)
           AND NOT EXISTS (SELECT 1 FROM show_seats s
                            WHERE s.hold_id = h.id AND s.show_id = h.show_id)
           AND NOT EXISTS (SELECT 1 FROM hold_seats hs WHERE hs.hold_id = h.id AND hs.live)
         LIMIT $2
         FOR UPDATE OF h SKIP LOCKED),
    seats AS (
        DELETE FROM hold_seats hs USING doomed d WHERE hs.hold_id = d.id)
    DELETE FROM holds h USING doomed d WHERE h.id = d.id"
);

/// Runs one statement (`stmt(hours, batch)`, returning the rows it
/// deleted) in batches until it deletes fewer than `batch` rows.
async fn trim<F, Fut>(mut stmt: F, hours: u64, batch: i64) -> Result<u64, sqlx::Error>
where
    F: FnMut(i32, i64) -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let hours = i32::try_from(hours).unwrap_or(i32::MAX);
    let mut total = 0;
    loop {
        let n = stmt(hours, batch).await?;
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

/// One retention pass over every table. Returns `None` when another
/// replica holds the lock.
pub async fn run_once(
    db: &PgPool,
    cfg: &RetentionSettings,
) -> Result<Option<Trimmed>, sqlx::Error> {
    let mut conn = db.acquire().await?;
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_lock($1) AS "locked!""#,
        RETENTION_LOCK
    )
    .fetch_one(&mut *conn)
    .await?;
    if !locked {
        return Ok(None);
    }
    let b = cfg.retention_batch;
    let result: Result<Trimmed, sqlx::Error> = async {
        Ok(Trimmed {
            idempotency_keys: trim(|h, n| trim_idempotency(db, h, n), cfg.idempotency_hours, b)
                .await?,
            outbox: trim(|h, n| trim_outbox(db, h, n), cfg.outbox_hours, b).await?,
            notifications: trim(
                |h, n| trim_notifications(db, h, n),
                cfg.notifications_hours,
                b,
            )
            .await?,
            webhook_events: trim(
                |h, n| trim_webhook_events(db, h, n),
                cfg.notifications_hours,
                b,
            )
            .await?,
            holds: trim(|h, n| trim_holds(db, h, n), cfg.holds_hours, b).await?,
            outgoing_mail: trim(
                |h, n| trim_outgoing_mail(db, h, n),
                cfg.notifications_hours,
                b,
            )
            .await?,
        })
    }
    .await;
    let _ = sqlx::query_scalar!("SELECT pg_advisory_unlock($1)", RETENTION_LOCK)
        .fetch_one(&mut *conn)
        .await;
    let trimmed = result?;
    for (table, n) in [
        ("idempotency_keys", trimmed.idempotency_keys),
        ("outbox", trimmed.outbox),
        ("notifications", trimmed.notifications),
        ("webhook_events", trimmed.webhook_events),
        ("holds", trimmed.holds),
        ("outgoing_mail", trimmed.outgoing_mail),
    ] {
        metrics::counter!("retention_trimmed_rows_total", "table" => table).increment(n);
    }
    Ok(Some(trimmed))
}

/// Trims every `interval` until `shutdown` flips.
pub async fn run(db: PgPool, cfg: RetentionSettings, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(cfg.retention_interval_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match run_once(&db, &cfg).await {
            Ok(Some(t)) if t != Trimmed::default() => {
                tracing::info!(?t, "retention pass trimmed rows")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed; next pass retries"),
        }
    }
}
