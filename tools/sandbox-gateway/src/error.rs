//! The gateway's one error type and its Stripe-shaped body
//! `{"error":{"type","code","message"}}` (plus the failed `payment_intent`
//! on a card decline). Messages are written for the caller; nothing
//! internal goes into them.

use crate::ledger::PaymentIntent;
use crate::reply::Reply;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer: HTTP status, Stripe error `type`, stable `code`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {kind}/{code}: {message}")]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
    /// Boxed: only declines carry one, and it would make every `Result`
    /// of this crate large.
    payment_intent: Option<Box<PaymentIntent>>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            payment_intent: None,
        }
    }

    /// 400 `invalid_request_error`: the request itself is wrong.
    pub(crate) fn invalid_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    /// 401 `authentication_error`: no or wrong API key.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            message,
        )
    }

    /// 404 `resource_missing`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "resource_missing",
            message,
        )
    }

    /// 404 for a path no route matches.
    pub(crate) fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unrecognized_url",
            "Unrecognized request URL.",
        )
    }

    /// 405 for a known path with the wrong method.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "This endpoint does not support that method.",
        )
    }

    /// 400: the Idempotency-Key was used for a different request.
    pub(crate) fn idempotency_key_reused() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            "idempotency_key_reused",
            "This Idempotency-Key was already used with different parameters or on another endpoint.",
        )
    }

    /// 409: the first request with this Idempotency-Key is still running.
    pub(crate) fn idempotency_key_in_use() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_error",
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry later.",
        )
    }

    /// 409: the caller voided this reference; nothing is charged.
    pub(crate) fn reference_voided() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "reference_voided",
            "This payment reference was voided; nothing was charged. Start a new payment.",
        )
    }

    /// 409: a charge with this reference is executing; ask again shortly.
    pub(crate) fn charge_in_progress() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "api_error",
            "charge_in_progress",
            "A charge with this reference is being processed; retry shortly to learn its outcome.",
        )
    }

    /// 402 `card_error`: the card was declined; carries the failed intent.
    pub(crate) fn card_declined(intent: PaymentIntent) -> Self {
        Self {
            payment_intent: Some(Box::new(intent)),
            ..Self::new(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                "card_declined",
                "Your card was declined.",
            )
        }
    }

    /// 500/503 `gateway_unavailable`: nothing was done; safe to retry.
    pub(crate) fn unavailable(status: StatusCode) -> Self {
        Self::new(
            status,
            "api_error",
            "gateway_unavailable",
            "The gateway is temporarily unavailable; nothing was charged or refunded. Retry with the same Idempotency-Key.",
        )
    }

    /// 504: the gateway hung and gave up; nothing was charged.
    pub(crate) fn gateway_timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "gateway_timeout",
            "The gateway timed out; nothing was charged. Retry with the same Idempotency-Key.",
        )
    }

    /// 502: the request WAS processed but its answer "got lost"; a retry
    /// with the same Idempotency-Key returns the real result.
    pub(crate) fn response_lost() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "response_lost",
            "The response was lost in transit. Retry with the same Idempotency-Key to learn the result.",
        )
    }

    /// The body as bytes, ready to store or send.
    pub(crate) fn into_reply(self) -> Reply {
        let body = Body {
            error: Detail {
                kind: self.kind,
                code: self.code,
                message: &self.message,
                payment_intent: self.payment_intent.as_deref(),
            },
        };
        Reply::json(self.status, &body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_reply().into_response()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_intent: Option<&'a PaymentIntent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let reply =
            ApiError::invalid_request("parameter_invalid", "amount must be positive").into_reply();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {
                "type": "invalid_request_error",
                "code": "parameter_invalid",
                "message": "amount must be positive",
            }})
        );
    }
}
