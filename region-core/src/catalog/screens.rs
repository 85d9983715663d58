//! Screens and their seat layouts (rows, numbers, price categories),
//! validated before anything is written; listed, read, renamed and
//! deleted by operators.

use super::page::{self, Page};
use super::{after_write, audit_json, check_name, empty_patch, exists, parse_id};
use crate::audit::store::{self as audit, Entry};
use crate::auth::{CatalogOperator, Operator, ReadOperator};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::ownership::{self, Owned};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use shared::api::{CreateScreen, Screen};
use shared::SeatLabel;
use sqlx::PgConnection;
use std::collections::{BTreeSet, HashSet};
use uuid::Uuid;

/// Most seats one screen may have.
pub const MAX_SEATS_PER_SCREEN: usize = 100_000;

/// A validated seat row: (row label, number, category) per seat.
fn expand_layout(req: &CreateScreen) -> Result<Vec<(String, i32, String)>, ApiError> {
    if req.rows.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_layout",
            "a screen needs at least one row",
        ));
    }
    let mut rows_seen = HashSet::new();
    let mut seats = Vec::new();
    for r in &req.rows {
        if r.seats == 0 {
            return Err(ApiError::unprocessable(
                "invalid_layout",
                format!("row {} must have at least one seat", r.row),
            ));
        }
        SeatLabel::from_parts(&r.row, r.seats).map_err(|_| {
            ApiError::unprocessable(
                "invalid_layout",
                format!(
                    "row label {:?} must be 1-3 letters A-Z and seats 1-9999",
                    r.row
                ),
            )
        })?;
        if !rows_seen.insert(r.row.clone()) {
            return Err(ApiError::unprocessable(
                "invalid_layout",
                format!("row {} appears twice", r.row),
            ));
        }
        check_name("category", &r.category, 40)?;
        for n in 1..=r.seats {
            seats.push((r.row.clone(), i32::from(n), r.category.clone()));
        }
        if seats.len() > MAX_SEATS_PER_SCREEN {
            return Err(ApiError::unprocessable(
                "invalid_layout",
                format!("a screen may have at most {MAX_SEATS_PER_SCREEN} seats"),
            ));
        }
    }
    Ok(seats)
}

#[tracing::instrument(skip_all)]
pub(super) async fn create_screen(
    op: CatalogOperator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateScreen>,
) -> Result<(StatusCode, ApiJson<Screen>), ApiError> {
    check_name("name", &req.name, 200)?;
    let seats = expand_layout(&req)?;
    let mut conn = state.db.acquire().await?;
    let Some(city) = ownership::check(&mut conn, &op, Owned::Venue(req.venue_id)).await? else {
        return Err(ApiError::not_found(
            "unknown_venue",
            format!("no venue {}", req.venue_id),
        ));
    };
    drop(conn);
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    let res = sqlx::query!(
        "INSERT INTO screens (id, venue_id, name) VALUES ($1, $2, $3)",
        id,
        req.venue_id,
        &req.name
    )
    .execute(&mut *tx)
    .await;
    if let Err(e) = res {
        if !crate::db::is_unique_violation(&e) {
            return Err(e.into());
        }
        drop(tx);
        let existing = sqlx::query_scalar!(
            "SELECT id FROM screens WHERE venue_id = $1 AND name = $2",
            req.venue_id,
            &req.name
        )
        .fetch_optional(&state.db)
        .await?;
        return Err(exists(
            "screen_exists",
            format!("screen {:?} already exists in this venue", req.name),
            existing,
        ));
    }
    let ids: Vec<Uuid> = seats.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<&str> = seats.iter().map(|s| s.0.as_str()).collect();
    let numbers: Vec<i32> = seats.iter().map(|s| s.1).collect();
    let cats: Vec<&str> = seats.iter().map(|s| s.2.as_str()).collect();
    let ordinals: Vec<i32> = (0..seats.len() as i32).collect();
    sqlx::query!(
        "INSERT INTO seats (id, screen_id, row_label, number, category, ordinal)
         SELECT u.id, $2, u.row_label, u.number, u.category, u.ordinal
           FROM unnest($1::uuid[], $3::text[], $4::int[], $5::text[], $6::int[])
                AS u(id, row_label, number, category, ordinal)",
        &ids,
        id,
        &rows as &[&str],
        &numbers,
        &cats as &[&str],
        &ordinals
    )
    .execute(&mut *tx)
    .await?;
    let categories: BTreeSet<String> = seats.into_iter().map(|s| s.2).collect();
    let screen = Screen {
        id,
        venue_id: req.venue_id,
        name: req.name,
        seat_count: ids.len() as u32,
        categories: categories.into_iter().collect(),
    };
    let entry = Entry {
        action: "screen.create",
        target_kind: "screen",
        target_id: id.to_string(),
        city: Some(&city),
        before: None,
        after: Some(serde_json::to_value(&screen).map_err(anyhow::Error::from)?),
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[city]).await;
    Ok((StatusCode::CREATED, ApiJson(screen)))
}

/// `GET /v1/operator/screens` filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScreenQuery {
    venue_id: Option<Uuid>,
    limit: Option<i64>,
    after: Option<String>,
}

/// A screen with its venue's city.
struct ScreenRow {
    id: Uuid,
    venue_id: Uuid,
    name: String,
    city_code: String,
    seat_count: i64,
    categories: Vec<String>,
}

impl ScreenRow {
    fn screen(self) -> Screen {
        Screen {
            id: self.id,
            venue_id: self.venue_id,
            name: self.name,
            seat_count: self.seat_count as u32,
            categories: self.categories,
        }
    }
}

/// Screens of the token's cities (or of one venue), by id.
pub(super) async fn list_screens(
    op: ReadOperator,
    state: State<AppState>,
    ApiQuery(q): ApiQuery<ScreenQuery>,
) -> Result<ApiJson<Page<Screen>>, ApiError> {
    let limit = page::limit(q.limit)?;
    let after = page::id_cursor(q.after.as_deref())?;
    if let Some(v) = q.venue_id {
        let mut conn = state.db.acquire().await?;
        if ownership::check(&mut conn, &op, Owned::Venue(v))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(
                "unknown_venue",
                format!("no venue {v}"),
            ));
        }
    }
    let cities = op.city_filter();
    let rows = sqlx::query_as!(
        ScreenRow,
        r#"SELECT sc.id, sc.venue_id, sc.name, v.city_code,
                  (SELECT count(*) FROM seats s WHERE s.screen_id = sc.id) AS "seat_count!",
                  ARRAY(SELECT DISTINCT s.category FROM seats s WHERE s.screen_id = sc.id
                        ORDER BY s.category) AS "categories!"
             FROM screens sc JOIN venues v ON v.id = sc.venue_id
            WHERE ($1::text[] IS NULL OR v.city_code = ANY($1))
              AND ($2::uuid IS NULL OR sc.venue_id = $2)
              AND ($3::uuid IS NULL OR sc.id > $3)
            ORDER BY sc.id LIMIT $4"#,
        cities.as_deref(),
        q.venue_id,
        after,
        limit
    )
    .fetch_all(&state.db)
    .await?;
    let screens = rows.into_iter().map(ScreenRow::screen).collect();
    Ok(ApiJson(Page::new(screens, limit, |s: &Screen| {
        s.id.to_string()
    })))
}

/// The screen `id` (its row locked when `lock`), with its city.
async fn fetch_screen(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<ScreenRow>, sqlx::Error> {
    if lock {
        sqlx::query!("SELECT id FROM screens WHERE id = $1 FOR UPDATE", id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    sqlx::query_as!(
        ScreenRow,
        r#"SELECT sc.id, sc.venue_id, sc.name, v.city_code,
                  (SELECT count(*) FROM seats s WHERE s.screen_id = sc.id) AS "seat_count!",
                  ARRAY(SELECT DISTINCT s.category FROM seats s WHERE s.screen_id = sc.id
                        ORDER BY s.category) AS "categories!"
             FROM screens sc JOIN venues v ON v.id = sc.venue_id
            WHERE sc.id = $1"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

fn unknown_screen(id: Uuid) -> ApiError {
    ApiError::not_found("unknown_screen", format!("no screen {id}"))
}

/// 404 for an unknown screen, 403 outside the token's cities.
async fn owned_screen(conn: &mut PgConnection, op: &Operator, raw: &str) -> Result<Uuid, ApiError> {
    let id = parse_id("invalid_screen_id", raw)?;
    match ownership::check(conn, op, Owned::Screen(id)).await? {
        Some(_) => Ok(id),
        None => Err(unknown_screen(id)),
    }
}

pub(super) async fn get_screen(
    op: ReadOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<Screen>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let id = owned_screen(&mut conn, &op, &raw).await?;
    let row = fetch_screen(&mut conn, id, false).await?;
    row.map(|r| ApiJson(r.screen()))
        .ok_or_else(|| unknown_screen(id))
}

/// `PATCH /v1/operator/screens/{id}`: the name. The seat layout does not
/// change (shows, holds and bookings name its seats): a new layout is a
/// new screen.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchScreen {
    name: Option<String>,
}

#[tracing::instrument(skip_all)]
pub(super) async fn patch_screen(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<PatchScreen>,
) -> Result<ApiJson<Screen>, ApiError> {
    let Some(name) = req.name else {
        return Err(empty_patch());
    };
    check_name("name", &name, 200)?;
    let mut tx = state.db.begin().await?;
    let id = owned_screen(&mut tx, &op, &raw).await?;
    let row = fetch_screen(&mut tx, id, true)
        .await?
        .ok_or_else(|| unknown_screen(id))?;
    let city = row.city_code.clone();
    let before = row.screen();
    let res = sqlx::query!("UPDATE screens SET name = $2 WHERE id = $1", id, &name)
        .execute(&mut *tx)
        .await;
    match res {
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "screen_exists",
                format!("screen {name:?} already exists in this venue"),
            ))
        }
        r => r?,
    };
    let after = Screen {
        name,
        ..before.clone()
    };
    let entry = Entry {
        action: "screen.update",
        target_kind: "screen",
        target_id: id.to_string(),
        city: Some(&city),
        before: Some(audit_json(&before)?),
        after: Some(audit_json(&after)?),
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[city]).await;
    Ok(ApiJson(after))
}

/// `DELETE /v1/operator/screens/{id}`: only a screen no show plays on
/// (its seats go with it).
#[tracing::instrument(skip_all)]
pub(super) async fn delete_screen(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let id = owned_screen(&mut tx, &op, &raw).await?;
    let row = fetch_screen(&mut tx, id, true)
        .await?
        .ok_or_else(|| unknown_screen(id))?;
    let shows = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM shows WHERE screen_id = $1"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    if shows > 0 {
        return Err(ApiError::conflict(
            "screen_has_shows",
            format!("{shows} shows play on this screen: delete them first"),
        ));
    }
    sqlx::query!("DELETE FROM seats WHERE screen_id = $1", id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM screens WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    let city = row.city_code.clone();
    let entry = Entry {
        action: "screen.delete",
        target_kind: "screen",
        target_id: id.to_string(),
        city: Some(&city),
        before: Some(audit_json(&row.screen())?),
        after: None,
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[city]).await;
    Ok(StatusCode::NO_CONTENT)
}
