//! Operator reads and reports (issue 16), and the two operator actions on
//! refunds needing attention. Reads take any operator token and show only
//! the token's cities; the refund actions need the `refunds` scope.
//!
//! - `GET /v1/operator/bookings/{number_or_id}`: any buyer's booking with
//!   its buyer, payment and refund;
//! - `GET /v1/operator/shows/{id}/occupancy`: seats by state and price
//!   category, from Postgres;
//! - `GET /v1/operator/shows/{id}/bookings`: a show's bookings, keyset-paged;
//! - `GET /v1/operator/reports/sales`: sales per venue-local day or per
//!   show, JSON or CSV;
//! - `GET /v1/operator/refunds`: refunds PENDING or FAILED;
//! - `POST /v1/operator/refunds/{id}/retry` and `/settle`: a FAILED refund
//!   sent again, or settled by hand; `/send-now`: a PENDING refund that is
//!   backing off made due now (`refunds` owns the three writes);
//! - `GET /v1/operator/payments?state=unsettled`: charges not yet booked
//!   or refunded (in flight, or charged and not settled), keyset-paged.
//!
//! Bad input is a 4xx JSON error and changes nothing.

pub mod sales;
pub mod store;

use crate::auth::{Operator, ReadOperator, RefundsOperator};
use crate::bookings::{self, store::BookingStatus};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::ownership::{self, Owned};
use crate::refunds::{self, HandSettlement, OperatorAction};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use sales::{CurrencyTotal, Group, SalesLine};
use serde::{Deserialize, Serialize};
use store::{
    AttentionRefund, CategoryCounts, Counts, PaymentFacts, RefundDetail, ShowBooking,
    UnsettledPayment,
};
use uuid::Uuid;

/// Operator report routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/bookings/{id}", get(booking))
        .route("/v1/operator/shows/{id}/occupancy", get(occupancy))
        .route("/v1/operator/shows/{id}/bookings", get(show_bookings))
        .route("/v1/operator/reports/sales", get(sales_report))
        .route("/v1/operator/refunds", get(list_refunds))
        .route("/v1/operator/refunds/{id}/retry", post(retry_refund))
        .route("/v1/operator/refunds/{id}/settle", post(settle_refund))
        .route("/v1/operator/refunds/{id}/send-now", post(send_refund_now))
        .route("/v1/operator/payments", get(list_payments))
}

pub(crate) use crate::paging::limit;

/// A booking as an operator sees it.
#[derive(Debug, Serialize)]
struct OperatorBooking {
    /// The buyer's view of it (seats, amounts, refund summary).
    booking: shared::api::Booking,
    /// Buyer and payment.
    #[serde(flatten)]
    payment: PaymentFacts,
    /// Its refund in full, if it has one.
    refund: Option<RefundDetail>,
}

#[tracing::instrument(skip_all, fields(booking = %raw))]
async fn booking(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<OperatorBooking>, ApiError> {
    let r = bookings::parse_ref(&raw)?;
    let mut conn = state.db.acquire().await?;
    let unknown = || ApiError::not_found("unknown_booking", format!("no booking {raw}"));
    let head = bookings::store::head(&mut conn, &r, false)
        .await?
        .ok_or_else(unknown)?;
    ownership::check(&mut conn, &op, Owned::Booking(head.id)).await?;
    let booking = bookings::store::load_view(&mut conn, head.id)
        .await?
        .ok_or_else(unknown)?;
    let payment = store::payment_of(&mut conn, head.id)
        .await?
        .ok_or_else(unknown)?;
    let refund = store::refund_of(&mut conn, head.id).await?;
    Ok(ApiJson(OperatorBooking {
        booking,
        payment,
        refund,
    }))
}

fn show_id(raw: &str) -> Result<Uuid, ApiError> {
    Ok(crate::catalog::parse_show_id(raw)?.0)
}

/// The show `raw` names, in a city `op` reaches: 400 for a malformed id,
/// 404 without one, 403 outside the token's cities.
pub(crate) async fn known_show(
    conn: &mut sqlx::PgConnection,
    op: &Operator,
    raw: &str,
) -> Result<Uuid, ApiError> {
    let id = show_id(raw)?;
    if ownership::check(conn, op, Owned::Show(id)).await?.is_none() {
        return Err(ApiError::not_found(
            "unknown_show",
            format!("no show {raw}"),
        ));
    }
    Ok(id)
}

/// A show's occupancy.
#[derive(Debug, Serialize)]
struct Occupancy {
    show_id: Uuid,
    as_of: DateTime<Utc>,
    categories: Vec<CategoryCounts>,
    totals: Counts,
}

async fn occupancy(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<Occupancy>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let show = known_show(&mut conn, &op, &raw).await?;
    let now = Utc::now();
    let categories = store::occupancy(&mut conn, show, now).await?;
    let totals = categories.iter().fold(Counts::default(), |t, c| Counts {
        total: t.total + c.counts.total,
        available: t.available + c.counts.available,
        held: t.held + c.counts.held,
        booked: t.booked + c.counts.booked,
        blocked: t.blocked + c.counts.blocked,
    });
    Ok(ApiJson(Occupancy {
        show_id: show,
        as_of: now,
        categories,
        totals,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowBookingsQuery {
    status: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// A page of a show's bookings.
#[derive(Debug, Serialize)]
struct ShowBookings {
    show_id: Uuid,
    bookings: Vec<ShowBooking>,
    /// The `after` of the next page; null on the last.
    next_after: Option<Uuid>,
}

fn booking_status(raw: &str) -> Result<BookingStatus, ApiError> {
    match raw {
        "CONFIRMED" => Ok(BookingStatus::Confirmed),
        "CANCELLED" => Ok(BookingStatus::Cancelled),
        _ => Err(ApiError::unprocessable(
            "invalid_status",
            format!("status must be CONFIRMED or CANCELLED, got {raw:?}"),
        )),
    }
}

async fn show_bookings(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShowBookingsQuery>,
) -> Result<ApiJson<ShowBookings>, ApiError> {
    let limit = limit(q.limit)?;
    let status = q.status.as_deref().map(booking_status).transpose()?;
    let after = crate::paging::id_after(q.after.as_deref(), "a booking id")?;
    let mut conn = state.db.acquire().await?;
    let show = known_show(&mut conn, &op, &raw).await?;
    if let Some(after) = after {
        if !store::cursor_exists(&mut conn, show, after).await? {
            return Err(ApiError::unprocessable(
                "invalid_cursor",
                format!("after names no booking of show {show}"),
            ));
        }
    }
    // One more than asked for says whether another page follows.
    let mut bookings = store::show_bookings(&mut conn, show, status, after, limit + 1).await?;
    let more = bookings.len() as i64 > limit;
    bookings.truncate(limit as usize);
    let next_after = more.then(|| bookings.last().map(|b| b.id)).flatten();
    Ok(ApiJson(ShowBookings {
        show_id: show,
        bookings,
        next_after,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SalesQuery {
    from: Option<String>,
    to: Option<String>,
    group: Option<String>,
    format: Option<String>,
}

/// The sales report.
#[derive(Debug, Serialize)]
struct SalesReport {
    from: NaiveDate,
    to: NaiveDate,
    group: &'static str,
    lines: Vec<SalesLine>,
    totals: Vec<CurrencyTotal>,
}

/// Whether the report is asked for as CSV: `format=csv`, or no `format`
/// and an `Accept` naming `text/csv`.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::unprocessable(
            "invalid_format",
            format!("format must be json or csv, got {other:?}"),
        )),
        None => Ok(headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/csv"))),
    }
}

async fn sales_report(
    State(state): State<AppState>,
    op: ReadOperator,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SalesQuery>,
) -> Result<Response, ApiError> {
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(ApiError::unprocessable(
            "invalid_range",
            "from and to are required (YYYY-MM-DD, venue-local days, both included)",
        ));
    };
    let (from, to) =
        sales::parse_range(from, to).map_err(|e| ApiError::unprocessable("invalid_range", e))?;
    let group_raw = q.group.as_deref().unwrap_or("day");
    let group = Group::parse(group_raw).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_group",
            format!("group must be show or day, got {group_raw:?}"),
        )
    })?;
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let mut conn = state.db.acquire().await?;
    let cities = op.city_filter();
    let rows = store::sales_rows(&mut conn, from, to, cities.as_deref()).await?;
    let (lines, totals) = sales::fold(&rows, group);
    if csv {
        let name = format!("attachment; filename=\"sales-{group_raw}-{from}-{to}.csv\"");
        let disposition = HeaderValue::from_str(&name).map_err(anyhow::Error::from)?;
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            sales::to_csv(&lines, group),
        )
            .into_response());
    }
    Ok(ApiJson(SalesReport {
        from,
        to,
        group: if group == Group::Day { "day" } else { "show" },
        lines,
        totals,
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundsQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// Refunds needing attention.
#[derive(Debug, Serialize)]
struct RefundList {
    refunds: Vec<AttentionRefund>,
}

async fn list_refunds(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(q): ApiQuery<RefundsQuery>,
) -> Result<ApiJson<RefundList>, ApiError> {
    let limit = limit(q.limit)?;
    let statuses: Vec<String> = match q.status.as_deref() {
        None => vec!["FAILED".into(), "PENDING".into()],
        Some(s @ ("FAILED" | "PENDING")) => vec![s.into()],
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_status",
                format!("status must be FAILED or PENDING, got {other:?}"),
            ))
        }
    };
    let mut conn = state.db.acquire().await?;
    let cities = op.city_filter();
    let refunds = store::refunds_in(&mut conn, &statuses, cities.as_deref(), limit).await?;
    Ok(ApiJson(RefundList { refunds }))
}

fn refund_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(
            "invalid_refund_id",
            format!("expected a refund id (UUID), got {raw:?}"),
        )
    })
}

/// The answer to an action that did not apply: it `needs` a refund in
/// that status (FAILED or PENDING) to do `what`.
fn refused(raw: &str, action: OperatorAction, needs: &str, what: &str) -> ApiError {
    match action {
        OperatorAction::Done => ApiError::Internal(anyhow::anyhow!("refused a done action")),
        OperatorAction::Unknown => {
            ApiError::not_found("unknown_refund", format!("no refund {raw}"))
        }
        OperatorAction::WrongStatus(status) => ApiError::Conflict {
            code: match status.as_str() {
                "PENDING" => "refund_not_failed",
                "FAILED" => "refund_not_pending",
                _ => "refund_already_settled",
            },
            message: format!("refund {raw} is {status}; only a {needs} refund can be {what}"),
            details: Some(serde_json::json!({ "status": status })),
        },
    }
}

/// 403 for a refund in a city the token does not reach.
async fn check_refund_city(state: &AppState, op: &Operator, id: Uuid) -> Result<(), ApiError> {
    let mut conn = state.db.acquire().await?;
    ownership::check(&mut conn, op, Owned::Refund(id)).await?;
    Ok(())
}

/// What an action answers: the refund as it is now.
async fn refund_now(state: &AppState, id: Uuid) -> Result<ApiJson<RefundDetail>, ApiError> {
    let mut conn = state.db.acquire().await?;
    store::refund(&mut conn, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found("unknown_refund", format!("no refund {id}")))
}

#[tracing::instrument(skip_all, fields(refund = %raw, operator = %op.id))]
async fn retry_refund(
    State(state): State<AppState>,
    op: RefundsOperator,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<RefundDetail>, ApiError> {
    let id = refund_id(&raw)?;
    check_refund_city(&state, &op, id).await?;
    match refunds::retry_failed(&state.db, id, &op).await? {
        OperatorAction::Done => {
            state.refund_kick.notify_one();
            refund_now(&state, id).await
        }
        other => Err(refused(&raw, other, "FAILED", "retried")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettleBody {
    note: String,
    gateway_reference: Option<String>,
}

#[tracing::instrument(skip_all, fields(refund = %raw, operator = %op.id))]
async fn settle_refund(
    State(state): State<AppState>,
    op: RefundsOperator,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<SettleBody>,
) -> Result<ApiJson<RefundDetail>, ApiError> {
    let id = refund_id(&raw)?;
    check_refund_city(&state, &op, id).await?;
    let note = body.note.trim();
    shared::text::check_line("note", note, 1000)
        .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()))?;
    let reference = body.gateway_reference.as_deref().map(str::trim);
    if let Some(r) = reference {
        shared::text::check_line("gateway_reference", r, 200)
            .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()))?;
    }
    let how = HandSettlement {
        operator: &op,
        note,
        gateway_reference: reference,
    };
    match refunds::settle_by_hand(&state.db, id, &how).await? {
        OperatorAction::Done => {
            state.outbox_kick.notify_one();
            refund_now(&state, id).await
        }
        other => Err(refused(&raw, other, "FAILED", "settled by hand")),
    }
}

#[tracing::instrument(skip_all, fields(refund = %raw, operator = %op.id))]
async fn send_refund_now(
    State(state): State<AppState>,
    op: RefundsOperator,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<RefundDetail>, ApiError> {
    let id = refund_id(&raw)?;
    check_refund_city(&state, &op, id).await?;
    match refunds::send_now(&state.db, id, &op).await? {
        OperatorAction::Done => {
            state.refund_kick.notify_one();
            refund_now(&state, id).await
        }
        other => Err(refused(&raw, other, "PENDING", "sent now")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentsQuery {
    state: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// A page of payments not yet settled.
#[derive(Debug, Serialize)]
struct PaymentList {
    payments: Vec<UnsettledPayment>,
    /// The `after` of the next page; null on the last.
    next_after: Option<Uuid>,
}

async fn list_payments(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(q): ApiQuery<PaymentsQuery>,
) -> Result<ApiJson<PaymentList>, ApiError> {
    let limit = limit(q.limit)?;
    match q.state.as_deref() {
        None | Some("unsettled") => {}
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_state",
                format!("state must be unsettled, got {other:?}"),
            ))
        }
    }
    let after = crate::paging::id_after(q.after.as_deref(), "a payment id")?;
    let mut conn = state.db.acquire().await?;
    if let Some(after) = after {
        if !store::payment_exists(&mut conn, after).await? {
            return Err(ApiError::unprocessable(
                "invalid_cursor",
                format!("after names no payment ({after})"),
            ));
        }
    }
    let cities = op.city_filter();
    // One more than asked for says whether another page follows.
    let mut payments =
        store::unsettled_payments(&mut conn, cities.as_deref(), after, limit + 1).await?;
    let more = payments.len() as i64 > limit;
    payments.truncate(limit as usize);
    let next_after = more.then(|| payments.last().map(|p| p.id)).flatten();
    Ok(ApiJson(PaymentList {
        payments,
        next_after,
    }))
}
