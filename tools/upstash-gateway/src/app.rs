//! Builds and runs the gateway: the router (every endpoint behind the
//! token), and [`spawn`], which binds first (so `127.0.0.1:0` works) and
//! serves in a background task.

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::state::AppState;
use crate::{auth, batch, single};
use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

/// Largest request body accepted. Upstash's own limit is larger, but the
/// Worker's commands are small; a body this big is a bug worth a 413.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// The HTTP router over a built state.
fn router(state: AppState) -> Router {
    Router::new()
        .merge(batch::router())
        .merge(single::router())
        // Inner layer first: only requests that passed the token check
        // are counted.
        .route_layer(middleware::from_fn_with_state(state.clone(), count_request))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .fallback(|| async { GatewayError::NotFound })
        .method_not_allowed_fallback(|| async { GatewayError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn count_request(State(app): State<AppState>, request: Request, next: Next) -> Response {
    app.count_request();
    next.run(request).await
}

/// Validates `config`, binds its listen address and serves in a
/// background task until [`RunningGateway::stop`] (or until the handle is
/// dropped). Redis is connected on the first request, so this succeeds
/// while Redis is still down; requests then get 503 until it is up.
pub async fn spawn(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
    config.validate()?;
    let listen = config.listen_addr()?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding UPSTASH_GATEWAY_LISTEN={listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let state = AppState::new(&config)?;
    let app = router(state.clone());
    let (shutdown, stopping) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            // A send or a dropped handle both end the wait.
            .with_graceful_shutdown(async move {
                let _ = stopping.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "upstash gateway stopped serving");
        }
    });
    tracing::info!(%addr, "upstash gateway listening");
    Ok(RunningGateway {
        addr,
        state,
        shutdown,
        task,
    })
}

/// A gateway serving in the background.
pub struct RunningGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    state: AppState,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningGateway {
    /// Base URL, e.g. `http://127.0.0.1:41234`: what the Worker gets as
    /// `UPSTASH_REDIS_REST_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Redis commands answered so far (error replies included; refused or
    /// malformed ones, and the MULTI/EXEC wrapping of `/multi-exec`, not).
    /// A pipeline of three counts three.
    pub fn commands_served(&self) -> u64 {
        self.state.backend().commands_served()
    }

    /// Authenticated HTTP requests to the command endpoints so far,
    /// whatever their outcome: the Worker's round trips to Redis.
    pub fn requests_served(&self) -> u64 {
        self.state.requests_served()
    }

    /// Stops accepting, lets in-flight requests finish, and returns when
    /// the server task has ended.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "upstash gateway task failed");
        }
        tracing::info!("upstash gateway stopped");
    }
}
