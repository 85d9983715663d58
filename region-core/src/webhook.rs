//! `POST /v1/webhooks/payments`: the gateway's asynchronous results.
//! The signature (`Sandbox-Signature: t=…,v1=…`, HMAC-SHA256 over
//! `"{t}.{body}"`) is checked before anything is read; a redelivered
//! event (same id) is acknowledged without acting twice.
//!
//! - `payment_intent.succeeded`: record the charge, then settle it (book
//!   or refund); this is how a "success whose response was lost" lands.
//! - `payment_intent.payment_failed`: close the in-flight payment.
//! - `refund.succeeded`: mark the refund done.

use crate::checkout::jobs::Confirm;
use crate::checkout::record;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

/// Signature header name.
pub const SIGNATURE_HEADER: &str = "sandbox-signature";

/// Accepted clock difference between the gateway and us.
const TOLERANCE_SECS: i64 = 300;

/// Webhook route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/webhooks/payments", post(receive))
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: EventObject,
}

#[derive(Debug, Deserialize)]
struct EventObject {
    id: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    failure_code: Option<String>,
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("missing_signature", "no Sandbox-Signature header"))?;
    shared::webhook_sig::verify(
        state.settings.gateway_webhook_secret.as_bytes(),
        sig,
        &body,
        chrono::Utc::now().timestamp(),
        TOLERANCE_SECS,
    )
    .map_err(|e| ApiError::bad_request("invalid_signature", e.to_string()))?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("malformed_event", e.to_string()))?;
    let reference = event
        .data
        .object
        .reference
        .as_deref()
        .and_then(|r| Uuid::parse_str(r).ok());
    let Some(reference) = reference else {
        // Not one of ours (another integration on the same account).
        return Ok(StatusCode::OK);
    };
    if event.kind == "payment_intent.succeeded" {
        confirm(&state, &event, reference).await?;
        metrics::counter!("payment_webhooks_total", "type" => event.kind.clone()).increment(1);
        return Ok(StatusCode::OK);
    }
    let fresh = sqlx::query!(
        "INSERT INTO webhook_events (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &event.id,
        &event.kind
    )
    .execute(&state.db)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        return Ok(StatusCode::OK);
    }
    // If handling fails the event id must not stay recorded, or the
    // gateway's redelivery would be ignored.
    if let Err(e) = handle(&state, &event, reference).await {
        let _ = sqlx::query!("DELETE FROM webhook_events WHERE event_id = $1", &event.id)
            .execute(&state.db)
            .await;
        return Err(e);
    }
    metrics::counter!("payment_webhooks_total", "type" => event.kind.clone()).increment(1);
    Ok(StatusCode::OK)
}

/// A charge announced: recorded and settled in one transaction, as the
/// checkout does (a charge is never left recorded but unsettled), through
/// the checkout's confirmation writer, so it shares its commit with the
/// checkouts of the moment. The delivery is recorded in the same
/// transaction: a redelivery finds it, a failure leaves no trace of it.
async fn confirm(state: &AppState, event: &Event, reference: Uuid) -> Result<(), ApiError> {
    let job = Confirm {
        payment_id: reference,
        gateway_id: Some(event.data.object.id.clone()),
        answer_to: None,
        delivery: Some((event.id.clone(), event.kind.clone())),
    };
    state
        .checkout
        .confirm
        .submit_or_shed(job, "deliver again shortly")
        .await
        .map(|_| ())
}

async fn handle(state: &AppState, event: &Event, reference: Uuid) -> Result<(), ApiError> {
    let object = &event.data.object;
    match event.kind.as_str() {
        "payment_intent.payment_failed" => {
            let code = object.failure_code.as_deref().unwrap_or("payment_failed");
            let mut tx = state.db.begin().await?;
            record::record_failure(&mut tx, reference, Some(&object.id), code).await?;
            tx.commit().await?;
        }
        "refund.succeeded" => {
            crate::refunds::succeed(&state.db, reference, &object.id).await?;
        }
        _ => {}
    }
    state.outbox_kick.notify_one();
    state.refund_kick.notify_one();
    Ok(())
}
