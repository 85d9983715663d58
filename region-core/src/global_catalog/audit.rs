//! The catalog service's audit log: an operator's write sent straight to
//! the catalog (a title created, a city listed for a title) appends a row
//! to `catalog_operator_audit` in the write's own transaction, as a
//! shard's writes append to its `operator_audit`; `GET
//! /v1/operator/audit` on the catalog reads it, newest first. The table
//! refuses UPDATE, DELETE and TRUNCATE.

use super::CatalogState;
use crate::audit::store::{Entry, Record};
use crate::audit::{Page, Query};
use crate::auth::{Operator, ReadOperator};
use crate::error::{ApiError, ApiJson, ApiQuery};
use axum::extract::State;
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

/// `GET /v1/operator/audit`: rows without a city (titles) and those of
/// the token's cities (listings); the shard's log's query and page.
pub(super) async fn list(
    State(state): State<CatalogState>,
    op: ReadOperator,
    ApiQuery(q): ApiQuery<Query>,
) -> Result<ApiJson<Page>, ApiError> {
    let f = crate::audit::checked(q, op.city_filter())?;
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
        f.cities.as_deref(),
        f.target_kind,
        f.target_id,
        f.actor,
        f.before_id,
        f.limit,
    )
    .fetch_all(&state.db)
    .await?;
    Ok(ApiJson(Page::of(entries, &f)))
}
