//! The harness the end-to-end tests (`tests/`, crate `e2e`) and the load
//! generator (`loadgen`) share, so each piece of it exists once. Today:
//! throw-away databases ([`db`]). Development only: nothing here is part
//! of a deployment.

pub mod db;
