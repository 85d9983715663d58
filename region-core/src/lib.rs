//! The region core: one city shard's booking service.
//!
//! Where things live:
//! - `app` builds the service (Postgres, Redis, background tasks, router);
//! - `catalog` owns cities, venues, screens, movies and shows;
//! - `holds` owns seat holds (Redis lock, group commit, Postgres-only path);
//! - `seat_map` serves seat maps; `live` numbers seat changes and pushes
//!   them to viewers (WebSocket, polling); `sweeper` frees expired holds;
//! - `redis_path` + `recovery` (with `shared::breaker`) are the Redis fast path and its
//!   failure handling; `redlock` is its opt-in seat-lock quorum over
//!   independent Redis servers;
//! - `checkout` turns a hold into a paid booking (idempotency keys with
//!   recovery points, `checkout::settle` books or compensates), its two
//!   writes group-committed through `group_commit`;
//! - `payments` is the gateway trait and its HTTP client; `webhook` is
//!   the gateway's signed callback;
//! - `bookings` owns bookings and cancellation; `refunds` sends refunds
//!   with backoff; `reconcile` settles what crashes left behind;
//! - `outbox` publishes state changes (Redis Streams); `notifier` is its
//!   idempotent consumer (what users are told);
//! - `auth`, `error`, `config`, `health` are the service's boundaries;
//!   `http_log` decides at which level an answer is logged, `http_metrics`
//!   times every answer by route; `pool_sampler` watches the Postgres pools;
//! - `reports` answers operators' reads and reports (a booking, a show's
//!   occupancy and bookings, sales, refunds needing attention, payments
//!   not yet settled) and their refund actions; `diagnostics` the
//!   shard's status, shows kept overlapping and the seat consistency
//!   checks; `mail::admin` the mail queue (failed messages re-sent, a
//!   confirmation sent again); `paging` is how every operator list
//!   reads its page size and cursor;
//! - `show_cancel` cancels a show for its organiser: no new holds or
//!   bookings, every booking cancelled with a full refund (a resumable job);
//! - `retention` trims finished records after configurable horizons.

pub mod app;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod bookings;
pub mod catalog;
pub mod catalog_client;
pub mod checkins;
pub mod checkout;
pub mod config;
pub mod db;
pub mod diagnostics;
pub mod edge_cache;
pub mod error;
pub mod global_catalog;
pub mod group_commit;
pub mod health;
pub mod holds;
pub mod http_log;
pub mod http_metrics;
pub mod idempotency;
pub mod lease;
pub mod live;
pub mod mail;
pub mod notifier;
pub mod outbox;
pub mod ownership;
pub mod paging;
pub mod path_switch;
pub mod payments;
pub mod pool_sampler;
pub mod reconcile;
pub mod recovery;
pub mod redis_locator;
pub mod redis_path;
pub mod redlock;
pub mod refunds;
pub mod reports;
pub mod retention;
pub mod sale_config;
pub mod seat_map;
pub mod serve;
pub mod show_cancel;
pub mod shows;
pub mod state;
pub mod sweeper;
pub mod tickets;
pub mod webhook;

pub use app::{Application, RunningApp};
pub use config::Settings;
