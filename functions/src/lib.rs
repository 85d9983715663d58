//! The edge Worker: rate limiting, the virtual waiting room, cached
//! catalog reads and routing by city to that city's region core.
//!
//! It compiles to WASM for Cloudflare Workers (and runs locally in workerd
//! through Miniflare, see `docs/edge.md`), but almost all of it is plain
//! Rust that builds and is unit-tested on the host:
//!
//! - [`routes`] turns a method and path into a [`routes::Route`];
//! - [`config`] parses and checks the Worker's vars and secrets;
//! - [`controls`] is the deny list and peak mode operators set at run time;
//! - [`auth`] reads the caller's token, IP and body, and checks them;
//! - [`upstash`] is the Upstash REST protocol: request bodies, typed
//!   replies, error mapping (the `Fetch` that sends them is in `wasm`);
//! - [`scripts`] holds the Lua scripts (one `EVAL` per edge decision);
//! - [`rate_limit`] is the rate-limit decision around the gate script;
//! - [`waiting_room`] is the waiting room around the room script, and the
//!   admission passes it hands out;
//! - [`catalog`] is cache keys, TTLs and freshness for catalog reads;
//! - [`breaker`] is the per-region circuit breaker;
//! - [`live`] is the live seat map's fan-out (which object serves a
//!   viewer, what it relays) and the polling fallback's checks;
//! - [`pages`] renders the buyer's pages (pure: data and `now` in, HTML
//!   out) and holds their routes, session cookies and static assets;
//! - [`error`] is the one error type, mapped to HTTP.
//!
//! Time always comes in as an argument (`now_ms`). The `wasm` module,
//! compiled only for `wasm32`, is the thin layer over the Workers runtime:
//! `#[event(fetch)]`, `Fetch`, the Cache API and isolate memory.

pub mod auth;
pub mod breaker;
pub mod catalog;
pub mod config;
pub mod controls;
pub mod cross_shard;
pub mod edge_audit;
pub mod error;
pub mod live;
pub mod pages;
pub mod rate_limit;
pub mod routes;
pub mod scripts;
pub mod upstash;
pub mod waiting_room;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use error::EdgeError;
