//! A show's seat map with the number of the last change it includes:
//! what the live feeds snapshot and what `GET /v1/shows/{id}/seats`
//! serves. Redis holds the map (a bitfield, 2 bits per seat) and its
//! change counter; Postgres is the source of truth it is rebuilt from.

pub use super::feed::Snapshot;
use crate::error::ApiError;
use crate::holds::store::SeatStatus;
use crate::shows::ShowLayout;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use shared::seat::set_seat_state;
use shared::{SeatState, ShowId};
use std::time::Duration;

/// The show's seat-state bitfield (see [`snapshot`]).
pub async fn bitfield(state: &AppState, layout: &ShowLayout) -> Result<Vec<u8>, ApiError> {
    Ok(snapshot(state, layout.id).await?.map)
}

/// The show's seat map with its change number: from Redis if present,
/// else rebuilt from Postgres and stored back (only if no change was
/// numbered meanwhile, so the stored map is exact at its number); read
/// from Postgres alone while Redis is unavailable.
pub async fn snapshot(state: &AppState, show: ShowId) -> Result<Snapshot, ApiError> {
    let ttl = Duration::from_secs(state.settings.seatmap_ttl_secs);
    // A few tries: each refusal means a change landed while we read
    // Postgres, which a busy show's next try is unlikely to meet again.
    let mut seq = 0;
    for _ in 0..3 {
        if !state.redis.fast_path_available() {
            break;
        }
        let at = match state.redis.seatmap_snapshot(show).await {
            Ok(at) => at,
            Err(e) => {
                tracing::debug!(error = %e, "seat map read from Postgres");
                break;
            }
        };
        seq = at.seq;
        if let Some(map) = at.map {
            return Ok(Snapshot {
                seq: at.seq,
                map,
                degraded: false,
            });
        }
        let map = from_postgres(state, show, Utc::now()).await?;
        match state
            .redis
            .seatmap_put(show, at.seq, map.clone(), ttl)
            .await
        {
            Ok(true) => {
                return Ok(Snapshot {
                    seq: at.seq,
                    map,
                    degraded: false,
                })
            }
            Ok(false) => continue,
            Err(e) => tracing::debug!(error = %e, "seat map not cached"),
        }
        // Not stored: the map is current, its number uncertain. A viewer
        // given it converges, since every later delta names absolute states.
        return Ok(Snapshot {
            seq: at.seq,
            map,
            degraded: false,
        });
    }
    Ok(Snapshot {
        seq,
        map: from_postgres(state, show, Utc::now()).await?,
        degraded: !state.redis.fast_path_available(),
    })
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
