//! Seats out of sale: `POST` and `DELETE /v1/operator/shows/{id}/blocked-seats`
//! with `{"seats": ["A1", ...], "reason": "..."}` (house seats, a broken
//! seat).
//!
//! A blocked seat's row is `BLOCKED` in `show_seats`, the row both hold
//! paths lock and decide on (the Redis path's group commit and the
//! Postgres-only path alike): it reads as taken there, so a hold on it is
//! refused 409 `seats_unavailable` whichever replica or path takes it,
//! with no cache to invalidate. The seat map shows it unavailable.
//! Blocking a seat someone holds or has booked is refused (409
//! `seats_not_blockable`, naming the seats): the operator waits for the
//! hold to end, or cancels the booking, first. Blocking is all or
//! nothing, and blocking a blocked seat again only updates its reason.

use super::after_write;
use super::show_admin::{blocked_of, owned_show, BlockedSeat};
use crate::audit::store::{self as audit, Entry};
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::holds::store::SeatStatus;
use crate::state::AppState;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shared::seat::parse_seat_list;
use shared::{SeatState, ShowId};
use sqlx::PgConnection;
use uuid::Uuid;

/// Most seats one request blocks or unblocks.
const MAX_SEATS: usize = 1000;

/// The body of both verbs (`reason` is required to block, optional to
/// unblock, where the audit log keeps it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeatsBody {
    seats: Vec<String>,
    reason: Option<String>,
}

/// The answer: the show's blocked seats after the change.
#[derive(Debug, Serialize)]
pub(super) struct Blocked {
    show_id: Uuid,
    blocked_seats: Vec<BlockedSeat>,
}

/// A seat row as this module locks it.
struct Row {
    label: String,
    ordinal: i32,
    status: SeatStatus,
    blocked_reason: Option<String>,
}

/// Validates the labels; locks their rows (in the order every writer
/// locks seats); 422 `unknown_seat` for labels the show does not have.
async fn lock_seats(
    conn: &mut PgConnection,
    show: Uuid,
    seats: &[String],
) -> Result<Vec<Row>, ApiError> {
    let labels: Vec<String> = parse_seat_list(seats, MAX_SEATS)
        .map_err(|e| ApiError::unprocessable("invalid_seats", e.to_string()))?
        .iter()
        .map(|l| l.to_string())
        .collect();
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT s.label, ss.ordinal, ss.status AS "status: SeatStatus", ss.blocked_reason
             FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
            WHERE ss.show_id = $1 AND s.label = ANY($2)
            ORDER BY ss.show_id, ss.seat_id
              FOR UPDATE OF ss"#,
        show,
        &labels
    )
    .fetch_all(&mut *conn)
    .await?;
    let unknown: Vec<&str> = labels
        .iter()
        .map(String::as_str)
        .filter(|l| !rows.iter().any(|r| r.label == *l))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(
            "unknown_seat",
            format!("no such seats in this show: {}", unknown.join(", ")),
        ));
    }
    Ok(rows)
}

/// Each seat's state, for the audit log.
fn states(rows: &[Row]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            (
                r.label.clone(),
                serde_json::json!({
                    "status": r.status.as_db_str(),
                    "reason": r.blocked_reason,
                }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tracing::instrument(skip_all)]
pub(super) async fn block(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<SeatsBody>,
) -> Result<ApiJson<Blocked>, ApiError> {
    let Some(reason) = req.reason else {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "reason is required: why are these seats out of sale?",
        ));
    };
    super::check_name("reason", &reason, 200)?;
    let mut tx = state.db.begin().await?;
    let (id, city) = owned_show(&mut tx, &op, &raw).await?;
    let rows = lock_seats(&mut tx, id, &req.seats).await?;
    let taken: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.status, SeatStatus::Held | SeatStatus::Booked))
        .map(|r| r.label.as_str())
        .collect();
    if !taken.is_empty() {
        return Err(ApiError::Conflict {
            code: "seats_not_blockable",
            message: format!("seats held or booked: {}", taken.join(", ")),
            details: Some(serde_json::json!(taken)),
        });
    }
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    sqlx::query!(
        "UPDATE show_seats ss SET status = 'BLOCKED', blocked_reason = $3, version = ss.version + 1
           FROM seats s
          WHERE s.id = ss.seat_id AND ss.show_id = $1 AND s.label = ANY($2)",
        id,
        &labels as &[&str],
        &reason
    )
    .execute(&mut *tx)
    .await?;
    let entry = Entry {
        action: "show.block_seats",
        target_kind: "show",
        target_id: id.to_string(),
        city: Some(&city),
        before: Some(states(&rows)),
        after: Some(serde_json::json!({ "seats": labels, "status": "BLOCKED", "reason": reason })),
    };
    audit::record(&mut tx, &op, entry).await?;
    let blocked_seats = blocked_of(&mut tx, id).await?;
    tx.commit().await?;
    let newly: Vec<(i32, SeatState)> = rows
        .iter()
        .filter(|r| r.status == SeatStatus::Available)
        .map(|r| (r.ordinal, SeatState::Booked))
        .collect();
    state.redis.seatmap_update(&[(ShowId(id), newly)]).await;
    after_write(&state, &[city]).await;
    Ok(ApiJson(Blocked {
        show_id: id,
        blocked_seats,
    }))
}

/// Back on sale: the named seats that are blocked become available (the
/// others are left as they are, so a retried request does no harm).
#[tracing::instrument(skip_all)]
pub(super) async fn unblock(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<SeatsBody>,
) -> Result<ApiJson<Blocked>, ApiError> {
    if let Some(r) = &req.reason {
        super::check_name("reason", r, 200)?;
    }
    let mut tx = state.db.begin().await?;
    let (id, city) = owned_show(&mut tx, &op, &raw).await?;
    let rows = lock_seats(&mut tx, id, &req.seats).await?;
    let freed: Vec<&Row> = rows
        .iter()
        .filter(|r| r.status == SeatStatus::Blocked)
        .collect();
    let labels: Vec<&str> = freed.iter().map(|r| r.label.as_str()).collect();
    sqlx::query!(
        "UPDATE show_seats ss SET status = 'AVAILABLE', blocked_reason = NULL, version = ss.version + 1
           FROM seats s
          WHERE s.id = ss.seat_id AND ss.show_id = $1 AND s.label = ANY($2)
            AND ss.status = 'BLOCKED'",
        id,
        &labels as &[&str]
    )
    .execute(&mut *tx)
    .await?;
    let entry = Entry {
        action: "show.unblock_seats",
        target_kind: "show",
        target_id: id.to_string(),
        city: Some(&city),
        before: Some(states(&rows)),
        after: Some(
            serde_json::json!({ "seats": labels, "status": "AVAILABLE", "reason": req.reason }),
        ),
    };
    audit::record(&mut tx, &op, entry).await?;
    let blocked_seats = blocked_of(&mut tx, id).await?;
    tx.commit().await?;
    let changes: Vec<(i32, SeatState)> = freed
        .iter()
        .map(|r| (r.ordinal, SeatState::Available))
        .collect();
    state.redis.seatmap_update(&[(ShowId(id), changes)]).await;
    after_write(&state, &[city]).await;
    Ok(ApiJson(Blocked {
        show_id: id,
        blocked_seats,
    }))
}
