//! Where a title plays: a city's shard says so before it creates a show
//! of it, and gets the title back to keep its own copy.

use super::CatalogState;
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson};
use axum::extract::State;
use shared::api::{ListMovie, Movie};
use shared::CityCode;

#[tracing::instrument(skip_all, fields(city = %req.city))]
pub(super) async fn list(
    op: CatalogOperator,
    state: State<CatalogState>,
    ApiJson(req): ApiJson<ListMovie>,
) -> Result<ApiJson<Movie>, ApiError> {
    let city = CityCode::parse(&req.city)
        .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()))?;
    op.check_city(city.as_str())?;
    let Some(movie) = super::movies::fetch(&state.db, req.movie_id).await? else {
        return Err(ApiError::not_found(
            "unknown_movie",
            format!("no movie {} in the global catalog", req.movie_id),
        ));
    };
    // The latest show wins: a show created for an earlier date does not
    // make the city look done with the title.
    sqlx::query!(
        r#"INSERT INTO catalog_listings (movie_id, city, last_starts_at)
           VALUES ($1, $2, $3)
           ON CONFLICT (movie_id, city) DO UPDATE
           SET last_starts_at = greatest(catalog_listings.last_starts_at, EXCLUDED.last_starts_at),
               updated_at = now()"#,
        req.movie_id,
        city.as_str(),
        req.starts_at
    )
    .execute(&state.db)
    .await?;
    Ok(ApiJson(movie))
}
