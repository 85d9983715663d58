//! Bookings: `GET /v1/bookings`, `GET /v1/bookings/{id}` (id or booking
//! number), `GET /v1/bookings/{id}/cancellation-quote` and
//! `POST /v1/bookings/{id}/cancel`.
//!
//! Cancelling is one transaction: booking CANCELLED, seats AVAILABLE (and
//! the seat map updated right after), a refund row per the policy stored
//! with the booking, and the outbox event. The refund itself is sent to
//! the gateway by the refund worker, which retries until it lands.

pub mod store;

use crate::auth::User;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::idempotency::{self, KeyState, StoredResponse};
use crate::outbox;
use crate::redis_path::booked_value;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use shared::api::{Booking, BookingList, CancellationQuote};
use shared::booking_number::BookingNumber;
use shared::refund::CancelRefused;
use shared::{SeatState, ShowId};
use sqlx::PgConnection;
use store::{BookingHead, BookingRef, BookingStatus};
use uuid::Uuid;

/// Booking routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/bookings", get(list_bookings))
        .route("/v1/bookings/{id}", get(get_booking))
        .route("/v1/bookings/{id}/cancellation-quote", get(quote))
        .route("/v1/bookings/{id}/cancel", post(cancel))
        .route("/v1/bookings/{id}/tickets", get(tickets))
}

/// `GET /v1/bookings/{id}/tickets`: the signed ticket of each seat (the
/// owner's only; none once cancelled).
async fn tickets(
    State(state): State<AppState>,
    user: User,
    ApiPath(raw): ApiPath<String>,
) -> Result<axum::Json<shared::api::BookingTickets>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let head = owned_head(&mut conn, &user, &raw, false).await?;
    let tickets = crate::tickets::for_booking(&mut conn, &state.tickets, head.id).await?;
    Ok(axum::Json(shared::api::BookingTickets {
        booking_id: head.id,
        tickets,
    }))
}

/// A booking named by its id (UUID) or its booking number.
pub(crate) fn parse_ref(raw: &str) -> Result<BookingRef, ApiError> {
    if let Ok(id) = Uuid::parse_str(raw) {
        return Ok(BookingRef::Id(id));
    }
    BookingNumber::parse(raw)
        .map(BookingRef::Number)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_booking_id",
                format!("expected a booking id (UUID) or booking number: {e}"),
            )
        })
}

fn unknown(raw: &str) -> ApiError {
    ApiError::not_found("unknown_booking", format!("no booking {raw}"))
}

/// The caller's booking; someone else's is "not found".
async fn owned_head(
    conn: &mut sqlx::PgConnection,
    user: &User,
    raw: &str,
    for_update: bool,
) -> Result<BookingHead, ApiError> {
    let r = parse_ref(raw)?;
    match store::head(conn, &r, for_update).await? {
        Some(h) if h.user_id == user.id => Ok(h),
        _ => Err(unknown(raw)),
    }
}

async fn view(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Booking, ApiError> {
    store::load_view(conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_booking", format!("no booking {id}")))
}

async fn get_booking(
    State(state): State<AppState>,
    user: User,
    ApiPath(raw): ApiPath<String>,
) -> Result<axum::Json<Booking>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let head = owned_head(&mut conn, &user, &raw, false).await?;
    Ok(axum::Json(view(&mut conn, head.id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list_bookings(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<BookingList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            "limit must be 1..=200",
        ));
    }
    let mut conn = state.db.acquire().await?;
    let bookings = store::list_for_user(&mut conn, &user.id, limit).await?;
    Ok(axum::Json(BookingList { bookings }))
}

fn already_cancelled(b: &Booking) -> ApiError {
    ApiError::Conflict {
        code: "already_cancelled",
        message: format!("booking {} is already cancelled", b.number),
        details: Some(serde_json::json!({
            "booking_id": b.id,
            "cancelled_at": b.cancelled_at,
            "refund": b.refund,
        })),
    }
}

fn show_started() -> ApiError {
    ApiError::conflict(
        "show_started",
        "the show has started; bookings can no longer be cancelled",
    )
}

async fn quote(
    State(state): State<AppState>,
    user: User,
    ApiPath(raw): ApiPath<String>,
) -> Result<axum::Json<CancellationQuote>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let head = owned_head(&mut conn, &user, &raw, false).await?;
    let b = view(&mut conn, head.id).await?;
    if head.status == BookingStatus::Cancelled {
        return Err(already_cancelled(&b));
    }
    let now = Utc::now();
    let quote = head
        .refund_policy
        .quote(head.amount_minor, head.show_starts_at, now)
        .map_err(|CancelRefused::ShowStarted| show_started())?;
    Ok(axum::Json(CancellationQuote {
        booking_id: b.id,
        number: b.number,
        amount_minor: b.amount_minor,
        currency: b.currency,
        quote,
        quoted_at: now,
    }))
}

/// Claims the cancellation's Idempotency-Key in `tx`; the earlier answer
/// when the key already finished (a replay), a 409 while another request
/// holds it.
async fn claim_key(
    state: &AppState,
    tx: &mut PgConnection,
    user: &User,
    key: &str,
    hash: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Option<Response>, ApiError> {
    // Claim the key first: a concurrent request with the same key
    // waits on this row until we commit, then replays our answer.
    let claimed = idempotency::store::claim(tx, &user.id, key, hash, now).await?;
    if !claimed {
        let lock = state.settings.idempotency_lock();
        match idempotency::store::begin(tx, &user.id, key, hash, lock, now).await? {
            KeyState::Replay(r) => return Ok(Some(crate::idempotency::into_response(r, true))),
            KeyState::New | KeyState::Resume(_) => return Err(ApiError::Conflict {
                code: "idempotency_key_in_use",
                message:
                    "a request with this Idempotency-Key is still being processed; retry shortly"
                        .into(),
                details: None,
            }),
        }
    }
    Ok(None)
}

/// After the commit: counters, the outbox and refund workers woken, and
/// the freed seats told to the fast path and the seat map (Postgres has
/// them free already).
async fn after_cancel(
    state: &AppState,
    head: &BookingHead,
    freed: &[(i32, String)],
    refunds: bool,
) {
    metrics::counter!("bookings_cancelled_total").increment(1);
    state.outbox_kick.notify_one();
    if refunds {
        state.refund_kick.notify_one();
    }
    // Seats are free in Postgres already; tell the fast path and the map.
    let show = ShowId(head.show_id);
    let labels: Vec<&str> = freed.iter().map(|(_, l)| l.as_str()).collect();
    if let Err(e) = state
        .redis
        .release_value(show, &labels, &booked_value(head.id))
        .await
    {
        tracing::warn!(error = %e, "cancelled in Postgres; booked redis keys expire by TTL or recovery");
    }
    state
        .redis
        .seatmap_update(&[(
            show,
            freed
                .iter()
                .map(|(o, _)| (*o, SeatState::Available))
                .collect(),
        )])
        .await;
}

#[tracing::instrument(skip_all, fields(booking = %raw))]
async fn cancel(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from_headers(&headers, false)?;
    let hash = idempotency::request_hash("POST", &format!("/v1/bookings/{raw}/cancel"), b"");
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    if let Some(key) = &key {
        if let Some(replay) = claim_key(&state, &mut tx, &user, key, &hash, now).await? {
            return Ok(replay);
        }
    }
    let head = owned_head(&mut tx, &user, &raw, true).await?;
    if head.status == BookingStatus::Cancelled {
        return Err(already_cancelled(&view(&mut tx, head.id).await?));
    }
    // The organiser's cancellation refunds it in full (`show_cancel`);
    // the buyer's policy must not refund less first.
    if crate::show_cancel::store::is_cancelled(&mut tx, head.show_id).await? {
        return Err(crate::holds::rules::show_cancelled());
    }
    let quote = head
        .refund_policy
        .quote(head.amount_minor, head.show_starts_at, now)
        .map_err(|CancelRefused::ShowStarted| show_started())?;
    let freed = store::cancel(&mut tx, &head, quote.refund_minor, now).await?;
    let refund_id = if quote.refund_minor > 0 {
        let id = Uuid::now_v7();
        sqlx::query!(
            "INSERT INTO refunds (id, payment_id, booking_id, reason, amount_minor)
             VALUES ($1, $2, $3, 'cancellation', $4)",
            id,
            head.payment_id,
            head.id,
            quote.refund_minor
        )
        .execute(&mut *tx)
        .await?;
        Some(id)
    } else {
        None
    };
    let b = view(&mut tx, head.id).await?;
    outbox::record(
        &mut tx,
        head.show_id,
        head.id,
        "booking.cancelled",
        serde_json::json!({
            "user_id": user.id,
            "booking_id": head.id,
            "number": b.number,
            "seats": b.seats.iter().map(|s| &s.label).collect::<Vec<_>>(),
            "refund_percent": quote.percent,
            "refund_minor": quote.refund_minor,
            "refund_id": refund_id,
            "currency": b.currency,
        }),
    )
    .await?;
    let response = StoredResponse {
        status: 200,
        body: serde_json::to_vec(&b).map_err(anyhow::Error::from)?,
    };
    if let Some(key) = &key {
        idempotency::store::finish(&mut tx, &user.id, key, &response).await?;
    }
    tx.commit().await?;
    after_cancel(&state, &head, &freed, refund_id.is_some()).await;
    Ok(crate::idempotency::into_response(response, false).into_response())
}
