//! Checkout: `POST /v1/holds/{id}/checkout` turns a live hold into a paid,
//! confirmed booking.
//!
//! The work is split into atomic phases, each ending in a commit that
//! moves the request's idempotency key to its next recovery point:
//!
//! 1. `payment_created`: key + payment row (amount from the show's prices),
//!    one transaction, after checking the hold is the caller's and live;
//! 2. the gateway charge (idempotency key = payment id), outside any
//!    transaction; success commits `payment_succeeded`, a decline
//!    finishes the key with 402, an unknown outcome unlocks it (503, retry);
//! 3. settlement ([`settle`]): booking confirmed, or the charge refunded.
//!
//! A retry with the same key resumes at the last committed point, so a
//! crash anywhere never charges twice; what a crash leaves behind, the
//! webhook or reconciliation finishes. The response a client sees is
//! always the stored one, so a replay is byte-for-byte the first answer.

//!
//! Where things are: `machine` (the pure state machine: every decision),
//! `flow` (the steps, with I/O), `record` (a gateway outcome recorded, from
//! here, the webhook or reconciliation), `settle` (phase 3), `http` (the
//! endpoint).

mod flow;
mod http;
pub mod machine;
pub mod record;
pub mod settle;

pub use crate::config::CrashPoint;
pub use http::ADMISSION_COMPLETED_HEADER;

use crate::state::AppState;
use axum::routing::post;
use axum::Router;

/// Checkout routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/holds/{id}/checkout", post(http::checkout))
}
