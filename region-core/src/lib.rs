//! The region core: one city shard's booking service.
//!
//! Where things live:
//! - `app` builds the service (Postgres, Redis, background tasks, router);
//! - `catalog` owns cities, venues, screens, movies and shows;
//! - `holds` owns seat holds (Redis lock, group commit, Postgres-only path);
//! - `seat_map` serves live seat maps; `sweeper` frees expired holds;
//! - `redis_path` + `breaker` + `recovery` are the Redis fast path and its
//!   failure handling;
//! - `auth`, `error`, `config`, `health` are the service's boundaries.

pub mod app;
pub mod auth;
pub mod breaker;
pub mod catalog;
pub mod config;
pub mod error;
pub mod health;
pub mod holds;
pub mod recovery;
pub mod redis_path;
pub mod seat_map;
pub mod shows;
pub mod state;
pub mod sweeper;

pub use app::{Application, RunningApp};
pub use config::Settings;
