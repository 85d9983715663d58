//! The catalog service's audit log: an operator's write sent straight to
//! the catalog (a title created, a city listed for a title) appends a row
//! to `catalog_operator_audit` in the write's own transaction, as a
//! shard's writes append to its `operator_audit`; `GET
//! /v1/operator/audit` on the catalog reads it, newest first. The table
//! refuses UPDATE, DELETE and TRUNCATE.

use super::CatalogState;
use crate::audit::store::{Entry, Record};
use crate::auth::{Operator, ReadOperator};
use crate::error::{ApiError, ApiJson, ApiQuery};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

/// Appends `entry` as done by `who`, on the write's transaction.
pub(super) async fn record(
    conn: &mut PgConnection,
    who: &Operator,
    entry: Entry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO catalog_operator_audit
             (actor, action, target_kind, target_id, city_code, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        who.id,
        entry.action,
        entry.target_kind,
        entry.target_id,
        entry.city,
        entry.before,
        entry.after,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Largest page.
const MAX_LIMIT: i64 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Query {
    target_kind: Option<String>,
    target_id: Option<String>,
    actor: Option<String>,
    /// The previous page's `next`.
    before: Option<i64>,
    limit: Option<i64>,
}

/// A page of the log.
#[derive(Debug, Serialize)]
pub(super) struct Page {
    entries: Vec<Record>,
    /// Pass as `before` for the next (older) page; absent on the last.
    next: Option<i64>,
}

/// `GET /v1/operator/audit`: rows without a city (titles) and those of
/// the token's cities (listings).
pub(super) async fn list(
    State(state): State<CatalogState>,
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
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::unprocessable(
            "invalid_cursor",
            "before must be a positive id from a previous page's next",
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
    let cities = op.city_filter();
    let entries = sqlx::query_as!(
        Record,
        r#"SELECT id, at, actor, action, target_kind, target_id, city_code AS city, before, after
             FROM catalog_operator_audit
            WHERE ($1::text[] IS NULL OR city_code IS NULL OR city_code = ANY($1))
              AND ($2::text IS NULL OR target_kind = $2)
              AND ($3::text IS NULL OR target_id = $3)
              AND ($4::text IS NULL OR actor = $4)
              AND ($5::bigint IS NULL OR id < $5)
            ORDER BY id DESC
            LIMIT $6"#,
        cities.as_deref(),
        q.target_kind,
        q.target_id,
        q.actor,
        q.before,
        limit,
    )
    .fetch_all(&state.db)
    .await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(ApiJson(Page { entries, next }))
}
