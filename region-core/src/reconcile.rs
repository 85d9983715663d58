//! Reconciliation: the backstop of "money is never lost". Periodically
//! (and on `POST /v1/operator/reconcile`) it finds
//! - payments the gateway charged that were never settled (a crash
//!   between charge and booking): settles them, i.e. books them if the
//!   hold is still good, or refunds them;
//! - payments stuck in flight (we asked the gateway, never learnt the
//!   answer): asks the gateway by reference and records what it says,
//!   then settles a charge, or closes a payment that was never charged.
//!
//! Payments younger than the grace period are left alone: their checkout
//! may still be running. What it fixes is counted in metrics and logged.

use crate::auth::SalesOperator;
use crate::checkout::machine::PaymentStatus;
use crate::checkout::record::Unpaid;
use crate::checkout::{record, settle};
use crate::error::ApiError;
use crate::lease::Term;
use crate::payments::ChargeLookup;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use shared::api::ReconcileReport;
use std::time::Duration;
use tokio::sync::watch;

/// Operator route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/operator/reconcile", post(reconcile_now))
}

/// An operator's pass waits this long for one running elsewhere to end.
const OPERATOR_WAIT: Duration = Duration::from_secs(10);

async fn reconcile_now(
    op: SalesOperator,
    State(state): State<AppState>,
) -> Result<axum::Json<ReconcileReport>, ApiError> {
    // A pass repairs the whole shard: only a token reaching all its cities
    // may start one.
    crate::ownership::check_shard(&mut *state.db.acquire().await?, &op).await?;
    let started = std::time::Instant::now();
    loop {
        let pass = state
            .reconcile_lease
            .run_pass(Duration::ZERO, |term| {
                let state = state.clone();
                async move { reconcile_once(&state, Some(&term)).await }
            })
            .await?;
        if let Some(report) = pass {
            return Ok(axum::Json(report));
        }
        if started.elapsed() >= OPERATOR_WAIT {
            return Err(ApiError::unavailable(
                "reconcile_running",
                "a reconciliation pass is running on another replica; retry shortly",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every `interval` until `shutdown` flips, a pass under the shard's
/// `reconcile` lease: whichever replica takes it runs the pass, fenced,
/// and none starts another within half an interval of it.
pub async fn run(state: AppState, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: let start-up settle
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let pass = state
            .reconcile_lease
            .run_pass(interval / 2, |term| {
                let state = state.clone();
                async move { reconcile_once(&state, Some(&term)).await }
            })
            .await;
        if let Err(e) = pass {
            tracing::warn!(error = ?e, "reconciliation pass failed");
        }
    }
}

/// A transaction for one repair, fenced by `term` when there is one.
async fn begin_fenced<'c>(
    state: &'c AppState,
    term: Option<&Term>,
) -> anyhow::Result<sqlx::Transaction<'c, sqlx::Postgres>> {
    let mut tx = state.db.begin().await?;
    if let Some(term) = term {
        term.fence(&mut tx).await?;
    }
    Ok(tx)
}

/// The `action` labels of `reconcile_fixed_total`.
pub const ACTIONS: [&str; 5] = [
    "completed_booking",
    "refunded",
    "marked_failed",
    "abandoned",
    "unresolved",
];

fn count(report: &ReconcileReport) {
    let counts = [
        report.completed_bookings,
        report.refunded,
        report.marked_failed,
        report.abandoned,
        report.unresolved,
    ];
    for (action, n) in ACTIONS.into_iter().zip(counts) {
        if n > 0 {
            metrics::counter!("reconcile_fixed_total", "action" => action).increment(n as u64);
        }
    }
}

/// One pass over unsettled payments older than the grace period. With a
/// `term`, every repair's transaction first checks that the term still
/// holds the `reconcile` lease (a replica that paused past it writes
/// nothing).
pub async fn reconcile_once(
    state: &AppState,
    term: Option<&Term>,
) -> anyhow::Result<ReconcileReport> {
    let grace = state.settings.reconcile_grace_secs as f64;
    let stuck = sqlx::query!(
        r#"SELECT id, status AS "status: PaymentStatus" FROM payments
            WHERE (status = 'CREATED' OR (status = 'SUCCEEDED' AND settled IS NULL))
              AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at LIMIT 1000"#,
        grace
    )
    .fetch_all(&state.db)
    .await?;
    let mut report = ReconcileReport::default();
    for payment in stuck {
        let payment_id = payment.id;
        if payment.status == PaymentStatus::Created {
            // Void, not just look: a lookup answered "not found" while the
            // charge request still sat in the stalled gateway's queue used
            // to abandon a payment that was then charged.
            match state.gateway.void_unless_charged(payment_id).await {
                Ok(ChargeLookup::Succeeded { gateway_id }) => {
                    // Recorded and settled in one transaction.
                    let ctx = state.settle_ctx();
                    let mut tx = begin_fenced(state, term).await?;
                    let settled =
                        settle::confirm_in(&ctx, &mut tx, payment_id, Some(&gateway_id)).await?;
                    tx.commit().await?;
                    settle::after_commit(&ctx, std::slice::from_ref(&settled)).await;
                    count_settlement(&mut report, &settled.settlement);
                    continue;
                }
                Ok(ChargeLookup::Failed { gateway_id, code }) => {
                    let mut tx = begin_fenced(state, term).await?;
                    if record::record_failure(&mut tx, payment_id, Some(&gateway_id), &code)
                        .await?
                        .is_some()
                    {
                        report.marked_failed += 1;
                    }
                    tx.commit().await?;
                    continue;
                }
                Ok(ChargeLookup::NotFound) => {
                    // Never charged, and the gateway now refuses the
                    // reference, so the lost request cannot charge later.
                    let mut tx = begin_fenced(state, term).await?;
                    if record::finish_unpaid(
                        &mut tx,
                        payment_id,
                        Unpaid::Abandoned,
                        None,
                        "never_charged",
                    )
                    .await?
                    .is_some()
                    {
                        report.abandoned += 1;
                    }
                    tx.commit().await?;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%payment_id, error = %e, "cannot ask the gateway; will retry next pass");
                    report.unresolved += 1;
                    continue;
                }
            }
        }
        let ctx = state.settle_ctx();
        let mut tx = begin_fenced(state, term).await?;
        let settled = settle::settle_in(&ctx, &mut tx, payment_id).await?;
        tx.commit().await?;
        settle::after_commit(&ctx, std::slice::from_ref(&settled)).await;
        count_settlement(&mut report, &settled.settlement);
    }
    state.outbox_kick.notify_one();
    count(&report);
    if report != ReconcileReport::default() {
        tracing::info!(?report, "reconciliation fixed payments");
    }
    Ok(report)
}

fn count_settlement(report: &mut ReconcileReport, s: &settle::Settlement) {
    match s {
        settle::Settlement::Booked(_) => report.completed_bookings += 1,
        settle::Settlement::Refunded(_) => report.refunded += 1,
        settle::Settlement::Nothing => {}
    }
}
