//! How answers are logged. ERROR means an operator must act, so only a
//! 500 (a bug; its cause is logged by [`crate::error::ApiError`]) or a
//! connection that failed mid-response reaches it. Expected answers under
//! load or an outage (503 `payment_pending`, a Redis-down or pool-exhausted
//! 503, 429) are the system working as designed: they are logged at WARN
//! (503, so a spike is visible) or INFO (4xx), never at ERROR.
//!
//! tower-http's default trace layer logs every 5xx at ERROR, which is what
//! this replaces.

use axum::http::{Response, StatusCode};
use std::time::Duration;
use tower_http::classify::{ServerErrorsAsFailures, ServerErrorsFailureClass, SharedClassifier};
use tower_http::trace::{DefaultMakeSpan, TraceLayer};
use tracing::{Level, Span};

/// The log level an answer with `status` deserves.
pub fn level_for(status: StatusCode) -> Level {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        Level::ERROR
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Level::WARN
    } else if status.is_client_error() {
        Level::INFO
    } else {
        Level::DEBUG
    }
}

/// Logs one finished request at [`level_for`] its status.
fn on_response<B>(resp: &Response<B>, latency: Duration, _span: &Span) {
    let status = resp.status();
    let ms = latency.as_millis() as u64;
    match level_for(status) {
        Level::ERROR => tracing::error!(status = status.as_u16(), ms, "request failed"),
        Level::WARN => tracing::warn!(
            status = status.as_u16(),
            ms,
            "request refused (overload or outage)"
        ),
        Level::INFO => tracing::info!(status = status.as_u16(), ms, "request rejected"),
        _ => tracing::debug!(status = status.as_u16(), ms, "request finished"),
    }
}

/// A failure classified by tower-http: a 5xx status (already logged by
/// [`on_response`]) or an error from the body stream (the client went
/// away mid-response: nothing for an operator to do).
fn on_failure(class: ServerErrorsFailureClass, _latency: Duration, _span: &Span) {
    if let ServerErrorsFailureClass::Error(e) = class {
        tracing::warn!(error = %e, "response stream failed");
    }
}

type Layer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    DefaultMakeSpan,
    tower_http::trace::DefaultOnRequest,
    fn(&Response<axum::body::Body>, Duration, &Span),
    tower_http::trace::DefaultOnBodyChunk,
    tower_http::trace::DefaultOnEos,
    fn(ServerErrorsFailureClass, Duration, &Span),
>;

/// The request-tracing layer of the router.
pub fn layer() -> Layer {
    TraceLayer::new_for_http()
        .on_response(on_response::<axum::body::Body> as fn(&_, _, &_))
        .on_failure(on_failure as fn(_, _, &_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_500_is_an_error() {
        assert_eq!(level_for(StatusCode::INTERNAL_SERVER_ERROR), Level::ERROR);
        for s in [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::BAD_GATEWAY,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert_eq!(level_for(s), Level::WARN, "{s}");
        }
        for s in [
            StatusCode::CONFLICT,
            StatusCode::PAYMENT_REQUIRED,
            StatusCode::NOT_FOUND,
        ] {
            assert_eq!(level_for(s), Level::INFO, "{s}");
        }
        assert_eq!(level_for(StatusCode::CREATED), Level::DEBUG);
    }
}
