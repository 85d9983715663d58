//! The catalog of a city shard: operator endpoints that create, list,
//! read, edit and delete venues, screens (with seat layouts), movies and
//! shows, change a show's prices and block seats, and the public reads
//! buyers browse with; one module per resource, each owning the SQL of
//! its table.
//!
//! Every write is audited in its own transaction, and after it commits the
//! edge's cached reads of the city are invalidated ([`after_write`]).

mod blocked_seats;
mod cities;
mod movies;
mod page;
mod prices;
mod screens;
mod show_admin;
mod shows;
mod venues;

pub use movies::check_movie;
pub use screens::MAX_SEATS_PER_SCREEN;
pub use shows::{fetch_show, parse_show_id, MAX_PRICE_MINOR};

use crate::error::ApiError;
use crate::state::AppState;
use axum::routing::{get, post, put};
use axum::Router;
use uuid::Uuid;

/// Catalog routes (operator writes and reads, public reads).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/cities", post(cities::create_city))
        .route(
            "/v1/operator/venues",
            post(venues::create_venue).get(venues::list_venues),
        )
        .route(
            "/v1/operator/venues/{id}",
            get(venues::get_venue)
                .patch(venues::patch_venue)
                .delete(venues::delete_venue),
        )
        .route(
            "/v1/operator/screens",
            post(screens::create_screen).get(screens::list_screens),
        )
        .route(
            "/v1/operator/screens/{id}",
            get(screens::get_screen)
                .patch(screens::patch_screen)
                .delete(screens::delete_screen),
        )
        .route(
            "/v1/operator/movies",
            post(movies::create_movie).get(movies::list_movies),
        )
        .route(
            "/v1/operator/movies/{id}",
            get(movies::get_movie)
                .patch(movies::patch_movie)
                .delete(movies::delete_movie),
        )
        .route(
            "/v1/operator/shows",
            post(shows::create_show).get(show_admin::list_shows),
        )
        .route(
            "/v1/operator/shows/{id}",
            get(show_admin::get_show)
                .patch(show_admin::patch_show)
                .delete(show_admin::delete_show),
        )
        .route("/v1/operator/shows/{id}/prices", put(prices::put_prices))
        .route(
            "/v1/operator/shows/{id}/blocked-seats",
            post(blocked_seats::block).delete(blocked_seats::unblock),
        )
        .route("/v1/cities", get(cities::list_cities))
        .route("/v1/cities/{code}/shows", get(shows::list_shows))
        .route("/v1/shows/{id}", get(shows::get_show))
}

/// A text field: 1 to `max` characters, no control characters (NUL used
/// to reach Postgres and come back as a 500). The rule is the edge's too
/// (`shared::text`); the 422 names the field.
fn check_name(field: &'static str, v: &str, max: usize) -> Result<(), ApiError> {
    shared::text::check_line(field, v, max)
        .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()))
}

/// 409 for a name already taken, carrying the existing row's id in
/// `details.id` so an idempotent seeding client can use it.
fn exists(code: &'static str, message: String, existing: Option<Uuid>) -> ApiError {
    ApiError::Conflict {
        code,
        message,
        details: existing.map(|id| serde_json::json!({ "id": id })),
    }
}

/// After a catalog write has committed: the edge's cached reads of
/// `cities` (and its city list) are made stale, when this region knows
/// the edge's Upstash (`crate::edge_cache`).
async fn after_write(state: &AppState, cities: &[String]) {
    if let Some(edge) = &state.edge_cache {
        edge.bump(cities).await;
    }
}

/// Parses a UUID path segment; 400 naming the kind otherwise.
fn parse_id(code: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::bad_request(code, format!("{raw:?} is not an id")))
}

/// A PATCH that names no field changes nothing: 422.
fn empty_patch() -> ApiError {
    ApiError::unprocessable("empty_patch", "give at least one field to change")
}

/// JSON of a row for the audit log.
fn audit_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    Ok(serde_json::to_value(v).map_err(anyhow::Error::from)?)
}
