//! Titles: created once by an operator, read by anyone (the edge caches
//! them, shards copy them).

use super::CatalogState;
use crate::audit::store::Entry;
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson, ApiPath};
use axum::extract::State;
use axum::http::StatusCode;
use shared::api::{CreateMovie, Movie, MovieKind};
use sqlx::PgPool;
use uuid::Uuid;

#[tracing::instrument(skip_all)]
pub(super) async fn create(
    op: CatalogOperator,
    state: State<CatalogState>,
    ApiJson(req): ApiJson<CreateMovie>,
) -> Result<(StatusCode, ApiJson<Movie>), ApiError> {
    // The same checks as a shard's.
    crate::catalog::check_movie(&req)?;
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO catalog_movies (id, title, duration_minutes, language, kind)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING
           RETURNING id"#,
        id,
        &req.title,
        i32::from(req.duration_minutes),
        req.language.as_deref(),
        req.kind.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        drop(tx);
        let existing = sqlx::query_scalar!(
            r#"SELECT id FROM catalog_movies
               WHERE lower(title) = lower($1) AND coalesce(language, '') = coalesce($2, '')
                 AND duration_minutes = $3 AND kind = $4"#,
            &req.title,
            req.language.as_deref(),
            i32::from(req.duration_minutes),
            req.kind.as_str()
        )
        .fetch_optional(&state.db)
        .await?;
        return Err(ApiError::Conflict {
            code: "movie_exists",
            message: format!(
                "{:?} ({} min) is already in the catalog",
                req.title, req.duration_minutes
            ),
            details: existing.map(|id| serde_json::json!({ "id": id })),
        });
    }
    let movie = req.into_movie(id);
    super::audit::record(
        &mut tx,
        &op,
        Entry {
            action: "movie.create",
            target_kind: "movie",
            target_id: id.to_string(),
            city: None,
            before: None,
            after: Some(serde_json::to_value(&movie).unwrap_or_default()),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, ApiJson(movie)))
}

#[tracing::instrument(skip_all)]
pub(super) async fn get(
    state: State<CatalogState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Movie>, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request("invalid_id", "movie id must be a UUID"))?;
    fetch(&state.db, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found("movie_not_found", "no such movie"))
}

/// One title by id.
pub(super) async fn fetch(db: &PgPool, id: Uuid) -> Result<Option<Movie>, ApiError> {
    let row = sqlx::query!(
        "SELECT id, title, duration_minutes, language, kind FROM catalog_movies WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| movie(r.id, r.title, r.duration_minutes, r.language, &r.kind)))
}

/// A stored row as the API's title.
pub(super) fn movie(
    id: Uuid,
    title: String,
    minutes: i32,
    language: Option<String>,
    kind: &str,
) -> Movie {
    Movie {
        id,
        title,
        duration_minutes: u16::try_from(minutes).unwrap_or(u16::MAX),
        language,
        kind: MovieKind::parse(kind).unwrap_or_default(),
    }
}
