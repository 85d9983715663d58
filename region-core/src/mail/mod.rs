//! E-mail to buyers over SMTP (issue 15; seed Q3 "send confirmation
//! e-mail, asynchronously, via a queue", Q7 "send a cancellation e-mail").
//!
//! The queue is `outgoing_mail`: the notifier (`crate::notifier`) adds a
//! row for each booking confirmation, cancellation and completed refund
//! it records, in the same statement as the notification, so an event
//! the outbox delivers twice adds one row (its event id is the key).
//! This module's workers, on every replica, each claim one due row
//! (`FOR UPDATE SKIP LOCKED`; a recipient's messages one at a time, in
//! the order of their events), compose the message from the booking as it
//! is now (`compose`), send it, and mark it sent in the transaction that
//! held the claim. Each message's `Message-ID` is made from the event id,
//! so the one case that can send twice (the process dies between the
//! server's "250 accepted" and the commit) sends the same message again,
//! which mail systems recognise as a duplicate.
//!
//! An SMTP outage only delays mail: a temporary failure (4xx, the server
//! unreachable) is retried with backoff for as long as it lasts, and the
//! checkout never waits for any of this. A permanent refusal (5xx) is
//! retried a few times (`REGION_MAIL_MAX_PERMANENT_FAILURES`), then the
//! row is `failed`, with the server's answer in `last_error`.
//! `mail_backlog` (messages waiting) and `mail_oldest_pending_seconds`
//! say when mail is late. Operators list the queue and re-send failed
//! messages or a booking's confirmation (`admin`, over `queue`).

pub mod admin;
pub mod compose;
pub mod qr;
pub mod queue;

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::bookings::store::load_view;
use crate::config::MailSettings;
use crate::tickets::{for_booking, TicketKeys};
pub use compose::{Composer, Facts, Kind, Letter, EVENT_TYPES};

/// The domain of `REGION_MAIL_FROM` (it ends every Message-ID).
pub fn sender_domain(from: &str) -> Result<String, String> {
    let mailbox: Mailbox = from.parse().map_err(|e| format!("{e} (in {from:?})"))?;
    Ok(mailbox.email.domain().to_owned())
}

/// What one attempt at the queue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Nothing was due.
    Idle,
    /// A message went out.
    Sent,
    /// The server refused or could not be reached; the row waits.
    Retry,
    /// Given up (permanent refusals, or nothing to say it with).
    Failed,
}

/// Sends the queue's messages through one SMTP server.
pub struct Mailer {
    db: PgPool,
    tickets: std::sync::Arc<TicketKeys>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    composer: Composer,
    backoff: Backoff,
    max_permanent: u32,
}

/// A claimed row.
struct Row {
    event_id: Uuid,
    kind: String,
    recipient: String,
    body: serde_json::Value,
    attempts: i32,
}

impl Mailer {
    /// A mailer for `settings` (None when `REGION_SMTP_URL` is unset);
    /// confirmations carry tickets signed with `tickets`.
    pub fn new(
        db: PgPool,
        settings: &MailSettings,
        tickets: std::sync::Arc<TicketKeys>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = settings.smtp_url.as_deref() else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("REGION_SMTP_URL is not an SMTP URL")?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from: Mailbox = settings
            .mail_from
            .parse()
            .context("REGION_MAIL_FROM is not an address")?;
        let domain = from.email.domain().to_owned();
        Ok(Some(Self {
            db,
            tickets,
            transport,
            from,
            composer: Composer::new(&settings.public_url, &domain),
            backoff: Backoff {
                base: Duration::from_millis(settings.mail_backoff_base_ms),
                max: Duration::from_secs(settings.mail_backoff_max_secs),
            },
            max_permanent: settings.mail_max_permanent_failures.max(1),
        }))
    }

    /// Claims one due message, sends it and records the outcome, all in
    /// one transaction (the claim's row lock keeps other workers and
    /// replicas off it meanwhile).
    pub async fn send_one(&self) -> anyhow::Result<Sent> {
        let mut tx = self.db.begin().await?;
        let row = sqlx::query_as!(
            Row,
            "SELECT event_id, kind, recipient, body, attempts FROM outgoing_mail m
              WHERE state = 'pending' AND next_attempt_at <= now()
                -- One recipient's messages in order: none while an earlier
                -- one waits or is being sent (its row is still pending).
                AND NOT EXISTS (
                    SELECT 1 FROM outgoing_mail e
                     WHERE e.state = 'pending' AND e.recipient = m.recipient AND e.seq < m.seq)
              ORDER BY next_attempt_at
              LIMIT 1
              FOR UPDATE SKIP LOCKED"
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Sent::Idle);
        };
        let attempts = row.attempts.saturating_add(1);
        let message = match self.message(&mut tx, &row).await {
            Ok(m) => m,
            Err(e) => {
                // Nothing to say it with (the booking is gone, a template
                // or zone defect): retrying would not help.
                tracing::warn!(event_id = %row.event_id, error = %e, "mail not composed; given up");
                give_up(&mut tx, row.event_id, attempts, &format!("{e:#}")).await?;
                tx.commit().await?;
                metrics::counter!("mail_failed_total", "reason" => "compose").increment(1);
                return Ok(Sent::Failed);
            }
        };
        match self.transport.send(message).await {
            Ok(_) => {
                sqlx::query!(
                    "UPDATE outgoing_mail
                        SET state = 'sent', sent_at = now(), attempts = $2, last_error = NULL
                      WHERE event_id = $1",
                    row.event_id,
                    attempts
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                metrics::counter!("mail_sent_total", "kind" => row.kind).increment(1);
                Ok(Sent::Sent)
            }
            Err(e) => {
                let why = e.to_string();
                let permanent = e.is_permanent();
                let delay = self
                    .backoff
                    .delay(u32::try_from(attempts).unwrap_or(u32::MAX), rand::random());
                let failed = sqlx::query_scalar!(
                    r#"UPDATE outgoing_mail
                          SET attempts = $2, last_error = $3,
                              next_attempt_at = now() + make_interval(secs => $4),
                              permanent_failures = permanent_failures + $5,
                              state = CASE WHEN permanent_failures + $5 >= $6
                                           THEN 'failed' ELSE state END
                        WHERE event_id = $1
                    RETURNING state = 'failed' AS "failed!""#,
                    row.event_id,
                    attempts,
                    why,
                    delay.as_secs_f64(),
                    i32::from(permanent),
                    i32::try_from(self.max_permanent).unwrap_or(i32::MAX)
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                if failed {
                    tracing::warn!(event_id = %row.event_id, error = %why, "mail refused permanently; given up");
                    metrics::counter!("mail_failed_total", "reason" => "refused").increment(1);
                    return Ok(Sent::Failed);
                }
                // Expected while the server is away: logged below ERROR.
                tracing::info!(event_id = %row.event_id, error = %why, attempts, "mail not sent; will retry");
                metrics::counter!(
                    "mail_send_failures_total",
                    "class" => if permanent { "permanent" } else { "temporary" }
                )
                .increment(1);
                Ok(Sent::Retry)
            }
        }
    }

    /// The row's message, composed from the booking as it is now.
    async fn message(&self, conn: &mut sqlx::PgConnection, row: &Row) -> anyhow::Result<Message> {
        let facts = facts(conn, row, &self.tickets).await?;
        let letter = self.composer.compose(&facts, Utc::now())?;
        let to: Mailbox = row
            .recipient
            .parse()
            .with_context(|| format!("recipient {:?} is not an address", row.recipient))?;
        let mut alternative = MultiPart::alternative_plain_html(letter.text, letter.html);
        if !letter.images.is_empty() {
            // The tickets' QR codes, shown in the HTML by Content-ID.
            let mut related = MultiPart::related().multipart(alternative);
            for (cid, png) in letter.images {
                related = related.singlepart(
                    Attachment::new_inline(cid).body(png, ContentType::parse("image/png")?),
                );
            }
            alternative = related;
        }
        let body = match letter.ics {
            Some(ics) => MultiPart::mixed().multipart(alternative).singlepart(
                Attachment::new("show.ics".to_owned()).body(
                    ics,
                    ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")?,
                ),
            ),
            None => alternative,
        };
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject)
            .message_id(Some(format!(
                "<{}@{}>",
                row.event_id,
                self.composer.domain()
            )))
            .multipart(body)?)
    }
}

/// Marks a row failed for good.
async fn give_up(
    conn: &mut sqlx::PgConnection,
    event_id: Uuid,
    attempts: i32,
    why: &str,
) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE outgoing_mail SET state = 'failed', attempts = $2, last_error = $3
          WHERE event_id = $1",
        event_id,
        attempts,
        why
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the row's message says, read now: a cancellation sent late still
/// names the refund's current state.
async fn facts(
    conn: &mut sqlx::PgConnection,
    row: &Row,
    keys: &TicketKeys,
) -> anyhow::Result<Facts> {
    let kind = Kind::of_event(&row.kind).with_context(|| format!("no e-mail for {}", row.kind))?;
    let booking_id: Uuid = row
        .body
        .get("booking_id")
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
        .context("the event names no booking")?;
    let booking = load_view(conn, booking_id)
        .await?
        .with_context(|| format!("booking {booking_id} not found"))?;
    let place = sqlx::query!(
        "SELECT v.city_code, s.ends_at FROM shows s
           JOIN screens sc ON sc.id = s.screen_id
           JOIN venues v ON v.id = sc.venue_id
          WHERE s.id = $1",
        booking.show_id.0
    )
    .fetch_one(&mut *conn)
    .await?;
    let amount = |field: &str| row.body.get(field).and_then(serde_json::Value::as_i64);
    let (refund_minor, refund_state) = match kind {
        Kind::Confirmed => (None, None),
        Kind::Cancelled => (
            amount("refund_minor"),
            booking.refund.as_ref().map(|r| refund_words(&r.status)),
        ),
        Kind::Refunded => (amount("amount_minor"), Some("sent".to_owned())),
    };
    let tickets = match kind {
        Kind::Confirmed => for_booking(conn, keys, booking_id)
            .await?
            .into_iter()
            .map(|t| (t.label, t.code))
            .collect(),
        _ => Vec::new(),
    };
    // The organiser's cancellation (`show_cancel`) quotes their reason.
    let show_cancelled = match kind {
        Kind::Cancelled
            if row.body.get("reason").and_then(|v| v.as_str()) == Some("show_cancelled") =>
        {
            let message = row.body.get("message").and_then(|v| v.as_str());
            Some(message.unwrap_or("no reason given").to_owned())
        }
        _ => None,
    };
    Ok(Facts {
        kind,
        tickets,
        show_cancelled,
        event_id: row.event_id,
        booking,
        city: place.city_code,
        ends_at: place.ends_at,
        refund_minor,
        refund_state,
    })
}

/// A refund's state as the buyer reads it.
fn refund_words(status: &str) -> String {
    match status {
        "PENDING" | "IN_PROGRESS" => "on its way (we will e-mail you when it is sent)".to_owned(),
        "SUCCEEDED" | "SETTLED_MANUALLY" => "sent".to_owned(),
        "FAILED" => "delayed (our team is on it)".to_owned(),
        other => other.to_lowercase(),
    }
}

/// Messages waiting, and how late the oldest is: for the gauges.
async fn backlog(db: &PgPool) -> anyhow::Result<(i64, f64)> {
    let r = sqlx::query!(
        "SELECT count(*) AS \"n!\",
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS \"oldest!\"
           FROM outgoing_mail WHERE state = 'pending'"
    )
    .fetch_one(db)
    .await?;
    Ok((r.n, r.oldest))
}

/// Runs `settings.mail_workers` senders until `shutdown` flips; returns
/// at once when no SMTP server is configured.
pub async fn run(
    db: PgPool,
    settings: MailSettings,
    tickets: std::sync::Arc<TicketKeys>,
    shutdown: watch::Receiver<bool>,
) {
    let mailer = match Mailer::new(db.clone(), &settings, tickets) {
        Ok(Some(m)) => std::sync::Arc::new(m),
        Ok(None) => {
            tracing::info!(
                "REGION_SMTP_URL is unset: no e-mail is sent (it waits in outgoing_mail)"
            );
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "mail is misconfigured: no e-mail is sent");
            return;
        }
    };
    let poll = Duration::from_millis(settings.mail_poll_ms);
    let mut workers = Vec::new();
    for _ in 0..settings.mail_workers {
        let (mailer, mut shutdown) = (mailer.clone(), shutdown.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let idle = match mailer.send_one().await {
                    Ok(Sent::Idle) => true,
                    Ok(_) => false,
                    Err(e) => {
                        tracing::warn!(error = ?e, "mail queue pass failed; retrying");
                        true
                    }
                };
                if *shutdown.borrow() {
                    return;
                }
                if idle {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }));
    }
    let mut shutdown = shutdown;
    loop {
        if let Ok((n, oldest)) = backlog(&db).await {
            metrics::gauge!("mail_backlog").set(n as f64);
            metrics::gauge!("mail_oldest_pending_seconds").set(oldest);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5).max(poll)) => {}
            _ = shutdown.changed() => break,
        }
    }
    for w in workers {
        let _ = w.await;
    }
}

#[cfg(test)]
mod tests {
    use super::refund_words;

    #[test]
    fn a_refund_settled_by_hand_is_sent_as_far_as_the_buyer_knows() {
        assert_eq!(refund_words("SUCCEEDED"), "sent");
        assert_eq!(refund_words("SETTLED_MANUALLY"), "sent");
        assert!(refund_words("FAILED").starts_with("delayed"));
    }
}
