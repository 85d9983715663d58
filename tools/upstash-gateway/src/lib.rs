//! An Upstash-compatible REST gateway in front of a real Redis, for local
//! runs and CI: the edge Worker speaks Upstash's REST protocol (a JSON
//! command per POST, path-style commands, `/pipeline`, `/multi-exec`,
//! Bearer token, `Upstash-Encoding: base64`), and this gateway runs those
//! exact commands and Lua scripts on the project's Redis.
//!
//! Embed it with [`spawn`] (tests, benchmarks) or run the `upstash-gateway`
//! binary. The protocol and the choices made where Upstash's documentation
//! is silent are described in `docs/upstash-gateway.md`.

mod app;
mod auth;
mod backend;
mod batch;
mod command;
mod config;
mod error;
mod reply;
mod single;
mod state;
mod unsupported;

pub use app::{spawn, RunningGateway};
pub use config::{Args, GatewayConfig, DEFAULT_LISTEN, DEFAULT_REDIS_URL, DEFAULT_TOKEN};
