//! The `operator_audit` table: one row per operator write, appended in the
//! write's own transaction (so a write and its record commit together or
//! not at all), and read back newest first, keyset-paged.

use crate::auth::Operator;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

/// One operator write, as the caller describes it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// `<kind>.<verb>`: `show.cancel`, `refund.settle`, `venue.create`.
    pub action: &'static str,
    /// The kind of row acted on: `show`, `refund`, `venue`, ...
    pub target_kind: &'static str,
    /// Its id (or code, for a city).
    pub target_id: String,
    /// The city it belongs to; `None` for what every city shares.
    pub city: Option<&'a str>,
    /// The row before the write (`None` for a create).
    pub before: Option<serde_json::Value>,
    /// The row after the write (`None` for a delete).
    pub after: Option<serde_json::Value>,
}

/// Appends `entry` as done by `who`, on `conn` (the write's transaction).
pub async fn record(
    conn: &mut PgConnection,
    who: &Operator,
    entry: Entry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO operator_audit (actor, action, target_kind, target_id, city_code, before, after)
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

/// A row of the log as operators read it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Position in the log (the page cursor).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (the token's subject).
    pub actor: String,
    /// What.
    pub action: String,
    /// To what kind of row.
    pub target_kind: String,
    /// Which.
    pub target_id: String,
    /// In which city.
    pub city: Option<String>,
    /// Before.
    pub before: Option<serde_json::Value>,
    /// After.
    pub after: Option<serde_json::Value>,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these cities (and rows without a city); `None`: all.
    pub cities: Option<Vec<String>>,
    /// Only this kind of target.
    pub target_kind: Option<String>,
    /// Only this target (with `target_kind`).
    pub target_id: Option<String>,
    /// Only this operator's writes.
    pub actor: Option<String>,
    /// Only rows before this id (the previous page's `next`).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Rows matching `f`, newest first.
pub async fn list(conn: &mut PgConnection, f: &Filter) -> Result<Vec<Record>, sqlx::Error> {
    sqlx::query_as!(
        Record,
        r#"SELECT id, at, actor, action, target_kind, target_id, city_code AS city, before, after
             FROM operator_audit
            WHERE ($1::text[] IS NULL OR city_code IS NULL OR lower(city_code) = ANY($1))
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
    .fetch_all(conn)
    .await
}
