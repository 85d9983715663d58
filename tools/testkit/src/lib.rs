//! The harness the end-to-end tests (`tests/`, crate `e2e`), the load
//! generator (`tools/loadgen`) and the demo (`tools/demo`) share, so each
//! piece of it exists once: throw-away databases ([`db`]), the workspace's
//! binaries as processes ([`process`]), the edge Worker in workerd
//! ([`workerd`]), the HTTP client of the region core's and the edge's API
//! ([`api`]), a live seat-map viewer ([`live`]), the sandbox payment gateway's ledger and controls
//! ([`gateway`]), private Redis servers and a Sentinel set
//! ([`redis_server`], [`sentinel`]), the seat invariants ([`invariants`])
//! and the money audit ([`money`]).
//!
//! Development only: nothing here is part of a deployment, and nothing
//! here depends on the region core's crate (it is driven over HTTP, and
//! its database read with SQL).

pub mod api;
pub mod db;
pub mod gateway;
pub mod invariants;
pub mod live;
pub mod mail;
pub mod money;
pub mod pg_server;
pub mod process;
pub mod redis_server;
pub mod seed;
pub mod sentinel;
pub mod workerd;
