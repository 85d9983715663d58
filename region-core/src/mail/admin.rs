//! E-mail to buyers, for operators (issue 16):
//!
//! - `GET /v1/operator/mail?state=failed|pending&kind=&show_id=&limit=&after=`
//!   (any operator): the queue's messages, newest first, in the token's
//!   cities;
//! - `POST /v1/operator/mail/resend` (`sales`): failed messages put back
//!   in the queue, named by `event_ids` or chosen by a `filter`;
//! - `POST /v1/operator/bookings/{number_or_id}/resend-confirmation`
//!   (`sales`): a booking's confirmation queued again as a new message
//!   (its tickets as they are now, e.g. after a ticket-key rotation).
//!
//! The mail workers send what is queued, as any other message. Every
//! write is audited in its transaction; bad input changes nothing.

use super::queue::{self, Filter, Mail};
use crate::auth::{Operator, ReadOperator, SalesOperator};
use crate::bookings::{self, store::BookingStatus};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::mail::compose::EVENT_TYPES;
use crate::ownership::{self, Owned};
use crate::paging::limit;
use crate::reports::known_show;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most messages one re-send puts back.
const MAX_RESEND: usize = 500;

/// Mail routes for operators.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/mail", get(list))
        .route("/v1/operator/mail/resend", post(resend))
        .route(
            "/v1/operator/bookings/{id}/resend-confirmation",
            post(resend_confirmation),
        )
}

fn kind(raw: Option<&str>) -> Result<Option<&str>, ApiError> {
    match raw {
        Some(k) if !EVENT_TYPES.contains(&k) => Err(ApiError::unprocessable(
            "invalid_kind",
            format!("kind must be one of {}, got {k:?}", EVENT_TYPES.join(", ")),
        )),
        other => Ok(other),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    show_id: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// A page of the queue.
#[derive(Debug, Serialize)]
struct MailPage {
    messages: Vec<Mail>,
    /// The `after` of the next (older) page; null on the last.
    next_after: Option<Uuid>,
}

async fn list(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<MailPage>, ApiError> {
    let limit = limit(q.limit)?;
    let mail_state = match q.state.as_deref() {
        None => "failed",
        Some(s @ ("failed" | "pending")) => s,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_state",
                format!("state must be failed or pending, got {other:?}"),
            ))
        }
    };
    let kind = kind(q.kind.as_deref())?;
    let after = crate::paging::id_after(q.after.as_deref(), "an event id")?;
    let mut conn = state.db.acquire().await?;
    let show = match q.show_id.as_deref() {
        Some(raw) => Some(known_show(&mut conn, &op, raw).await?),
        None => None,
    };
    if let Some(after) = after {
        if queue::get(&mut conn, after).await?.is_none() {
            return Err(ApiError::unprocessable(
                "invalid_cursor",
                format!("after names no message ({after})"),
            ));
        }
    }
    let cities = op.city_filter();
    // One more than asked for says whether another page follows.
    let mut messages = queue::list(
        &mut conn,
        Filter {
            state: mail_state,
            kind,
            show,
            cities: cities.as_deref(),
            after,
            limit: limit + 1,
        },
    )
    .await?;
    let more = messages.len() as i64 > limit;
    messages.truncate(limit as usize);
    let next_after = more.then(|| messages.last().map(|m| m.event_id)).flatten();
    Ok(ApiJson(MailPage {
        messages,
        next_after,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendBody {
    event_ids: Option<Vec<String>>,
    filter: Option<ResendFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendFilter {
    state: Option<String>,
    kind: Option<String>,
    show_id: Option<String>,
}

/// What a re-send put back in the queue.
#[derive(Debug, Serialize)]
struct Resent {
    resent: usize,
    event_ids: Vec<Uuid>,
    /// A filter matched more than one call re-sends: call it again.
    more: bool,
}

/// The event ids of a re-send, each once.
fn event_ids(raw: &[String]) -> Result<Vec<Uuid>, ApiError> {
    if raw.is_empty() || raw.len() > MAX_RESEND {
        return Err(ApiError::unprocessable(
            "invalid_event_ids",
            format!("event_ids must hold 1..={MAX_RESEND} event ids"),
        ));
    }
    let mut ids = Vec::with_capacity(raw.len());
    for r in raw {
        let id = Uuid::parse_str(r).map_err(|_| {
            ApiError::unprocessable("invalid_event_ids", format!("{r:?} is not an event id"))
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// 403 unless `op` reaches the message's city; a message without a
/// booking (so without a city) only for a token reaching every city.
fn check_mail_city(op: &Operator, m: &Mail) -> Result<(), ApiError> {
    match (&m.city, op.city_filter()) {
        (Some(city), _) => op.check_city(city),
        (None, None) => Ok(()),
        (None, Some(_)) => Err(ApiError::Denied {
            code: "city_forbidden",
            message: format!(
                "message {} names no booking: only a token reaching every city may re-send it",
                m.event_id
            ),
        }),
    }
}

#[tracing::instrument(skip_all, fields(operator = %op.id))]
async fn resend(
    State(state): State<AppState>,
    op: SalesOperator,
    ApiJson(body): ApiJson<ResendBody>,
) -> Result<ApiJson<Resent>, ApiError> {
    let mut tx = state.db.begin().await?;
    let (rows, more) = match (body.event_ids, body.filter) {
        (Some(raw), None) => {
            let ids = event_ids(&raw)?;
            let rows = queue::lock(&mut tx, &ids).await?;
            let unknown: Vec<String> = ids
                .iter()
                .filter(|id| !rows.iter().any(|r| r.event_id == **id))
                .map(Uuid::to_string)
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::not_found(
                    "unknown_mail",
                    format!("no message {}", unknown.join(", ")),
                ));
            }
            for r in &rows {
                check_mail_city(&op, r)?;
            }
            let not_failed: Vec<serde_json::Value> = rows
                .iter()
                .filter(|r| r.state != "failed")
                .map(|r| serde_json::json!({ "event_id": r.event_id, "state": r.state }))
                .collect();
            if !not_failed.is_empty() {
                return Err(ApiError::Conflict {
                    code: "mail_not_failed",
                    message: "only failed messages are re-sent (a pending one is on its way; \
                              re-send a sent confirmation with …/resend-confirmation)"
                        .into(),
                    details: Some(serde_json::Value::Array(not_failed)),
                });
            }
            (rows, false)
        }
        (None, Some(f)) => {
            if let Some(s) = f.state.as_deref().filter(|s| *s != "failed") {
                return Err(ApiError::unprocessable(
                    "invalid_state",
                    format!("only failed messages are re-sent; state must be failed, got {s:?}"),
                ));
            }
            let kind = kind(f.kind.as_deref())?;
            let show = match f.show_id.as_deref() {
                Some(raw) => Some(known_show(&mut tx, &op, raw).await?),
                None => None,
            };
            let cities = op.city_filter();
            let mut rows = queue::lock_failed(
                &mut tx,
                kind,
                show,
                cities.as_deref(),
                MAX_RESEND as i64 + 1,
            )
            .await?;
            let more = rows.len() > MAX_RESEND;
            rows.truncate(MAX_RESEND);
            (rows, more)
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give either event_ids or filter",
            ))
        }
    };
    queue::requeue(&mut tx, &op, &rows).await?;
    tx.commit().await?;
    if !rows.is_empty() {
        tracing::info!(messages = rows.len(), operator = %op.id, "failed mail re-sent");
    }
    Ok(ApiJson(Resent {
        resent: rows.len(),
        event_ids: rows.iter().map(|r| r.event_id).collect(),
        more,
    }))
}

#[tracing::instrument(skip_all, fields(booking = %raw, operator = %op.id))]
async fn resend_confirmation(
    State(state): State<AppState>,
    op: SalesOperator,
    ApiPath(raw): ApiPath<String>,
) -> Result<(StatusCode, ApiJson<Mail>), ApiError> {
    let r = bookings::parse_ref(&raw)?;
    let unknown = || ApiError::not_found("unknown_booking", format!("no booking {raw}"));
    let mut tx = state.db.begin().await?;
    // Locked: one re-send of a booking at a time, and no cancellation
    // in between.
    let head = bookings::store::head(&mut tx, &r, true)
        .await?
        .ok_or_else(unknown)?;
    let city = ownership::check(&mut tx, &op, Owned::Booking(head.id)).await?;
    if head.status != BookingStatus::Confirmed {
        return Err(ApiError::conflict(
            "booking_not_confirmed",
            format!("booking {raw} is cancelled: its tickets admit no one"),
        ));
    }
    if let Some(waiting) = queue::pending_confirmation(&mut tx, head.id).await? {
        return Err(ApiError::Conflict {
            code: "confirmation_pending",
            message: format!("a confirmation of booking {raw} is still waiting to be sent"),
            details: Some(serde_json::json!({ "event_id": waiting })),
        });
    }
    let event_id = Uuid::now_v7();
    if queue::queue_confirmation(&mut tx, &op, head.id, event_id, city.as_deref())
        .await?
        .is_none()
    {
        return Err(ApiError::conflict(
            "no_email_address",
            format!("the buyer of booking {raw} signed in without an e-mail address"),
        ));
    }
    tx.commit().await?;
    tracing::info!(%event_id, "booking confirmation queued again");
    let mut conn = state.db.acquire().await?;
    let mail = queue::get(&mut conn, event_id).await?.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("queued confirmation {event_id} not found"))
    })?;
    Ok((StatusCode::ACCEPTED, ApiJson(mail)))
}
