//! Where a title plays: a city's shard says so before it creates a show
//! of it, and gets the title back to keep its own copy.

use super::CatalogState;
use crate::audit::store::Entry;
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
    let mut tx = state.db.begin().await?;
    let before = sqlx::query_scalar!(
        "SELECT last_starts_at FROM catalog_listings WHERE movie_id = $1 AND city = $2 FOR UPDATE",
        req.movie_id,
        city.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?;
    let after = sqlx::query_scalar!(
        r#"INSERT INTO catalog_listings (movie_id, city, last_starts_at)
           VALUES ($1, $2, $3)
           ON CONFLICT (movie_id, city) DO UPDATE
           SET last_starts_at = greatest(catalog_listings.last_starts_at, EXCLUDED.last_starts_at),
               updated_at = now()
           RETURNING last_starts_at"#,
        req.movie_id,
        city.as_str(),
        req.starts_at
    )
    .fetch_one(&mut *tx)
    .await?;
    let row = |at| serde_json::json!({ "movie_id": req.movie_id, "city": city.as_str(), "last_starts_at": at });
    super::audit::record(
        &mut tx,
        &op,
        Entry {
            action: "listing.upsert",
            target_kind: "listing",
            target_id: format!("{}:{}", req.movie_id, city.as_str()),
            city: Some(city.as_str()),
            before: before.map(row),
            after: Some(row(after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(ApiJson(movie))
}
