//! Webhook events: built when an intent succeeds or fails and when a
//! refund succeeds, signed with `shared::webhook_sig` in the
//! `Sandbox-Signature` header, and POSTed by a task of their own, so an
//! API answer never waits for a receiver. Delivery is retried with
//! exponential backoff until a 2xx, a bounded number of times.

use crate::state::{now_unix, AppState};
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use serde::Serialize;
use std::time::Duration;

/// Header carrying `t=…,v1=…`.
pub const SIGNATURE_HEADER: &str = "Sandbox-Signature";

/// Wait before the second attempt; doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Attempts before an event is given up on (about 32 s of trying).
const MAX_ATTEMPTS: u32 = 8;

/// An event type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventType {
    IntentSucceeded,
    IntentFailed,
    RefundSucceeded,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::IntentSucceeded => "payment_intent.succeeded",
            Self::IntentFailed => "payment_intent.payment_failed",
            Self::RefundSucceeded => "refund.succeeded",
        }
    }
}

#[derive(Serialize)]
struct Event<'a, T> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    created: i64,
    data: EventData<'a, T>,
}

#[derive(Serialize)]
struct EventData<'a, T> {
    object: &'a T,
}

/// Sends an event about `object` (an intent or a refund) to the current
/// webhook URL, if there is one. Returns at once; call without holding
/// the books' lock.
pub(crate) fn dispatch(app: &AppState, kind: EventType, object: &impl Serialize) {
    let Some(url) = app.books().webhook_url.clone() else {
        return;
    };
    let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let event = Event {
        id: &id,
        kind: kind.as_str(),
        created: now_unix(),
        data: EventData { object },
    };
    let body = match serde_json::to_vec(&event) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            tracing::error!(error = %e, event = %id, "serializing a webhook event");
            return;
        }
    };
    let app = app.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = deliver(&app, &url, &id, kind, body) => {}
            // Pending retries die with the gateway.
            () = app.shutting_down() => {}
        }
    });
}

async fn deliver(app: &AppState, url: &str, id: &str, kind: EventType, body: Bytes) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        // Signed per attempt, so the timestamp says when this copy was
        // sent and a receiver's staleness check does not reject retries.
        let signature = shared::webhook_sig::sign(app.webhook_secret.as_bytes(), now_unix(), &body);
        let result = app
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(event = %id, kind = kind.as_str(), attempt, "webhook delivered");
                return;
            }
            Ok(response) => tracing::warn!(
                event = %id, kind = kind.as_str(), attempt, status = %response.status(),
                "webhook receiver refused the event"
            ),
            Err(e) => tracing::warn!(
                event = %id, kind = kind.as_str(), attempt, error = %e,
                "webhook delivery failed"
            ),
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::error!(event = %id, kind = kind.as_str(), url, "webhook given up after {MAX_ATTEMPTS} attempts");
}
