//! API-key authentication of every `/v1` and `/sandbox` route:
//! `Authorization: Bearer <api_key>`, as Stripe takes its secret key.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Middleware: passes requests with the right key, answers 401 otherwise.
pub(crate) async fn require_api_key(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(key) if key == app.api_key => next.run(request).await,
        Some(_) => ApiError::unauthorized("Invalid API key provided.").into_response(),
        None => ApiError::unauthorized(
            "No API key provided; send it as Authorization: Bearer <api_key>.",
        )
        .into_response(),
    }
}
