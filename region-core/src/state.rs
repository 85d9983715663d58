//! What every handler shares: pools, the Redis path, the hold writers,
//! the show-layout cache, the payment gateway and the settings.

use crate::auth::TokenKeys;
use crate::catalog_client::CatalogClient;
use crate::checkout::jobs::CheckoutWriters;
use crate::config::Settings;
use crate::holds::writer::HoldWriters;
use crate::lease::Lease;
use crate::live::hub::Hub;
use crate::payments::PaymentGateway;
use crate::redis_path::RedisPath;
use crate::shows::ShowCache;
use crate::tickets::TicketKeys;
use axum::extract::FromRef;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::Notify;

/// Shared application state (cheap to clone). `FromRef` hands each part
/// to the extractors that need only it (`auth::User` takes `TokenKeys`).
#[derive(Clone, FromRef)]
pub struct AppState {
    /// This shard's Postgres.
    pub db: PgPool,
    /// Redis fast path and its breaker.
    pub redis: RedisPath,
    /// Group-commit writers for holds.
    pub writers: HoldWriters,
    /// Group-commit writers for the checkout's two writes.
    #[from_ref(skip)]
    pub checkout: CheckoutWriters,
    /// Immutable show layouts, loaded once per show.
    pub shows: ShowCache,
    /// JWT keys.
    pub tokens: TokenKeys,
    /// Settings.
    pub settings: Arc<Settings>,
    /// The payment gateway.
    pub gateway: Arc<dyn PaymentGateway>,
    /// Live seat-map feeds and sockets of this process.
    #[from_ref(skip)]
    pub live: Arc<Hub>,
    /// Wakes the outbox relay after a commit that wrote events.
    #[from_ref(skip)]
    pub outbox_kick: Arc<Notify>,
    /// Wakes the refund worker after a commit that created a refund.
    #[from_ref(skip)]
    pub refund_kick: Arc<Notify>,
    /// The keys tickets are signed and checked with.
    #[from_ref(skip)]
    pub tickets: Arc<TicketKeys>,
    /// The shard's `reconcile` lease, as this replica asks for it.
    #[from_ref(skip)]
    pub reconcile_lease: Lease,
    /// The global catalog, when titles are global (`REGION_CATALOG_URL`).
    #[from_ref(skip)]
    pub catalog: Option<CatalogClient>,
    /// The edge's catalog versions, when the region bumps them
    /// (`REGION_EDGE_UPSTASH_URL`).
    #[from_ref(skip)]
    pub edge_cache: Option<crate::edge_cache::EdgeCache>,
}

impl AppState {
    /// The parts of the state that settling a payment uses.
    pub fn settle_ctx(&self) -> crate::checkout::settle::Ctx {
        crate::checkout::settle::Ctx {
            db: self.db.clone(),
            settings: self.settings.clone(),
            redis: self.redis.clone(),
            shows: self.shows.clone(),
            outbox_kick: self.outbox_kick.clone(),
            refund_kick: self.refund_kick.clone(),
        }
    }
}
