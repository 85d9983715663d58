//! The global catalog: the titles (films and live events) every city
//! shares, one id each, where each plays, and typo-tolerant search over
//! them. A service of its own with its own Postgres database (schema in
//! `migrations-global/`), run from the same binary as the shards
//! (`region-core catalog`) so an operator deploys one image; it shares
//! nothing with a shard at run time but the token key. Shards copy the
//! titles they show (`crate::catalog_client`); the edge caches the reads.
//! docs/adr/0018 says why it is built this way.
//!
//! | Method and path | Who | What |
//! |---|---|---|
//! | `POST /v1/operator/movies` | operator | create a title (409 `movie_exists` with the existing id) |
//! | `GET /v1/movies/{id}` | anyone | one title |
//! | `GET /v1/search?q=&limit=` | anyone | titles close to `q`, with the cities still showing them |
//! | `POST /v1/operator/listings` | operator (a shard) | "this city shows this title": answers the title |
//! | `GET /v1/operator/audit` | operator (`read`) | the catalog's own audit log: every write above by whom, before and after |
//! | `GET /healthz` | anyone | the database answers |

mod audit;
mod listings;
mod movies;
mod search;

use crate::auth::TokenKeys;
use crate::error::ApiError;
use anyhow::Context;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use axum::Router;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// How the catalog service is run (flags or environment).
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogSettings {
    /// The global catalog's own Postgres database.
    #[arg(long, env = "CATALOG_DATABASE_URL")]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, env = "CATALOG_LISTEN", default_value = "127.0.0.1:8070")]
    pub listen: SocketAddr,
    /// Postgres connections.
    #[arg(long, env = "CATALOG_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
    #[command(flatten)]
    pub signing: service_kit::SigningKey,
}

/// What the handlers share.
#[derive(Clone, FromRef)]
pub struct CatalogState {
    db: PgPool,
    tokens: TokenKeys,
}

/// The catalog's routes over its state.
pub fn router(state: CatalogState) -> Router {
    Router::new()
        .route("/v1/operator/movies", post(movies::create))
        .route("/v1/movies/{id}", get(movies::get))
        .route("/v1/search", get(search::search))
        .route("/v1/operator/listings", post(listings::list))
        .route("/v1/operator/audit", get(audit::list))
        .route("/healthz", get(health))
        .fallback(|| async { ApiError::not_found("no_route", "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(crate::http_log::layer())
        .with_state(state)
}

async fn health(
    state: axum::extract::State<CatalogState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    sqlx::query_scalar!("SELECT 1 AS \"one!\"")
        .fetch_one(&state.db)
        .await?;
    Ok(axum::Json(serde_json::json!({ "status": "ok" })))
}

/// Connects, migrates and serves until `shutdown`.
pub async fn run(
    settings: CatalogSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(settings.db_pool_size)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&settings.database_url)
        .await
        .context("connecting to CATALOG_DATABASE_URL")?;
    sqlx::migrate!("../migrations-global")
        .run(&db)
        .await
        .context("applying migrations-global")?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "global catalog listening");
    let state = CatalogState {
        db,
        tokens: TokenKeys::new(&settings.signing.jwt_secret),
    };
    crate::serve::serve(listener, router(state), Duration::from_secs(10), shutdown).await;
    tracing::info!("global catalog stopped");
    Ok(())
}
