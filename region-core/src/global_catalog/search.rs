//! Title search across every city, tolerant of typos: Postgres trigrams
//! (`pg_trgm`), the whole title or its closest word run, whichever is the
//! better match ("interstelar" finds "Interstellar", "dune" finds "Dune:
//! Part Two"). docs/adr/0018 says why not a search engine of its own.

use super::CatalogState;
use crate::error::{ApiError, ApiJson, ApiQuery};
use axum::extract::State;
use serde::Deserialize;
use shared::api::{SearchHit, SearchResults};

/// Longest query searched.
const MAX_QUERY: usize = 100;
/// Most hits per answer.
const MAX_LIMIT: i64 = 50;

#[derive(Debug, Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
    limit: Option<i64>,
}

#[tracing::instrument(skip_all)]
pub(super) async fn search(
    state: State<CatalogState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<ApiJson<SearchResults>, ApiError> {
    let q = query.q.as_deref().unwrap_or_default().trim().to_owned();
    if q.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must name what to search for",
        ));
    }
    shared::text::check_line("q", &q, MAX_QUERY)
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1-{MAX_LIMIT}"),
        ));
    }
    // `%` (whole-title similarity) and `<%` (the query against the
    // title's best-matching run of words) are the index's operators; the
    // substring match catches queries too short to have many trigrams.
    let rows = sqlx::query!(
        r#"SELECT m.id, m.title, m.duration_minutes, m.language, m.kind,
                  greatest(similarity(m.title, $1), word_similarity($1, m.title))::real AS "score!",
                  coalesce(array_agg(l.city ORDER BY l.city)
                           FILTER (WHERE l.last_starts_at > now()), '{}') AS "cities!"
           FROM catalog_movies m
           LEFT JOIN catalog_listings l ON l.movie_id = m.id
           WHERE m.title % $1 OR $1 <% m.title
              OR strpos(lower(m.title), lower($1)) > 0
           GROUP BY m.id
           ORDER BY 6 DESC, m.title, m.id
           LIMIT $2"#,
        q,
        limit
    )
    .fetch_all(&state.db)
    .await?;
    let hits = rows
        .into_iter()
        .map(|r| SearchHit {
            movie: super::movies::movie(r.id, r.title, r.duration_minutes, r.language, &r.kind),
            score: r.score,
            cities: r.cities,
        })
        .collect();
    Ok(ApiJson(SearchResults { query: q, hits }))
}
