//! `GET /healthz` (the process is up), `GET /readyz` (Postgres answers and
//! a lock path works: Redis, or Postgres alone while the breaker is open),
//! and `GET /metrics` (Prometheus text).

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use shared::api::Health;
use std::sync::OnceLock;
use std::time::Duration;

/// Health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

fn lock_path(state: &AppState) -> &'static str {
    if state.redis.fast_path_available() {
        "redis"
    } else {
        "postgres_only"
    }
}

async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        postgres: None,
        lock_path: lock_path(&state).into(),
    })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let pg = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar!(r#"SELECT 1 AS "one!""#).fetch_one(&state.db),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let body = Health {
        status: if pg { "ok" } else { "unavailable" }.into(),
        postgres: Some(pg),
        lock_path: lock_path(&state).into(),
    };
    let code = if pg {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (code, Json(body)).into_response();
    if !pg {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(1),
        );
    }
    resp
}

static PROMETHEUS: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    OnceLock::new();

/// Installs the process-wide Prometheus recorder once (several apps may
/// share a process in tests and the load generator).
pub fn install_metrics() {
    PROMETHEUS.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
            .ok()
    });
}

async fn metrics_text() -> impl IntoResponse {
    match PROMETHEUS.get().and_then(|h| h.as_ref()) {
        Some(h) => (StatusCode::OK, h.render()),
        None => (StatusCode::OK, String::new()),
    }
}
