//! Token authentication of every endpoint, as Upstash does it:
//! `Authorization: Bearer <token>`, or `?_token=<token>` in the query.

use crate::error::GatewayError;
use crate::state::AppState;
use axum::extract::{Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Query parameter that carries the token (never a command argument).
pub(crate) const TOKEN_PARAM: &str = "_token";

/// Middleware: passes requests with the right token, answers 401
/// `{"error":"Unauthorized"}` otherwise.
pub(crate) async fn require_token(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let from_header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let presented = from_header.or_else(|| {
        Query::<Vec<(String, String)>>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(pairs)| pairs.into_iter().find(|(k, _)| k == TOKEN_PARAM))
            .map(|(_, token)| token)
    });
    if presented.is_some_and(|token| app.token_matches(&token)) {
        next.run(request).await
    } else {
        GatewayError::Unauthorized.into_response()
    }
}
