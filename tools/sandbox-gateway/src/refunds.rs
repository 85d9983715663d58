//! Refunds: `POST /v1/refunds`, full or partial, never more than what is
//! left of a succeeded intent; and the `refunds_fail_next` and
//! `refunds_refuse_next` faults.

use crate::error::ApiError;
use crate::idempotency::{self, Outcome};
use crate::ledger::{IntentStatus, PaymentIntent, Refund};
use crate::reply::Reply;
use crate::request;
use crate::state::{now_unix, AppState};
use crate::webhooks::{self, EventType};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

/// Idempotency scope of this endpoint.
const ENDPOINT: &str = "POST /v1/refunds";

/// The refund route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/refunds", post(create))
}

/// `POST /v1/refunds` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRefund {
    payment_intent: String,
    amount: i64,
    reference: String,
}

#[tracing::instrument(skip_all)]
async fn create(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let checked = request::idempotency_key(&headers).and_then(|key| {
        let (body, value) = request::json_body::<CreateRefund>(&body)?;
        request::positive_amount(body.amount)?;
        request::reference(&body.reference)?;
        Ok((key, body, value))
    });
    let (key, refund, value) = match checked {
        Ok(checked) => checked,
        Err(e) => return e.into_response(),
    };
    // The injected outage hits every well-formed refund request, replays
    // included, as a real outage would; it comes before the idempotency
    // store, so nothing about the key is recorded.
    if app.books().faults.take_refund_failure() {
        tracing::info!(reference = %refund.reference, "injecting a refund failure");
        return ApiError::unavailable(StatusCode::SERVICE_UNAVAILABLE).into_response();
    }
    // A refusal for good (a 400 the same request would get again), also
    // before the idempotency store: like a gateway's validation error it
    // records nothing, so an operator's retry after the cause is fixed
    // (the fault switched off) goes through under the same key.
    if app.books().faults.take_refund_refusal() {
        tracing::info!(reference = %refund.reference, "injecting a refund refusal");
        return ApiError::invalid_request(
            "refund_refused",
            "The refund was refused (sandbox fault refunds_refuse_next).",
        )
        .into_response();
    }
    idempotency::run(&app, key, ENDPOINT, value, |_attempt| async {
        Outcome::Final(execute(&app, refund))
    })
    .await
}

/// Applies the refund if the rules allow it; a refusal is final (stored),
/// as it is at Stripe.
fn execute(app: &AppState, req: CreateRefund) -> Reply {
    let refund = {
        let mut books = app.books();
        let Some(intent) = books.ledger.intent(&req.payment_intent) else {
            return ApiError::not_found(format!(
                "No such payment_intent: {:?}.",
                req.payment_intent
            ))
            .into_reply();
        };
        if let Err(e) = check(intent, req.amount) {
            return e.into_reply();
        }
        let refund = Refund {
            id: format!("re_{}", uuid::Uuid::new_v4().simple()),
            object: "refund",
            payment_intent: req.payment_intent,
            amount: req.amount,
            status: "succeeded",
            reference: req.reference,
            created: now_unix(),
        };
        books.ledger.add_refund(refund.clone());
        refund
    };
    webhooks::dispatch(app, EventType::RefundSucceeded, &refund);
    Reply::json(StatusCode::OK, &refund)
}

/// The refund rules: only a succeeded intent, never more than is left.
fn check(intent: &PaymentIntent, amount: i64) -> Result<(), ApiError> {
    if intent.status != IntentStatus::Succeeded {
        return Err(ApiError::invalid_request(
            "charge_not_succeeded",
            format!(
                "payment_intent {} did not succeed; there is nothing to refund.",
                intent.id
            ),
        ));
    }
    let left = intent.amount - intent.amount_refunded;
    if amount > left {
        return Err(ApiError::invalid_request(
            "amount_too_large",
            format!(
                "Refund amount {amount} is greater than what is left to refund ({left}) on {}.",
                intent.id
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(status: IntentStatus, amount: i64, refunded: i64) -> PaymentIntent {
        PaymentIntent::sample(status, amount, refunded)
    }

    fn code(r: Result<(), ApiError>) -> String {
        let reply = r.unwrap_err().into_reply();
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        v["error"]["code"].as_str().unwrap().to_string()
    }

    #[test]
    fn rules() {
        let ok = intent(IntentStatus::Succeeded, 1000, 400);
        assert!(check(&ok, 600).is_ok());
        assert!(check(&ok, 1).is_ok());
        assert_eq!(code(check(&ok, 601)), "amount_too_large");
        let failed = intent(IntentStatus::Failed, 1000, 0);
        assert_eq!(code(check(&failed, 1)), "charge_not_succeeded");
        let spent = intent(IntentStatus::Succeeded, 1000, 1000);
        assert_eq!(code(check(&spent, 1)), "amount_too_large");
    }
}
