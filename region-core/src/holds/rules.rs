//! What a hold's stored state means for the caller: its API view and the
//! refusals of operations on it. Pure (callers pass `now`); shared by the
//! hold endpoints and checkout.

use super::store::StoredHold;
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use shared::api::{Hold, HoldState};
use shared::{HoldId, ShowId};

/// The refusal of holds, extensions and checkouts once the show started.
pub fn show_started() -> ApiError {
    ApiError::conflict("show_started", "the show has already started")
}

/// The refusal of holds and checkouts once the organiser cancelled the
/// show (`crate::show_cancel`).
pub fn show_cancelled() -> ApiError {
    ApiError::conflict(
        "show_cancelled",
        "the show has been cancelled; its bookings are refunded in full",
    )
}

/// A hold id from the path, or 400 `invalid_hold_id`.
pub fn parse_hold_id(raw: &str) -> Result<HoldId, ApiError> {
    HoldId::parse(raw).map_err(|e| ApiError::bad_request("invalid_hold_id", e.to_string()))
}

/// The API view of a stored hold at `now` (an active hold past its
/// expiry reads as expired).
pub fn hold_view(h: &StoredHold, now: DateTime<Utc>) -> Hold {
    let mut state = HoldState::from_db_str(&h.state).unwrap_or(HoldState::Expired);
    if state == HoldState::Active && h.expires_at <= now {
        state = HoldState::Expired;
    }
    Hold {
        hold_id: HoldId(h.id),
        show_id: ShowId(h.show_id),
        seats: h.seats.iter().map(|s| s.0.clone()).collect(),
        state,
        expires_at: h.expires_at,
        extended: h.extended,
    }
}

/// Why an active-hold operation changed nothing.
pub fn not_active_error(h: &StoredHold, now: DateTime<Utc>) -> ApiError {
    match hold_view(h, now).state {
        HoldState::Expired => ApiError::Gone {
            code: "hold_expired",
            message: "the hold has expired; its seats may have been taken".into(),
        },
        HoldState::Active if h.extended => {
            ApiError::conflict("hold_already_extended", "a hold may be extended only once")
        }
        HoldState::Active => ApiError::Gone {
            code: "hold_lost",
            message: "the hold no longer owns all its seats".into(),
        },
        other => ApiError::conflict(
            "hold_not_active",
            format!("the hold is {}", other.as_db_str()),
        ),
    }
}
