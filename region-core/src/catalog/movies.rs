//! Movies: what shows play. With the global catalog on
//! (`REGION_CATALOG_URL`), a title created here is created there, and the
//! shard keeps a copy under the global id (`crate::catalog_client`).

use super::check_name;
use crate::audit::store::{self as audit, Entry};
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::http::StatusCode;
use shared::api::{CreateMovie, Movie};
use uuid::Uuid;

/// What a title must be, here and in the global catalog: a 422 naming
/// the field otherwise.
pub fn check_movie(req: &CreateMovie) -> Result<(), ApiError> {
    check_name("title", &req.title, 300)?;
    if req.duration_minutes == 0 || req.duration_minutes > 1440 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "duration_minutes must be 1-1440",
        ));
    }
    if let Some(l) = &req.language {
        check_name("language", l, 40)?;
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
pub(super) async fn create_movie(
    op: CatalogOperator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateMovie>,
) -> Result<(StatusCode, ApiJson<Movie>), ApiError> {
    check_movie(&req)?;
    // With a global catalog, the title is created there (no connection
    // held across the call); the shard's log says who did it from here.
    let global = match &state.catalog {
        Some(catalog) => Some(catalog.create_movie(&state.db, &op.id, &req).await?),
        None => None,
    };
    let mut tx = state.db.begin().await?;
    let movie = if let Some(movie) = global {
        movie
    } else {
        let id = Uuid::now_v7();
        sqlx::query!(
            "INSERT INTO movies (id, title, duration_minutes, language) VALUES ($1, $2, $3, $4)",
            id,
            &req.title,
            i32::from(req.duration_minutes),
            req.language.as_deref()
        )
        .execute(&mut *tx)
        .await?;
        req.into_movie(id)
    };
    let entry = Entry {
        action: "movie.create",
        target_kind: "movie",
        target_id: movie.id.to_string(),
        city: None,
        before: None,
        after: Some(serde_json::to_value(&movie).map_err(anyhow::Error::from)?),
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, ApiJson(movie)))
}
