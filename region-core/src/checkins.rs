//! Entry scanning (issue 15): door staff scan a ticket's code.
//!
//! - `GET /v1/tickets/keys`: the public keys tickets are signed with (for
//!   scanners that verify offline with `shared::ticket`);
//! - `POST /v1/shows/{id}/checkins` `{code, gate}`: 200 the first time;
//!   409 `already_checked_in` (with when and where) after; 422
//!   `ticket_invalid` for a forged or malformed code; 404
//!   `ticket_not_for_this_show` for a genuine ticket of another show (and
//!   `unknown_ticket` for a genuine code naming no seat of this shard);
//!   410 `booking_cancelled` once the booking or that seat is cancelled;
//! - `POST /v1/shows/{id}/checkins/offline` `{scans: [{code, gate,
//!   scanned_at}]}`: an offline scanner's upload, judged scan by scan; a
//!   scan of a ticket someone else already checked in is recorded in
//!   `checkin_conflicts` and reported, never lost;
//! - `GET /v1/operator/shows/{id}/checkin-conflicts?limit=&after=` (any
//!   operator token reaching the show's city): those conflicts, each
//!   with the check-in that stands.
//!
//! A ticket is checked in once: the insert into `checkins` (keyed by the
//! ticket id) decides, so two gates scanning at once get one 200.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use shared::ticket::{PublicKey, Ticket};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::{ReadOperator, Staff};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The most scans one offline upload may carry.
pub const MAX_UPLOAD: usize = 1000;

/// Routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tickets/keys", get(keys))
        .route("/v1/shows/{id}/checkins", post(check_in))
        .route("/v1/shows/{id}/checkins/offline", post(upload))
        .route("/v1/operator/shows/{id}/checkin-conflicts", get(conflicts))
}

#[derive(Serialize)]
struct Keys {
    keys: Vec<PublicKey>,
}

async fn keys(State(state): State<AppState>) -> axum::Json<Keys> {
    axum::Json(Keys {
        keys: state.tickets.public().to_vec(),
    })
}

/// `POST /v1/shows/{id}/checkins`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scan {
    code: String,
    /// Which door (free text, for the record).
    #[serde(default)]
    gate: Option<String>,
}

/// A check-in made.
#[derive(Debug, Serialize)]
struct CheckedIn {
    ticket_id: Uuid,
    booking_number: String,
    seat: String,
    category: String,
    checked_in_at: DateTime<Utc>,
    gate: String,
}

fn show_of(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("unknown_show", format!("no show {raw}")))
}

fn gate_of(gate: Option<&str>) -> Result<String, ApiError> {
    let gate = gate.unwrap_or("main").trim();
    shared::text::check_line("gate", gate, 64)
        .map_err(|e| ApiError::bad_request("invalid_gate", e.to_string()))?;
    Ok(if gate.is_empty() { "main" } else { gate }.to_owned())
}

async fn check_in(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(show): ApiPath<String>,
    ApiJson(scan): ApiJson<Scan>,
) -> Result<axum::Json<CheckedIn>, ApiError> {
    let show = show_of(&show)?;
    let gate = gate_of(scan.gate.as_deref())?;
    let ticket = state.tickets.ring().verify(&scan.code).map_err(|e| {
        ApiError::unprocessable("ticket_invalid", format!("not a valid ticket: {e}"))
    })?;
    let mut conn = state.db.acquire().await?;
    let seat = admissible(&mut conn, show, &ticket).await?;
    // Postgres keeps microseconds: answer with the time as stored.
    let now = Utc::now().trunc_subsecs(6);
    match record(&mut conn, &ticket, &gate, &staff.id, "online", now).await? {
        Recorded::New => {
            metrics::counter!("checkins_total", "source" => "online").increment(1);
            Ok(axum::Json(CheckedIn {
                ticket_id: ticket.ticket_id,
                booking_number: seat.number,
                seat: seat.label,
                category: seat.category,
                checked_in_at: now,
                gate,
            }))
        }
        Recorded::Before { at, gate } => {
            metrics::counter!("checkins_refused_total", "reason" => "already_checked_in")
                .increment(1);
            Err(ApiError::Conflict {
                code: "already_checked_in",
                message: format!("this ticket was checked in at {at} at gate {gate}"),
                details: Some(serde_json::json!({
                    "ticket_id": ticket.ticket_id,
                    "checked_in_at": at,
                    "gate": gate,
                })),
            })
        }
    }
}

/// The seat a genuine ticket names, if it may enter this show.
struct Seat {
    number: String,
    label: String,
    category: String,
}

async fn admissible(conn: &mut PgConnection, show: Uuid, t: &Ticket) -> Result<Seat, ApiError> {
    if t.show_id != show {
        return Err(ApiError::not_found(
            "ticket_not_for_this_show",
            format!("this ticket is for show {}", t.show_id),
        ));
    }
    let row = sqlx::query!(
        "SELECT b.number, b.status, bs.active, bs.label, bs.category
           FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
          WHERE bs.booking_id = $1 AND bs.seat_id = $2 AND bs.show_id = $3",
        t.booking_id,
        t.seat_id,
        show
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else {
        return Err(ApiError::not_found(
            "unknown_ticket",
            "no such booked seat here (another shard's ticket?)",
        ));
    };
    if r.status != "CONFIRMED" || !r.active {
        return Err(ApiError::Gone {
            code: "booking_cancelled",
            message: format!("booking {} was cancelled", r.number),
        });
    }
    Ok(Seat {
        number: r.number,
        label: r.label,
        category: r.category,
    })
}

enum Recorded {
    New,
    Before { at: DateTime<Utc>, gate: String },
}

/// Checks the ticket in, unless it already is (then: when and where).
async fn record(
    conn: &mut PgConnection,
    t: &Ticket,
    gate: &str,
    staff: &str,
    source: &str,
    at: DateTime<Utc>,
) -> Result<Recorded, ApiError> {
    let inserted = sqlx::query_scalar!(
        "INSERT INTO checkins (ticket_id, show_id, booking_id, seat_id, gate, staff_id, source, checked_in_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (ticket_id) DO NOTHING
         RETURNING ticket_id",
        t.ticket_id,
        t.show_id,
        t.booking_id,
        t.seat_id,
        gate,
        staff,
        source,
        at
    )
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(Recorded::New);
    }
    let before = sqlx::query!(
        "SELECT checked_in_at, gate FROM checkins WHERE ticket_id = $1",
        t.ticket_id
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Recorded::Before {
        at: before.checked_in_at,
        gate: before.gate,
    })
}

/// `POST /v1/shows/{id}/checkins/offline`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    scans: Vec<OfflineScanIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfflineScanIn {
    code: String,
    #[serde(default)]
    gate: Option<String>,
    scanned_at: DateTime<Utc>,
}

/// How one uploaded scan was judged.
#[derive(Debug, Serialize)]
struct ScanResult {
    /// `checked_in`, `already_recorded` (this very scan was uploaded
    /// before), `conflict` (someone else checked the ticket in first),
    /// `ticket_invalid`, `ticket_not_for_this_show`, `unknown_ticket`,
    /// `booking_cancelled`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_id: Option<Uuid>,
    /// For a conflict: the check-in that stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    checked_in_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<String>,
}

#[derive(Debug, Serialize)]
struct UploadResult {
    results: Vec<ScanResult>,
    conflicts: usize,
}

async fn upload(
    State(state): State<AppState>,
    staff: Staff,
    ApiPath(show): ApiPath<String>,
    ApiJson(up): ApiJson<Upload>,
) -> Result<axum::Json<UploadResult>, ApiError> {
    let show = show_of(&show)?;
    if up.scans.is_empty() || up.scans.len() > MAX_UPLOAD {
        return Err(ApiError::bad_request(
            "invalid_upload",
            format!("an upload carries 1 to {MAX_UPLOAD} scans"),
        ));
    }
    // Every gate checked before anything is written: bad input changes
    // nothing.
    let gates = up
        .scans
        .iter()
        .map(|s| gate_of(s.gate.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let now = Utc::now();
    if up
        .scans
        .iter()
        .any(|s| s.scanned_at > now + chrono::Duration::minutes(5))
    {
        return Err(ApiError::bad_request(
            "invalid_upload",
            "a scan is dated in the future",
        ));
    }
    let mut conn = state.db.acquire().await?;
    let mut results = Vec::with_capacity(up.scans.len());
    for (scan, gate) in up.scans.iter().zip(gates) {
        results.push(judge_offline(&state, &mut conn, show, scan, &gate, &staff.id).await?);
    }
    let conflicts = results.iter().filter(|r| r.outcome == "conflict").count();
    Ok(axum::Json(UploadResult { results, conflicts }))
}

async fn judge_offline(
    state: &AppState,
    conn: &mut PgConnection,
    show: Uuid,
    scan: &OfflineScanIn,
    gate: &str,
    staff: &str,
) -> Result<ScanResult, ApiError> {
    let refused = |outcome, ticket_id| ScanResult {
        outcome,
        ticket_id,
        checked_in_at: None,
        gate: None,
    };
    let Ok(ticket) = state.tickets.ring().verify(&scan.code) else {
        return Ok(refused("ticket_invalid", None));
    };
    if let Err(e) = admissible(conn, show, &ticket).await {
        let outcome = match e {
            ApiError::Gone { .. } => "booking_cancelled",
            ApiError::NotFound { code, .. } => code,
            other => return Err(other),
        };
        return Ok(refused(outcome, Some(ticket.ticket_id)));
    }
    // As stored (microseconds), so a re-sent upload compares equal.
    let scanned_at = scan.scanned_at.trunc_subsecs(6);
    match record(conn, &ticket, gate, staff, "offline", scanned_at).await? {
        Recorded::New => {
            metrics::counter!("checkins_total", "source" => "offline").increment(1);
            Ok(ScanResult {
                outcome: "checked_in",
                ticket_id: Some(ticket.ticket_id),
                checked_in_at: Some(scanned_at),
                gate: Some(gate.to_owned()),
            })
        }
        // The same scan uploaded again (a retry after a lost answer).
        Recorded::Before { at, gate: g } if at == scanned_at && g == gate => Ok(ScanResult {
            outcome: "already_recorded",
            ticket_id: Some(ticket.ticket_id),
            checked_in_at: Some(at),
            gate: Some(g),
        }),
        Recorded::Before { at, gate: g } => {
            sqlx::query!(
                "INSERT INTO checkin_conflicts (ticket_id, show_id, gate, staff_id, scanned_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (ticket_id, gate, scanned_at) DO NOTHING",
                ticket.ticket_id,
                show,
                gate,
                staff,
                scanned_at
            )
            .execute(&mut *conn)
            .await?;
            metrics::counter!("checkin_conflicts_total").increment(1);
            Ok(ScanResult {
                outcome: "conflict",
                ticket_id: Some(ticket.ticket_id),
                checked_in_at: Some(at),
                gate: Some(g),
            })
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConflictsQuery {
    limit: Option<i64>,
    /// The previous page's `next_after`.
    after: Option<i64>,
}

/// An offline scan of a ticket that had already been checked in.
#[derive(Debug, Serialize)]
struct Conflict {
    /// Its position (the page cursor).
    id: i64,
    ticket_id: Uuid,
    booking_number: String,
    seat: String,
    /// The check-in that stands: where, by whom, when, how.
    first_gate: String,
    first_staff_id: String,
    first_checked_in_at: DateTime<Utc>,
    first_source: String,
    /// The scan that conflicted.
    gate: String,
    staff_id: String,
    scanned_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

/// A page of a show's conflicts.
#[derive(Debug, Serialize)]
struct Conflicts {
    show_id: Uuid,
    conflicts: Vec<Conflict>,
    /// The `after` of the next page; null on the last.
    next_after: Option<i64>,
}

async fn conflicts(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConflictsQuery>,
) -> Result<axum::Json<Conflicts>, ApiError> {
    let limit = crate::paging::limit(q.limit)?;
    let mut conn = state.db.acquire().await?;
    let show = crate::reports::known_show(&mut conn, &op, &raw).await?;
    // One more than asked for says whether another page follows.
    let mut conflicts = sqlx::query_as!(
        Conflict,
        "SELECT c.id, c.ticket_id, b.number AS booking_number, s.label AS seat,
                k.gate AS first_gate, k.staff_id AS first_staff_id,
                k.checked_in_at AS first_checked_in_at, k.source AS first_source,
                c.gate, c.staff_id, c.scanned_at, c.recorded_at
           FROM checkin_conflicts c
           JOIN checkins k ON k.ticket_id = c.ticket_id
           JOIN bookings b ON b.id = k.booking_id
           JOIN seats s ON s.id = k.seat_id
          WHERE c.show_id = $1 AND ($2::int8 IS NULL OR c.id > $2)
          ORDER BY c.id
          LIMIT $3",
        show,
        q.after,
        limit + 1
    )
    .fetch_all(&mut *conn)
    .await?;
    let more = conflicts.len() as i64 > limit;
    conflicts.truncate(limit as usize);
    let next_after = more.then(|| conflicts.last().map(|c| c.id)).flatten();
    Ok(axum::Json(Conflicts {
        show_id: show,
        conflicts,
        next_after,
    }))
}
