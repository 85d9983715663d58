//! Seat maps: `GET /v1/shows/{id}/seats` (with `?since=N`, the live
//! protocol's polling fallback, served by the show's live feed) and
//! `/availability`.
//!
//! Read from a Redis bitfield (2 bits per seat, one GET per read); rebuilt
//! from Postgres, the source of truth, when missing, and read straight
//! from Postgres while Redis is unavailable (`live::snapshot`). Rebuilt
//! maps carry a TTL so a lost best-effort update cannot leave a map stale
//! for long.

use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::live::snapshot::bitfield;
use crate::shows::ShowLayout;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use shared::api::{Availability, SeatMap, SeatMapSeat};
use shared::seat::seat_state_at;
use shared::SeatState;
use std::sync::Arc;

/// Seat-map routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/shows/{id}/seats", get(seat_map))
        .route("/v1/shows/{id}/availability", get(availability))
}

async fn layout(state: &AppState, raw: &str) -> Result<Arc<ShowLayout>, ApiError> {
    let show = crate::catalog::parse_show_id(raw)?;
    state.shows.require(&state.db, show).await
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

/// `?since=N`: the number of the caller's copy (live protocol v1).
#[derive(Debug, Deserialize)]
struct SeatsQuery {
    since: Option<u64>,
}

async fn seat_map(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeatsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let layout = layout(&state, &id).await?;
    if let Some(since) = q.since {
        return crate::live::poll(&state, &layout, since, &headers).await;
    }
    Ok(full_map(&state, &layout).await?.into_response())
}

async fn full_map(state: &AppState, layout: &ShowLayout) -> Result<ApiJson<SeatMap>, ApiError> {
    let map = bitfield(state, layout).await?;
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
