//! Movies: what shows play. With the global catalog on
//! (`REGION_CATALOG_URL`), a title created here is created there, and the
//! shard keeps a copy under the global id (`crate::catalog_client`).
//! Without it, operators list, read, retitle and delete the shard's own.

use super::page::{self, Page};
use super::{after_write, audit_json, check_name, empty_patch, parse_id};
use crate::audit::store::{self as audit, Entry};
use crate::auth::{CatalogOperator, Operator, ReadOperator};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use shared::api::{CreateMovie, Movie, MovieKind};
use sqlx::PgConnection;
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
    after_write(&state, &[]).await;
    Ok((StatusCode::CREATED, ApiJson(movie)))
}

/// `GET /v1/operator/movies` paging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MovieQuery {
    limit: Option<i64>,
    after: Option<String>,
}

struct MovieRow {
    id: Uuid,
    title: String,
    duration_minutes: i32,
    language: Option<String>,
}

impl MovieRow {
    fn movie(self) -> Movie {
        Movie {
            id: self.id,
            title: self.title,
            duration_minutes: u16::try_from(self.duration_minutes).unwrap_or(u16::MAX),
            language: self.language,
            kind: MovieKind::default(),
        }
    }
}

/// The shard's titles (shared by its cities), by id.
pub(super) async fn list_movies(
    _op: ReadOperator,
    state: State<AppState>,
    ApiQuery(q): ApiQuery<MovieQuery>,
) -> Result<ApiJson<Page<Movie>>, ApiError> {
    let limit = page::limit(q.limit)?;
    let after = page::id_cursor(q.after.as_deref())?;
    let rows = sqlx::query_as!(
        MovieRow,
        "SELECT id, title, duration_minutes, language FROM movies
          WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        after,
        limit
    )
    .fetch_all(&state.db)
    .await?;
    let movies = rows.into_iter().map(MovieRow::movie).collect();
    Ok(ApiJson(Page::new(movies, limit, |m: &Movie| {
        m.id.to_string()
    })))
}

async fn fetch_movie(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<Movie, ApiError> {
    let row = if lock {
        sqlx::query_as!(
            MovieRow,
            "SELECT id, title, duration_minutes, language FROM movies WHERE id = $1 FOR UPDATE",
            id
        )
        .fetch_optional(&mut *conn)
        .await?
    } else {
        sqlx::query_as!(
            MovieRow,
            "SELECT id, title, duration_minutes, language FROM movies WHERE id = $1",
            id
        )
        .fetch_optional(&mut *conn)
        .await?
    };
    row.map(MovieRow::movie)
        .ok_or_else(|| ApiError::not_found("unknown_movie", format!("no movie {id}")))
}

pub(super) async fn get_movie(
    _op: ReadOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<Movie>, ApiError> {
    let id = parse_id("invalid_movie_id", &raw)?;
    let mut conn = state.db.acquire().await?;
    Ok(ApiJson(fetch_movie(&mut conn, id, false).await?))
}

/// With the global catalog on, a title is the catalog's: edited there.
fn refuse_if_global(state: &AppState) -> Result<(), ApiError> {
    if state.catalog.is_some() {
        return Err(ApiError::conflict(
            "movie_is_global",
            "titles live in the global catalog: change them there",
        ));
    }
    Ok(())
}

/// The cities that show `movie`; 403 unless the token reaches them all
/// (a title is shared by the shard's cities).
async fn cities_showing(
    conn: &mut PgConnection,
    op: &Operator,
    movie: Uuid,
) -> Result<Vec<String>, ApiError> {
    let cities = sqlx::query_scalar!(
        "SELECT DISTINCT v.city_code FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
           JOIN venues v ON v.id = sc.venue_id WHERE sh.movie_id = $1 ORDER BY 1",
        movie
    )
    .fetch_all(&mut *conn)
    .await?;
    for c in &cities {
        op.check_city(c)?;
    }
    Ok(cities)
}

/// `PATCH /v1/operator/movies/{id}`: title and language. Not the running
/// time: every show's end (and the screen's no-overlap rule) follows it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchMovie {
    title: Option<String>,
    language: Option<String>,
}

#[tracing::instrument(skip_all)]
pub(super) async fn patch_movie(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<PatchMovie>,
) -> Result<ApiJson<Movie>, ApiError> {
    let id = parse_id("invalid_movie_id", &raw)?;
    if req.title.is_none() && req.language.is_none() {
        return Err(empty_patch());
    }
    if let Some(t) = &req.title {
        check_name("title", t, 300)?;
    }
    if let Some(l) = &req.language {
        check_name("language", l, 40)?;
    }
    refuse_if_global(&state)?;
    let mut tx = state.db.begin().await?;
    let before = fetch_movie(&mut tx, id, true).await?;
    let cities = cities_showing(&mut tx, &op, id).await?;
    let mut after = before.clone();
    if let Some(t) = req.title {
        after.title = t;
    }
    if let Some(l) = req.language {
        after.language = Some(l);
    }
    sqlx::query!(
        "UPDATE movies SET title = $2, language = $3 WHERE id = $1",
        id,
        &after.title,
        after.language.as_deref()
    )
    .execute(&mut *tx)
    .await?;
    let entry = Entry {
        action: "movie.update",
        target_kind: "movie",
        target_id: id.to_string(),
        city: None,
        before: Some(audit_json(&before)?),
        after: Some(audit_json(&after)?),
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &cities).await;
    Ok(ApiJson(after))
}

/// `DELETE /v1/operator/movies/{id}`: only a title no show plays.
#[tracing::instrument(skip_all)]
pub(super) async fn delete_movie(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id("invalid_movie_id", &raw)?;
    refuse_if_global(&state)?;
    let mut tx = state.db.begin().await?;
    let before = fetch_movie(&mut tx, id, true).await?;
    let shows = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM shows WHERE movie_id = $1"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    if shows > 0 {
        return Err(ApiError::conflict(
            "movie_has_shows",
            format!("{shows} shows play this title: delete them first"),
        ));
    }
    sqlx::query!("DELETE FROM movies WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    let entry = Entry {
        action: "movie.delete",
        target_kind: "movie",
        target_id: id.to_string(),
        city: None,
        before: Some(audit_json(&before)?),
        after: None,
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[]).await;
    Ok(StatusCode::NO_CONTENT)
}
