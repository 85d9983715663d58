//! The gateway's one error type and its HTTP answer.
//!
//! The body is Upstash's `{"error": "<text>"}`, not the project's usual
//! `{"error": {"code", "message"}}`: this service exists to speak Upstash's
//! protocol, and the Worker's client must meet the same shape here as in
//! production. Redis's own error replies are passed through verbatim
//! (they are what Upstash returns too); causes of 5xx answers are logged,
//! never sent.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// What blocked, subscribing and connection-state commands get.
pub(crate) const UNSUPPORTED_COMMAND: &str = "ERR command not supported by the REST gateway";

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    /// 401: no token, or the wrong one.
    #[error("Unauthorized")]
    Unauthorized,
    /// 400: the request is not a well-formed command (bad JSON, wrong
    /// shapes, unusable argument types). The text starts with `ERR`.
    #[error("{0}")]
    BadRequest(String),
    /// 400: Redis answered the command with an error reply (verbatim).
    #[error("{0}")]
    Redis(String),
    /// 400: the command cannot work over a stateless, shared connection.
    #[error("{UNSUPPORTED_COMMAND}")]
    Unsupported,
    /// 413: the body is over the limit.
    #[error("ERR request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 404: no such endpoint.
    #[error("ERR no such endpoint")]
    NotFound,
    /// 405: the endpoint exists, the method does not.
    #[error("ERR method not allowed; use GET, HEAD, POST or PUT")]
    MethodNotAllowed,
    /// 503: Redis could not be reached or did not answer in time. Nothing
    /// can be said about whether the command ran.
    #[error("Redis is unavailable")]
    Unavailable(#[source] redis::RedisError),
    /// 502: Redis answered something the protocol does not allow here.
    #[error("unexpected reply from Redis")]
    BadReply(String),
}

impl GatewayError {
    /// The HTTP status of this answer.
    pub(crate) fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) | Self::Redis(_) | Self::Unsupported => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadReply(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A body the extractor could not read: over the limit, or broken off.
    pub(crate) fn from_body_rejection(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge(limit)
        } else {
            Self::BadRequest(format!(
                "ERR could not read the request body: {}",
                rejection.body_text()
            ))
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        match &self {
            Self::Unavailable(cause) => tracing::warn!(error = %cause, "Redis is unavailable"),
            Self::BadReply(what) => tracing::error!(reply = %what, "unexpected reply from Redis"),
            _ => {}
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status_code(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_is_upstash_shaped_and_hides_causes() {
        let cause = redis::RedisError::from((redis::ErrorKind::IoError, "secret detail"));
        let response = GatewayError::Unavailable(cause).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"error": "Redis is unavailable"}));
        assert_eq!(GatewayError::Unauthorized.to_string(), "Unauthorized");
        assert_eq!(GatewayError::Unsupported.to_string(), UNSUPPORTED_COMMAND);
    }
}
