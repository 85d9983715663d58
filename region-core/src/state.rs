//! What every handler shares: pools, the Redis path, the hold writers,
//! the show-layout cache and the settings.

use crate::auth::TokenKeys;
use crate::config::Settings;
use crate::holds::writer::HoldWriters;
use crate::redis_path::RedisPath;
use crate::shows::ShowCache;
use sqlx::PgPool;
use std::sync::Arc;

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// This shard's Postgres.
    pub db: PgPool,
    /// Redis fast path and its breaker.
    pub redis: RedisPath,
    /// Group-commit writers for holds.
    pub writers: HoldWriters,
    /// Immutable show layouts, loaded once per show.
    pub shows: ShowCache,
    /// JWT keys.
    pub tokens: TokenKeys,
    /// Settings.
    pub settings: Arc<Settings>,
}
