//! `GET /healthz` (the process is up), `GET /readyz` (Postgres answers and
//! a lock path works: Redis, or Postgres alone while the breaker is open),
//! and `GET /metrics` (Prometheus text: the recorder, its histogram
//! buckets, and the series registered at start-up).

use crate::state::AppState;
use crate::{payments, pool_sampler, reconcile};
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

/// Buckets of every `…_seconds` histogram: 1 ms to 10 s, about three per
/// decade (a Prometheus `histogram_quantile` interpolates between them).
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the batch-size histograms (`hold_batch_size`,
/// `group_commit_batch_size`): powers of two up to the largest batches.
pub const SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The exporter: histograms (buckets, aggregatable across replicas), not
/// summaries (quantiles per process, which cannot be added up).
fn prometheus_builder(
) -> Result<metrics_exporter_prometheus::PrometheusBuilder, metrics_exporter_prometheus::BuildError>
{
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), &SIZE_BUCKETS)
}

/// Installs the process-wide Prometheus recorder once (several apps may
/// share a process in tests and the load generator), then describes the
/// series and registers at zero those that only a rare event would create.
pub fn install_metrics() {
    PROMETHEUS.get_or_init(|| {
        let handle = prometheus_builder()
            .and_then(|b| b.install_recorder())
            .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
            .ok();
        if handle.is_some() {
            register_series();
        }
        handle
    });
}

/// Counters appear on `/metrics` only after their first increment, and an
/// alert's `increase()` misses the increment that creates a series. So the
/// series the alerts and the dashboard read are created here, at zero.
fn register_series() {
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
    describe_histogram!(
        crate::http_metrics::HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to the response head, by route template, method and status class"
    );
    describe_counter!(
        "payment_charges_total",
        "Charges a checkout asked the gateway for, whatever became of them"
    );
    describe_counter!(
        "payment_failures_total",
        "Checkout charges that took no money, by reason"
    );
    describe_gauge!(
        "redis_path_active",
        "1 while this replica places holds on the Redis fast path, 0 on Postgres alone"
    );
    describe_gauge!(
        "db_pool_connections",
        "Postgres connections of a pool, in use or idle"
    );
    describe_gauge!(
        "db_pool_max_connections",
        "The most connections a Postgres pool opens"
    );
    describe_histogram!(
        "db_pool_acquire_seconds",
        Unit::Seconds,
        "Wait of the sampler's probe for a pooled connection"
    );
    describe_counter!(
        "db_pool_acquire_timeouts_total",
        "Acquires that waited the whole acquire timeout (a request's, or the probe's)"
    );
    describe_gauge!("holds_in_flight", "Hold requests being placed now");
    describe_gauge!("refunds_pending", "Refunds not yet accepted by the gateway");
    describe_gauge!(
        "refunds_oldest_pending_seconds",
        "Age of the oldest pending refund"
    );
    for failure in payments::ChargeFailure::ALL {
        counter!("payment_failures_total", "reason" => failure.label()).increment(0);
    }
    for pool in [
        pool_sampler::MAIN,
        pool_sampler::WRITERS,
        pool_sampler::COORDINATION,
    ] {
        counter!("db_pool_acquire_timeouts_total", "pool" => pool).increment(0);
    }
    for path in ["redis", "postgres_only"] {
        counter!("holds_created_total", "path" => path).increment(0);
    }
    for stage in ["redis", "postgres", "postgres_nowait"] {
        counter!("hold_conflicts_total", "stage" => stage).increment(0);
    }
    for action in reconcile::ACTIONS {
        counter!("reconcile_fixed_total", "action" => action).increment(0);
    }
    for name in [
        "redis_breaker_opened_total",
        "holds_shed_total",
        "bookings_confirmed_total",
        "checkout_compensated_total",
        "payments_outcome_unknown_total",
        "payment_charges_total",
        "refunds_succeeded_total",
        "refund_retries_total",
        "refunds_failed_total",
        "refunds_settled_manually_total",
        "outbox_relay_errors_total",
    ] {
        counter!(name).increment(0);
    }
    for name in ["holds_in_flight", "live_sockets"] {
        gauge!(name).increment(0.0);
    }
}

async fn metrics_text() -> impl IntoResponse {
    match PROMETHEUS.get().and_then(|h| h.as_ref()) {
        Some(h) => (StatusCode::OK, h.render()),
        None => (StatusCode::OK, String::new()),
    }
}
