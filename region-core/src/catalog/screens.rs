//! Screens and their seat layouts (rows, numbers, price categories),
//! validated before anything is written.

use super::{check_name, exists};
use crate::audit::store::{self as audit, Entry};
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson};
use crate::ownership::{self, Owned};
use crate::state::AppState;
use axum::http::StatusCode;
use shared::api::{CreateScreen, Screen};
use shared::SeatLabel;
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
    Ok((StatusCode::CREATED, ApiJson(screen)))
}
