//! One command per request: `POST /` with a JSON array body, or a
//! path-style command (`GET /set/k/v/ex/100`, `POST /set/k` + body).
//! Answers `{"result": …}`, or 400 `{"error": "…"}` when Redis answers with
//! an error reply.

use crate::app::BODY_LIMIT;
use crate::command::Command;
use crate::error::GatewayError;
use crate::reply::{self, Encoding};
use crate::state::AppState;
use crate::unsupported;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", post(json_command).put(json_command))
        .route(
            "/{*command}",
            get(path_command).post(path_command).put(path_command),
        )
}

async fn json_command(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, GatewayError> {
    let body = body.map_err(|r| GatewayError::from_body_rejection(r, BODY_LIMIT))?;
    let command = Command::parse_json(&body)?;
    run(&app, &command, Encoding::from_headers(&headers)).await
}

async fn path_command(
    State(app): State<AppState>,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, GatewayError> {
    let Query(query) = query.map_err(|r| {
        GatewayError::BadRequest(format!("ERR unreadable query string: {}", r.body_text()))
    })?;
    let body = body.map_err(|r| GatewayError::from_body_rejection(r, BODY_LIMIT))?;
    // The raw path, not axum's decoded capture: segments are split first
    // and decoded after, so an encoded `/` stays inside its argument.
    let command = Command::parse_path(uri.path(), &body, &query)?;
    run(&app, &command, Encoding::from_headers(&headers)).await
}

async fn run(
    app: &AppState,
    command: &Command,
    encoding: Encoding,
) -> Result<Json<serde_json::Value>, GatewayError> {
    if let Some(why) = unsupported::refusal(command) {
        tracing::debug!(command = %command.name(), ?why, "refused");
        return Err(GatewayError::Unsupported);
    }
    let value = app.backend().single(command).await?;
    match reply::error_text(&value) {
        Some(error) => Err(GatewayError::Redis(error)),
        None => Ok(Json(json!({ "result": reply::to_json(value, encoding) }))),
    }
}
