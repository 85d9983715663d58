//! Checkout: `POST /v1/holds/{id}/checkout` turns a live hold into a paid,
//! confirmed booking.
//!
//! The work is split into atomic phases; a purchase that succeeds costs
//! two commits, each shared with concurrent checkouts (group commit,
//! `jobs`), and no connection is held while the gateway answers:
//!
//! 1. `payment_created`: key + payment row (amount from the show's prices),
//!    after checking the hold is the caller's and live;
//! 2. the gateway charge (idempotency key = payment id), outside any
//!    transaction; a decline finishes the key with 402, an unknown
//!    outcome unlocks it (503, retry with the same key);
//! 3. confirmation: the charge recorded and settled ([`settle`]) in one
//!    transaction: booking confirmed, or the charge refunded, and the
//!    key finished with the answer.
//!
//! A crash between 2 and 3 loses nothing: the gateway charges once per
//! payment id, so the retry's second charge request returns the first
//! charge, and reconciliation asks the gateway about old `CREATED`
//! payments.
//!
//! A retry with the same key resumes at the last committed point, so a
//! crash anywhere never charges twice; what a crash leaves behind, the
//! webhook or reconciliation finishes. The response a client sees is
//! always the stored one, so a replay is byte-for-byte the first answer.

//!
//! Where things are: `machine` (the pure state machine: every decision),
//! `flow` (the steps, with I/O), `jobs` (phases 1 and 3 as group-commit
//! jobs), `record` (a gateway outcome recorded, from here, the webhook or
//! reconciliation), `settle` (booking or refund), `http` (the endpoint).

mod flow;
mod http;
pub mod jobs;
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
