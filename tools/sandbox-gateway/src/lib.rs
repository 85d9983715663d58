//! A stand-in for a Stripe-like payment gateway, for the demo and the
//! end-to-end tests: payment intents that are confirmed and captured at
//! once, refunds, Stripe's idempotency-key rules, fault injection chosen
//! by payment-method token (declines, 5xx, timeouts, lost responses) or at
//! random, and signed webhooks. Everything lives in memory.
//!
//! Embed it with [`spawn`] (tests) or run the `sandbox-gateway` binary.
//! The HTTP API is described in `docs/sandbox-gateway.md`.

mod app;
mod auth;
mod config;
mod control;
mod error;
mod faults;
mod idempotency;
mod intents;
mod ledger;
mod refunds;
mod reply;
mod request;
mod state;
mod webhooks;

pub use app::{spawn, RunningSandbox};
pub use config::{
    Args, SandboxConfig, DEFAULT_API_KEY, DEFAULT_LISTEN, DEFAULT_TIMEOUT_MS,
    DEFAULT_WEBHOOK_SECRET,
};
pub use webhooks::SIGNATURE_HEADER;
