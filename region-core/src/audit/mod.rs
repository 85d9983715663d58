//! The operators' audit log: `GET /v1/operator/audit`, newest first,
//! filtered by target, operator or city, and limited to the cities the
//! reader's token reaches. Writes append to it through [`store::record`]
//! in their own transaction; the table refuses updates and deletes.

pub mod store;

use crate::auth::ReadOperator;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use store::{Filter, Record};

/// The audit log's route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/operator/audit", get(list))
}

/// Largest page.
const MAX_LIMIT: i64 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    target_kind: Option<String>,
    target_id: Option<String>,
    actor: Option<String>,
    /// The previous page's `next`.
    before: Option<i64>,
    limit: Option<i64>,
}

/// A page of the log.
#[derive(Debug, Serialize)]
struct Page {
    entries: Vec<Record>,
    /// Pass as `before` for the next (older) page; absent on the last.
    next: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<ApiJson<Page>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("limit must be 1..={MAX_LIMIT}"),
        ));
    }
    if q.target_id.is_some() && q.target_kind.is_none() {
        return Err(ApiError::unprocessable(
            "invalid_filter",
            "target_id needs target_kind",
        ));
    }
    for (field, v) in [
        ("target_kind", &q.target_kind),
        ("target_id", &q.target_id),
        ("actor", &q.actor),
    ] {
        if let Some(v) = v {
            shared::text::check_line(field, v, 200)
                .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()))?;
        }
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::unprocessable(
            "invalid_cursor",
            "before must be a positive id from a previous page's next",
        ));
    }
    let filter = Filter {
        cities: op.city_filter(),
        target_kind: q.target_kind,
        target_id: q.target_id,
        actor: q.actor,
        before_id: q.before,
        limit,
    };
    let mut conn = state.db.acquire().await?;
    let entries = store::list(&mut conn, &filter).await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(ApiJson(Page { entries, next }))
}
