//! Builds and runs the gateway: the router (authenticated `/v1` and
//! `/sandbox` routes, open `/healthz`), and [`spawn`], which binds first
//! (so `127.0.0.1:0` works) and serves in a background task.

use crate::config::SandboxConfig;
use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, control, intents, refunds};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Json, Router};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

/// Largest request body accepted (every body here is a few hundred bytes).
const BODY_LIMIT: usize = 64 * 1024;

/// The HTTP router over a built state.
fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .merge(intents::router())
        .merge(refunds::router())
        .merge(control::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    Router::new()
        .merge(authenticated)
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // 5xx answers here are injected faults, logged as such by the
        // handlers; tower-http would report each one as an ERROR.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .with_state(state)
}

/// Validates `config`, binds its listen address and serves in a
/// background task until [`RunningSandbox::stop`] (or until the handle is
/// dropped).
pub async fn spawn(config: SandboxConfig) -> anyhow::Result<RunningSandbox> {
    config.validate()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding SANDBOX_LISTEN={}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = AppState::new(&config, shutdown_rx)?;
    let app = router(state.clone());
    let stopping = state.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopping.shutting_down().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "sandbox gateway stopped serving");
        }
    });
    tracing::info!(%addr, "sandbox gateway listening");
    Ok(RunningSandbox {
        addr,
        state,
        shutdown: shutdown_tx,
        task,
    })
}

/// A sandbox gateway serving in the background.
pub struct RunningSandbox {
    /// Where it listens.
    pub addr: SocketAddr,
    state: AppState,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningSandbox {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Idempotency keys whose request is executing right now (a hung
    /// `pm_fault_timeout` attempt, say). Tests wait on it to send a
    /// concurrent retry, which must get 409 `idempotency_key_in_use`.
    pub fn in_flight_requests(&self) -> usize {
        self.state.books().idempotency.in_flight()
    }

    /// Stops serving: hung fault requests answer at once, pending webhook
    /// retries are dropped, and in-flight requests are drained.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "sandbox gateway task failed");
        }
        tracing::info!("sandbox gateway stopped");
    }
}
