//! The catalog of a city shard: operator endpoints that create cities,
//! venues, screens (with seat layouts), movies and shows, and the public
//! reads buyers browse with; one module per resource, each owning the SQL
//! of its table.

mod cities;
mod movies;
mod screens;
mod shows;
mod venues;

pub use movies::check_movie;
pub use screens::MAX_SEATS_PER_SCREEN;
pub use shows::{fetch_show, parse_show_id, MAX_PRICE_MINOR};

use crate::error::ApiError;
use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;
use uuid::Uuid;

/// Catalog routes (operator writes and public reads).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/cities", post(cities::create_city))
        .route("/v1/operator/venues", post(venues::create_venue))
        .route("/v1/operator/screens", post(screens::create_screen))
        .route("/v1/operator/movies", post(movies::create_movie))
        .route("/v1/operator/shows", post(shows::create_show))
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
