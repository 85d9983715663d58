//! Cancelling a show (issue 16): the organiser calls it off, every buyer
//! gets all their money back.
//!
//! - `POST /v1/operator/shows/{id}/cancel` `{"reason": "..."}` (`sales`
//!   scope): marks the show CANCELLED and records its job, with the audit
//!   row, in one transaction; 202 with the job, or the existing job (200
//!   once DONE) when the show was cancelled before: never a second job;
//! - `GET /v1/operator/shows/{id}/cancellation` (any operator): the job
//!   and its progress.
//!
//! From the commit on, no hold and no booking of the show can be written
//! (`store::lock_cancelled`, checked by the hold writer and by checkout's
//! settlement, and a trigger on bookings as the last line); a charge that lands after
//! is refunded in full by checkout's compensation. The job (`job`)
//! releases the live holds and cancels every confirmed booking with a
//! full refund, through the buyer's cancellation machinery (refund rows
//! the refund worker sends, `booking.cancelled` events, e-mail).

pub mod job;
pub mod store;

use crate::audit::store::{self as audit, Entry};
use crate::auth::{ReadOperator, SalesOperator};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::ownership::{self, Owned};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use store::{Job, JobStatus, Progress, Started};
use uuid::Uuid;

/// Longest reason, in characters.
const MAX_REASON_CHARS: usize = 500;

/// Show cancellation routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/shows/{id}/cancel", post(cancel))
        .route("/v1/operator/shows/{id}/cancellation", get(read))
}

/// The operator's request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Why, in a line (1–500 characters); the buyers are told.
    reason: String,
}

/// A cancellation as operators read it.
#[derive(Debug, Serialize)]
struct JobView {
    #[serde(flatten)]
    job: Job,
    progress: Progress,
}

fn unknown_show(show: Uuid) -> ApiError {
    ApiError::not_found("unknown_show", format!("no show {show}"))
}

/// 202 while the job runs, 200 once it is done.
fn answer(view: JobView) -> Response {
    let status = match view.job.status {
        JobStatus::Running => StatusCode::ACCEPTED,
        JobStatus::Done => StatusCode::OK,
    };
    (status, ApiJson(view)).into_response()
}

#[tracing::instrument(skip_all, fields(show = %raw))]
async fn cancel(
    State(state): State<AppState>,
    op: SalesOperator,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Response, ApiError> {
    let show = crate::catalog::parse_show_id(&raw)?.0;
    shared::text::check_line("reason", &body.reason, MAX_REASON_CHARS)
        .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()))?;
    let mut tx = state.db.begin().await?;
    let city = ownership::check(&mut tx, &op, Owned::Show(show))
        .await?
        .ok_or_else(|| unknown_show(show))?;
    let job = match store::start(&mut tx, show, &body.reason, &op.id).await? {
        // Called again (a retry, a second operator): the same job, and
        // nothing written.
        Started::Existing(job) => {
            let progress = store::progress(&mut tx, &job).await?;
            tx.rollback().await?;
            return Ok(answer(JobView { job, progress }));
        }
        Started::New(job) => job,
    };
    let entry = Entry {
        action: "show.cancel",
        target_kind: "show",
        target_id: show.to_string(),
        city: Some(&city),
        before: Some(serde_json::json!({ "status": "SCHEDULED" })),
        after: Some(serde_json::json!({
            "status": "CANCELLED",
            "reason": job.reason,
            "cancellation_id": job.id,
            "started_at": job.started_at,
        })),
    };
    audit::record(&mut tx, &op, entry).await?;
    let progress = store::progress(&mut tx, &job).await?;
    tx.commit().await?;
    metrics::counter!("show_cancellations_started_total").increment(1);
    tracing::info!(%show, job = %job.id, operator = %op.id, "show cancelled");
    // Started here at once; every replica's loop would find it within a
    // poll anyway (and resumes it after a crash).
    let runner = job::Runner::of(&state);
    tokio::spawn(async move { runner.drain().await });
    Ok(answer(JobView { job, progress }))
}

async fn read(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<JobView>, ApiError> {
    let show = crate::catalog::parse_show_id(&raw)?.0;
    let mut conn = state.db.acquire().await?;
    ownership::check(&mut conn, &op, Owned::Show(show))
        .await?
        .ok_or_else(|| unknown_show(show))?;
    let job = store::job_of_show(&mut conn, show).await?.ok_or_else(|| {
        ApiError::not_found(
            "not_cancelled",
            format!("show {show} has not been cancelled"),
        )
    })?;
    let progress = store::progress(&mut conn, &job).await?;
    Ok(ApiJson(JobView { job, progress }))
}
