//! Live seat maps: `GET /v1/shows/{id}/seats` and `/availability`.
//!
//! Read from a Redis bitfield (2 bits per seat, one GET per read); rebuilt
//! from Postgres, the source of truth, when missing, and read straight
//! from Postgres while Redis is unavailable. Rebuilt maps carry a TTL so
//! a lost best-effort update cannot leave a map stale for long.

use crate::error::{ApiError, ApiJson, ApiPath};
use crate::holds::store::SeatStatus;
use crate::shows::ShowLayout;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use shared::api::{Availability, SeatMap, SeatMapSeat};
use shared::seat::{seat_state_at, set_seat_state};
use shared::{SeatState, ShowId};
use std::sync::Arc;
use std::time::Duration;

/// Seat-map routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/shows/{id}/seats", get(seat_map))
        .route("/v1/shows/{id}/availability", get(availability))
}

async fn layout(state: &AppState, raw: &str) -> Result<Arc<ShowLayout>, ApiError> {
    let show = crate::catalog::parse_show_id(raw)?;
    state
        .shows
        .get(&state.db, show)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_show", format!("no show {show}")))
}

/// The show's seat-state bitfield: from Redis if present, else rebuilt
/// from Postgres (and stored back when Redis is healthy).
pub async fn bitfield(state: &AppState, layout: &ShowLayout) -> Result<Vec<u8>, ApiError> {
    if state.redis.fast_path_available() {
        match state.redis.seatmap_get(layout.id).await {
            Ok(Some(map)) => return Ok(map),
            Ok(None) => {
                let map = from_postgres(state, layout.id, Utc::now()).await?;
                let ttl = Duration::from_secs(state.settings.seatmap_ttl_secs);
                if let Err(e) = state.redis.seatmap_put(layout.id, map.clone(), ttl).await {
                    tracing::debug!(error = %e, "seat map not cached");
                }
                return Ok(map);
            }
            Err(e) => tracing::debug!(error = %e, "seat map read from Postgres"),
        }
    }
    from_postgres(state, layout.id, Utc::now()).await
}

/// Builds the bitfield from `show_seats`; a hold past its end counts as
/// available even before the sweeper frees it.
async fn from_postgres(
    state: &AppState,
    show: ShowId,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, ApiError> {
    let rows = sqlx::query!(
        r#"SELECT ordinal, status AS "status: SeatStatus", hold_expires_at
             FROM show_seats WHERE show_id = $1"#,
        show.0
    )
    .fetch_all(&state.db)
    .await?;
    let mut map = Vec::new();
    for r in rows {
        let mut st = SeatState::from(r.status);
        if st == SeatState::Held && r.hold_expires_at.is_some_and(|t| t <= now) {
            st = SeatState::Available;
        }
        set_seat_state(&mut map, r.ordinal as usize, st);
    }
    Ok(map)
}

/// (available, held, booked) counts of a bitfield over `seats` seats.
pub fn counts(map: &[u8], seats: usize) -> (u32, u32, u32) {
    let mut c = (0, 0, 0);
    for i in 0..seats {
        match seat_state_at(map, i) {
            SeatState::Available => c.0 += 1,
            SeatState::Held => c.1 += 1,
            SeatState::Booked => c.2 += 1,
        }
    }
    c
}

async fn seat_map(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<SeatMap>, ApiError> {
    let layout = layout(&state, &id).await?;
    let map = bitfield(&state, &layout).await?;
    let (available, held, booked) = counts(&map, layout.seats.len());
    let seats = layout
        .seats
        .iter()
        .map(|s| SeatMapSeat {
            label: s.label.clone(),
            category: s.category.clone(),
            status: seat_state_at(&map, s.ordinal as usize),
        })
        .collect();
    Ok(ApiJson(SeatMap {
        show_id: layout.id,
        available,
        held,
        booked,
        seats,
    }))
}

async fn availability(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Availability>, ApiError> {
    let layout = layout(&state, &id).await?;
    let map = bitfield(&state, &layout).await?;
    let (available, _, _) = counts(&map, layout.seats.len());
    Ok(ApiJson(Availability {
        show_id: layout.id,
        available,
        total: layout.seat_count(),
    }))
}
