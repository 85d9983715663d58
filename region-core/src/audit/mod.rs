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

/// The log's query: filters and the page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    target_kind: Option<String>,
    target_id: Option<String>,
    actor: Option<String>,
    /// The previous page's `next`.
    before: Option<i64>,
    limit: Option<i64>,
}

/// A page of the log.
#[derive(Debug, Serialize)]
pub struct Page {
    entries: Vec<Record>,
    /// Pass as `before` for the next (older) page; absent on the last.
    next: Option<i64>,
}

impl Page {
    /// The page of `entries` read with `filter`.
    pub fn of(entries: Vec<Record>, filter: &Filter) -> Self {
        let next = (entries.len() as i64 == filter.limit)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Self { entries, next }
    }
}

/// `q` checked (a 422 saying what is wrong), as the filter of a reader
/// whose token reaches `cities` (`None`: every city). The shard's log and
/// the global catalog's (`crate::global_catalog`) read the same query.
pub fn checked(q: Query, cities: Option<Vec<String>>) -> Result<Filter, ApiError> {
    let limit = crate::paging::limit(q.limit)?;
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
    Ok(Filter {
        cities,
        target_kind: q.target_kind,
        target_id: q.target_id,
        actor: q.actor,
        before_id: q.before,
        limit,
    })
}

async fn list(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<ApiJson<Page>, ApiError> {
    let filter = checked(q, op.city_filter())?;
    let mut conn = state.db.acquire().await?;
    let entries = store::list(&mut conn, &filter).await?;
    Ok(ApiJson(Page::of(entries, &filter)))
}
