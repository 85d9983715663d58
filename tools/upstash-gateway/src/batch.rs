//! Several commands per request: `POST /pipeline` (in order, not atomic,
//! an error reply or refusal per entry) and `POST /multi-exec` (atomic;
//! a command that cannot be queued or is refused fails the whole call,
//! and nothing runs). Both answer `[{"result": …} | {"error": "…"}, …]`.

use crate::app::BODY_LIMIT;
use crate::command::Command;
use crate::error::{GatewayError, UNSUPPORTED_COMMAND};
use crate::reply::{self, Encoding};
use crate::state::AppState;
use crate::unsupported;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/pipeline", post(pipeline).put(pipeline))
        .route("/multi-exec", post(multi_exec).put(multi_exec))
}

fn parse(body: Result<Bytes, BytesRejection>) -> Result<Vec<Command>, GatewayError> {
    let body = body.map_err(|r| GatewayError::from_body_rejection(r, BODY_LIMIT))?;
    Command::parse_json_batch(&body)
}

async fn pipeline(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, GatewayError> {
    let encoding = Encoding::from_headers(&headers);
    let commands = parse(body)?;
    let refused: Vec<bool> = commands
        .iter()
        .map(|c| unsupported::refusal(c).is_some())
        .collect();
    // Refused entries are left out of what Redis sees; the rest still run,
    // in order, as they would have without them.
    let allowed: Vec<Command> = commands
        .into_iter()
        .zip(&refused)
        .filter(|(_, refused)| !**refused)
        .map(|(c, _)| c)
        .collect();
    let mut replies = app.backend().pipeline(&allowed).await?.into_iter();
    let mut entries = Vec::with_capacity(refused.len());
    for refused in refused {
        entries.push(if refused {
            json!({ "error": UNSUPPORTED_COMMAND })
        } else {
            // The backend checked there is one reply per command sent.
            let value = replies
                .next()
                .ok_or_else(|| GatewayError::BadReply("fewer replies than commands".into()))?;
            reply::entry(value, encoding)
        });
    }
    Ok(Json(serde_json::Value::Array(entries)))
}

async fn multi_exec(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, GatewayError> {
    let encoding = Encoding::from_headers(&headers);
    let commands = parse(body)?;
    if let Some((command, why)) = commands
        .iter()
        .find_map(|c| unsupported::refusal(c).map(|why| (c, why)))
    {
        tracing::debug!(command = %command.name(), ?why, "refused in a transaction");
        return Err(GatewayError::Unsupported);
    }
    let results = app.backend().transaction(&commands).await?;
    let entries = results
        .into_iter()
        .map(|value| reply::entry(value, encoding))
        .collect();
    Ok(Json(serde_json::Value::Array(entries)))
}
