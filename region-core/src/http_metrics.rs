//! Request metrics: every answer's time to its response head, as the
//! histogram `http_request_duration_seconds{route,method,status_class}`,
//! and [`InFlight`], a gauge guard for work in progress.
//!
//! The `route` label is the route's template (`/v1/shows/{id}/holds`),
//! never the raw path: a label per show or hold id would grow the series
//! without bound. A request no route matched is `unmatched`.

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// The histogram's name.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The `route` label: the matched template, or [`UNMATCHED`].
pub fn route_label(matched: Option<&str>) -> String {
    matched.unwrap_or(UNMATCHED).to_owned()
}

/// The `method` label: the standard methods by name, any other as `other`
/// (a client may send any token as a method).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The `status_class` label: `1xx` (a WebSocket upgrade) … `5xx`.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Middleware (`axum::middleware::from_fn`) recording every request into
/// [`HTTP_REQUEST_DURATION`]. Layered with `Router::layer`, it runs after
/// routing, so the matched template is in the request's extensions.
pub async fn track(req: Request, next: Next) -> Response {
    let route = route_label(req.extensions().get::<MatchedPath>().map(|m| m.as_str()));
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics::histogram!(
        HTTP_REQUEST_DURATION,
        "route" => route,
        "method" => method,
        "status_class" => status_class(resp.status())
    )
    .record(started.elapsed().as_secs_f64());
    resp
}

/// Counts one piece of work in the gauge `name` while it lives: the
/// increment on [`InFlight::enter`], the decrement on drop, so an early
/// return, an error or a cancelled future (a client that went away) cannot
/// leave the gauge too high.
#[must_use = "the gauge counts the work only while the guard lives"]
pub struct InFlight {
    gauge: metrics::Gauge,
}

impl InFlight {
    /// Adds one to `name` until the guard is dropped.
    pub fn enter(name: &'static str) -> Self {
        let gauge = metrics::gauge!(name);
        gauge.increment(1.0);
        Self { gauge }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_are_the_first_digit() {
        assert_eq!(status_class(StatusCode::SWITCHING_PROTOCOLS), "1xx");
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::CREATED), "2xx");
        assert_eq!(status_class(StatusCode::PERMANENT_REDIRECT), "3xx");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::TOO_MANY_REQUESTS), "4xx");
        assert_eq!(status_class(StatusCode::INTERNAL_SERVER_ERROR), "5xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
    }

    #[test]
    fn routes_are_templates_or_unmatched() {
        assert_eq!(
            route_label(Some("/v1/shows/{id}/holds")),
            "/v1/shows/{id}/holds"
        );
        assert_eq!(route_label(None), UNMATCHED);
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"BREW").expect("a method token");
        assert_eq!(method_label(&odd), "other");
    }

    /// The guard gives its count back however the work ends, a future
    /// dropped mid-way (a client that went away) included.
    #[test]
    fn in_flight_is_given_back_by_a_cancelled_future() {
        use futures::FutureExt;
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let value = |text: String| {
            text.lines()
                .find_map(|l| l.strip_prefix("work_in_flight "))
                .map(str::to_owned)
        };
        metrics::with_local_recorder(&recorder, || {
            let kept = InFlight::enter("work_in_flight");
            let mut cancelled = Box::pin(async {
                let _counted = InFlight::enter("work_in_flight");
                std::future::pending::<()>().await;
            });
            assert!((&mut cancelled).now_or_never().is_none(), "still running");
            assert_eq!(value(handle.render()).as_deref(), Some("2"));
            drop(cancelled);
            assert_eq!(value(handle.render()).as_deref(), Some("1"));
            drop(kept);
            assert_eq!(value(handle.render()).as_deref(), Some("0"));
        });
    }

    /// Through a real router: a route with a parameter is recorded by its
    /// template and an unknown path as `unmatched` (the labels this module
    /// gets from axum, checked without a recorder: the middleware passes
    /// the template through its extension).
    #[tokio::test]
    async fn the_router_hands_the_middleware_its_template() {
        use axum::routing::get;
        use tower::ServiceExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let record = {
            let seen = seen.clone();
            move |req: Request, next: Next| {
                let seen = seen.clone();
                async move {
                    let route =
                        route_label(req.extensions().get::<MatchedPath>().map(|m| m.as_str()));
                    seen.lock().expect("lock").push(route);
                    next.run(req).await
                }
            }
        };
        let app = axum::Router::new()
            .route("/v1/holds/{id}", get(|| async { "ok" }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn(record));
        for path in ["/v1/holds/0192f0a4-aaaa", "/no/such/path"] {
            let req = Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .expect("request");
            app.clone().oneshot(req).await.expect("answer");
        }
        assert_eq!(
            *seen.lock().expect("lock"),
            vec!["/v1/holds/{id}".to_owned(), UNMATCHED.to_owned()]
        );
    }
}
