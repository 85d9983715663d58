//! Shows as operators manage them: `GET /v1/operator/shows` (filtered by
//! city, venue, screen, movie, a `from`/`to` range of start instants and
//! a status, keyset-paged), one show with its blocked seats, `PATCH`
//! (start time, refund policy) and `DELETE`.
//!
//! What may change, as a ticketing platform would allow it:
//! - `starts_at`: only before the show has begun and while nobody holds
//!   or has booked a seat (buyers bought a time; their tickets, e-mails
//!   and refund windows say it). A show with bookings is cancelled and
//!   rescheduled instead.
//! - `refund_policy`: any time; a booking keeps the policy it was bought
//!   under (it is copied onto the booking), so this reaches new bookings.
//! - Not the screen, the title or the currency (seats, listings and
//!   amounts already name them), nor the sale settings (`sale_mode`,
//!   `max_seats_per_user`: the sales endpoints own them). Prices have
//!   their own endpoint (`prices`).

use super::page::{self, Page};
use super::shows::{self as store, ShowFilter, MAX_SCHEDULE_AHEAD_DAYS};
use super::{after_write, audit_json, empty_patch};
use crate::audit::store::{self as audit, Entry};
use crate::auth::{CatalogOperator, Operator, ReadOperator};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::ownership::{self, Owned};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::api::Show;
use shared::refund::RefundPolicy;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// A show as operators read it: the buyer's view and its blocked seats.
#[derive(Debug, Serialize)]
pub(super) struct OperatorShow {
    #[serde(flatten)]
    pub(super) show: Show,
    pub(super) blocked_seats: Vec<BlockedSeat>,
}

/// A seat out of sale, and why.
#[derive(Debug, Clone, Serialize)]
pub(super) struct BlockedSeat {
    pub(super) seat: String,
    pub(super) reason: String,
}

/// The blocked seats of `show`, in seat order.
pub(super) async fn blocked_of(
    conn: &mut PgConnection,
    show: Uuid,
) -> Result<Vec<BlockedSeat>, sqlx::Error> {
    sqlx::query_as!(
        BlockedSeat,
        r#"SELECT s.label AS seat, ss.blocked_reason AS "reason!"
             FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
            WHERE ss.show_id = $1 AND ss.status = 'BLOCKED'
            ORDER BY ss.ordinal"#,
        show
    )
    .fetch_all(conn)
    .await
}

pub(super) fn unknown_show(id: Uuid) -> ApiError {
    ApiError::not_found("unknown_show", format!("no show {id}"))
}

/// 400 for a bad id, 404 for an unknown show, 403 outside the token's
/// cities; the show's id and city.
pub(super) async fn owned_show(
    conn: &mut PgConnection,
    op: &Operator,
    raw: &str,
) -> Result<(Uuid, String), ApiError> {
    let id = super::parse_show_id(raw)?.0;
    match ownership::check(conn, op, Owned::Show(id)).await? {
        Some(city) => Ok((id, city)),
        None => Err(unknown_show(id)),
    }
}

/// Locks the show's row: holds and bookings insert rows that reference
/// it (a `FOR KEY SHARE` lock each), so none lands while it is held.
pub(super) async fn lock_show(conn: &mut PgConnection, id: Uuid) -> Result<(), ApiError> {
    sqlx::query_scalar!("SELECT id FROM shows WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(conn)
        .await?
        .map(|_| ())
        .ok_or_else(|| unknown_show(id))
}

/// The show with its blocked seats, read on `conn`.
pub(super) async fn operator_show(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<OperatorShow, ApiError> {
    let show = store::fetch_show_on(conn, id)
        .await?
        .ok_or_else(|| unknown_show(id))?;
    let blocked_seats = blocked_of(conn, id).await?;
    Ok(OperatorShow {
        show,
        blocked_seats,
    })
}

/// A show's state for the list's `status` filter.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ShowStatus {
    /// Not started yet.
    Upcoming,
    /// Started (playing or over).
    Started,
}

/// `GET /v1/operator/shows` filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShowQuery {
    city: Option<String>,
    venue_id: Option<Uuid>,
    screen_id: Option<Uuid>,
    movie_id: Option<Uuid>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    status: Option<ShowStatus>,
    limit: Option<i64>,
    after: Option<String>,
}

pub(super) async fn list_shows(
    op: ReadOperator,
    state: State<AppState>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<ApiJson<Page<Show>>, ApiError> {
    let limit = page::limit(q.limit)?;
    let after = page::parse_show_cursor(q.after.as_deref())?;
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f >= t {
            return Err(ApiError::unprocessable(
                "invalid_range",
                "from must be before to",
            ));
        }
    }
    if let Some(c) = &q.city {
        op.check_city(c)?;
    }
    let now = Utc::now();
    // The status is a bound on the start: upcoming from now, started
    // before it.
    let (from, to) = match q.status {
        None => (q.from, q.to),
        Some(ShowStatus::Upcoming) => (Some(q.from.map_or(now, |f| f.max(now))), q.to),
        Some(ShowStatus::Started) => (q.from, Some(q.to.map_or(now, |t| t.min(now)))),
    };
    let filter = ShowFilter {
        cities: op.city_filter(),
        city: q.city,
        venue_id: q.venue_id,
        screen_id: q.screen_id,
        movie_id: q.movie_id,
        from,
        to,
        after,
        limit,
    };
    let mut conn = state.db.acquire().await?;
    let shows = store::list_filtered(&mut conn, &filter).await?;
    Ok(ApiJson(Page::new(shows, limit, |s: &Show| {
        page::show_cursor(s.starts_at, s.id.0)
    })))
}

pub(super) async fn get_show(
    op: ReadOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<OperatorShow>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let (id, _) = owned_show(&mut conn, &op, &raw).await?;
    Ok(ApiJson(operator_show(&mut conn, id).await?))
}

/// `PATCH /v1/operator/shows/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchShow {
    starts_at: Option<DateTime<Utc>>,
    refund_policy: Option<RefundPolicy>,
}

/// The row's editable fields, as the audit log records them.
#[derive(Debug, Clone, Serialize)]
struct Editable {
    starts_at: DateTime<Utc>,
    refund_policy: RefundPolicy,
}

fn editable(s: &Show) -> Editable {
    Editable {
        starts_at: s.starts_at,
        refund_policy: s.refund_policy.clone(),
    }
}

/// 409 `show_has_holds`/`show_has_bookings` while anyone holds or has
/// booked a seat of `show` (the caller has locked the show's row).
async fn refuse_if_sold(conn: &mut PgConnection, show: Uuid, what: &str) -> Result<(), ApiError> {
    let r = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM holds WHERE show_id = $1 AND state = 'ACTIVE') AS "holds!",
                  (SELECT count(*) FROM bookings WHERE show_id = $1 AND status = 'CONFIRMED') AS "bookings!""#,
        show
    )
    .fetch_one(conn)
    .await?;
    if r.bookings > 0 {
        return Err(ApiError::conflict(
            "show_has_bookings",
            format!("the show has {} bookings: {what}", r.bookings),
        ));
    }
    if r.holds > 0 {
        return Err(ApiError::conflict(
            "show_has_holds",
            format!("the show has {} live holds: {what}", r.holds),
        ));
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
pub(super) async fn patch_show(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<PatchShow>,
) -> Result<ApiJson<OperatorShow>, ApiError> {
    if req.starts_at.is_none() && req.refund_policy.is_none() {
        return Err(empty_patch());
    }
    let now = Utc::now();
    if let Some(t) = req.starts_at {
        if t <= now {
            return Err(ApiError::unprocessable(
                "show_in_past",
                "starts_at must be in the future",
            ));
        }
        if t > now + chrono::Duration::days(MAX_SCHEDULE_AHEAD_DAYS) {
            return Err(ApiError::unprocessable(
                "show_too_far_ahead",
                format!("starts_at must be within {MAX_SCHEDULE_AHEAD_DAYS} days from now"),
            ));
        }
    }
    if let Some(p) = &req.refund_policy {
        p.validate()
            .map_err(|e| ApiError::unprocessable("invalid_refund_policy", e.to_string()))?;
    }
    let mut tx = state.db.begin().await?;
    let (id, city) = owned_show(&mut tx, &op, &raw).await?;
    lock_show(&mut tx, id).await?;
    let before = operator_show(&mut tx, id).await?;
    let mut moved = false;
    if let Some(t) = req.starts_at.filter(|t| *t != before.show.starts_at) {
        if before.show.starts_at <= now {
            return Err(crate::holds::rules::show_started());
        }
        refuse_if_sold(&mut tx, id, "its start cannot move").await?;
        // A show moved is checked like a new one: if it was kept
        // overlapping when the constraint came, it joins the constraint
        // now (or the move is refused), and so do the shows of its screen
        // the move freed.
        sqlx::query!(
            "UPDATE shows SET starts_at = $2, overlap_checked = true WHERE id = $1",
            id,
            t
        )
        .execute(&mut *tx)
        .await
        .map_err(super::shows::overlap_refusal)?;
        // The constraint leaves out shows kept from before it; a move
        // must not land on one of those either.
        if overlaps_any(&mut tx, id).await? {
            return Err(super::shows::show_overlaps());
        }
        recheck_overlaps(&mut tx, id, None).await?;
        moved = true;
    }
    if let Some(p) = &req.refund_policy {
        sqlx::query!(
            "UPDATE shows SET refund_policy = $2 WHERE id = $1",
            id,
            Json(p) as _
        )
        .execute(&mut *tx)
        .await?;
    }
    if moved {
        // Every replica's cached start (the hold path's "has it begun").
        crate::shows::announce_change(&mut tx, id).await?;
    }
    let after = operator_show(&mut tx, id).await?;
    let entry = Entry {
        action: "show.update",
        target_kind: "show",
        target_id: id.to_string(),
        city: Some(&city),
        before: Some(audit_json(&editable(&before.show))?),
        after: Some(audit_json(&editable(&after.show))?),
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[city]).await;
    Ok(ApiJson(after))
}

/// `DELETE /v1/operator/shows/{id}`: only a show nobody ever held a seat
/// of (a hold, even ended, is part of a buyer's history and of payments).
/// One that has sold is cancelled instead.
#[tracing::instrument(skip_all)]
pub(super) async fn delete_show(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let (id, city) = owned_show(&mut tx, &op, &raw).await?;
    lock_show(&mut tx, id).await?;
    let before = operator_show(&mut tx, id).await?;
    let holds = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM holds WHERE show_id = $1"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    if holds > 0 {
        return Err(ApiError::conflict(
            "show_has_holds",
            format!("seats of this show have been held {holds} times: cancel it instead"),
        ));
    }
    // What belongs to the show alone goes with it: its seats and, for a
    // show cancelled before anyone held a seat, its (finished) job (its
    // sale settings cascade).
    sqlx::query!("DELETE FROM show_seats WHERE show_id = $1", id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM show_cancellations WHERE show_id = $1", id)
        .execute(&mut *tx)
        .await?;
    recheck_overlaps(&mut tx, id, Some(id)).await?;
    sqlx::query!("DELETE FROM shows WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    crate::shows::announce_change(&mut tx, id).await?;
    let entry = Entry {
        action: "show.delete",
        target_kind: "show",
        target_id: id.to_string(),
        city: Some(&city),
        before: Some(audit_json(&before)?),
        after: None,
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[city]).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `show` (as now written) overlaps any other show of its screen,
/// whether or not the constraint covers that one.
async fn overlaps_any(tx: &mut sqlx::PgConnection, show: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT 1 FROM shows s JOIN shows o
                 ON o.screen_id = s.screen_id AND o.id <> s.id
                AND tstzrange(o.starts_at, o.ends_at) && tstzrange(s.starts_at, s.ends_at)
              WHERE s.id = $1) AS "overlaps!""#,
        show
    )
    .fetch_one(tx)
    .await
}

/// Shows of `show`'s screen that were kept overlapping when the overlap
/// constraint came, and overlap nothing any more, join the constraint:
/// they leave `GET /v1/operator/shows/overlaps` once an operator has
/// moved or deleted what they overlapped. `gone` is a show being deleted
/// in this transaction (right after), which no longer counts. One that
/// still overlaps stays out (the filter), so this never fails on the
/// constraint.
async fn recheck_overlaps(
    tx: &mut sqlx::PgConnection,
    show: Uuid,
    gone: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"UPDATE shows s SET overlap_checked = true
            WHERE NOT s.overlap_checked AND s.id IS DISTINCT FROM $2
              AND s.screen_id = (SELECT screen_id FROM shows WHERE id = $1)
              AND NOT EXISTS (
                    SELECT 1 FROM shows o
                     WHERE o.screen_id = s.screen_id AND o.id <> s.id
                       AND o.id IS DISTINCT FROM $2
                       AND tstzrange(o.starts_at, o.ends_at) && tstzrange(s.starts_at, s.ends_at))"#,
        show,
        gone
    )
    .execute(tx)
    .await?;
    Ok(())
}
