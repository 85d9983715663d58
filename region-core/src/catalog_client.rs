//! The shard's side of the global catalog (`crate::global_catalog`, a
//! service of its own): titles are created there, and a shard asks it for
//! a title before its first show of it, keeping a copy in its own
//! `movies` table (same id) so its reads never leave the shard. Calls go
//! with an operator token the shard mints for the operator who asked.

use crate::auth::{Role, TokenKeys};
use crate::error::ApiError;
use reqwest::StatusCode;
use shared::api::{CreateMovie, ListMovie, Movie};
use sqlx::PgPool;
use std::time::Duration;

/// Lifetime of the token a shard mints for one catalog call, in seconds.
const TOKEN_TTL_S: i64 = 60;

/// A client of the global catalog at one base URL.
#[derive(Clone)]
pub struct CatalogClient {
    base: String,
    http: reqwest::Client,
    tokens: TokenKeys,
}

impl CatalogClient {
    /// A client of the catalog at `base` (`http://host:port`).
    pub fn new(base: &str, timeout: Duration, tokens: TokenKeys) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
            tokens,
        })
    }

    /// Creates the title in the global catalog (or finds the one that is
    /// already there: the catalog's 409 `movie_exists` is passed on, with
    /// the existing id) and copies it into the shard.
    pub async fn create_movie(
        &self,
        db: &PgPool,
        operator: &str,
        req: &CreateMovie,
    ) -> Result<Movie, ApiError> {
        let answer = self.post(operator, "/v1/operator/movies", req).await?;
        match answer.status() {
            StatusCode::CREATED => {
                let movie: Movie = answer.json().await.map_err(unavailable)?;
                copy(db, &movie).await?;
                Ok(movie)
            }
            _ => {
                let err = passed_on(answer).await;
                // The title exists: copy it too, so a show of it can be
                // created here right away.
                if let ApiError::Conflict {
                    details: Some(d), ..
                } = &err
                {
                    if let Some(id) = d.get("id").and_then(|v| v.as_str()) {
                        let movie = self.movie(id).await?;
                        copy(db, &movie).await?;
                    }
                }
                Err(err)
            }
        }
    }

    /// Tells the catalog that `city` shows `movie_id` from `starts_at`,
    /// and copies the title into the shard. An unknown title is the
    /// catalog's 404 `unknown_movie`.
    pub async fn list(
        &self,
        db: &PgPool,
        operator: &str,
        listing: &ListMovie,
    ) -> Result<Movie, ApiError> {
        let answer = self
            .post(operator, "/v1/operator/listings", listing)
            .await?;
        if answer.status() != StatusCode::OK {
            return Err(passed_on(answer).await);
        }
        let movie: Movie = answer.json().await.map_err(unavailable)?;
        copy(db, &movie).await?;
        Ok(movie)
    }

    async fn movie(&self, id: &str) -> Result<Movie, ApiError> {
        let answer = self
            .http
            .get(format!("{}/v1/movies/{id}", self.base))
            .send()
            .await
            .map_err(unavailable)?;
        if answer.status() != StatusCode::OK {
            return Err(passed_on(answer).await);
        }
        answer.json().await.map_err(unavailable)
    }

    async fn post<B: serde::Serialize>(
        &self,
        operator: &str,
        path: &str,
        body: &B,
    ) -> Result<reqwest::Response, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let token = self
            .tokens
            .mint(operator, Role::Operator, now, TOKEN_TTL_S)
            .map_err(ApiError::Internal)?;
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(unavailable)
    }
}

/// Keeps the shard's copy of a title current (the catalog's wins).
async fn copy(db: &PgPool, m: &Movie) -> Result<(), ApiError> {
    sqlx::query!(
        r#"INSERT INTO movies (id, title, duration_minutes, language)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE
           SET title = EXCLUDED.title, duration_minutes = EXCLUDED.duration_minutes,
               language = EXCLUDED.language"#,
        m.id,
        &m.title,
        i32::from(m.duration_minutes),
        m.language.as_deref()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The catalog could not be asked: the operator may retry.
fn unavailable(e: reqwest::Error) -> ApiError {
    tracing::warn!(error = %e, "global catalog unreachable");
    metrics::counter!("catalog_client_failures_total").increment(1);
    catalog_unavailable()
}

fn catalog_unavailable() -> ApiError {
    ApiError::unavailable(
        "catalog_unavailable",
        "the global catalog is unavailable; retry shortly",
    )
}

/// A 4xx of the catalog becomes the same error here (its code and
/// message); anything else means it is unavailable.
async fn passed_on(answer: reqwest::Response) -> ApiError {
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    let err = &body["error"];
    let message = err["message"].as_str().unwrap_or("").to_owned();
    let code = err["code"].as_str().unwrap_or("");
    match status {
        StatusCode::CONFLICT if code == "movie_exists" => ApiError::Conflict {
            code: "movie_exists",
            message,
            details: err.get("details").cloned(),
        },
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::unprocessable("invalid_field", message),
        StatusCode::NOT_FOUND => ApiError::not_found("unknown_movie", message),
        _ => {
            tracing::warn!(%status, "global catalog answered an error");
            catalog_unavailable()
        }
    }
}
