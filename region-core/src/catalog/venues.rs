//! Venues: a name, a city and the time zone its shows are sold in;
//! created, listed, read, renamed, re-zoned and deleted by operators.

use super::page::{self, Page};
use super::{after_write, audit_json, check_name, empty_patch, exists, parse_id};
use crate::audit::store::{self as audit, Entry};
use crate::auth::{CatalogOperator, Operator, ReadOperator};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::ownership::{self, Owned};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use shared::api::{CreateVenue, Venue};
use shared::CityCode;
use sqlx::PgConnection;
use uuid::Uuid;

/// 422 unless `tz` is an IANA time zone.
fn check_time_zone(tz: &str) -> Result<(), ApiError> {
    if tz.parse::<Tz>().is_err() {
        return Err(ApiError::unprocessable(
            "invalid_time_zone",
            format!("{tz:?} is not an IANA time zone (e.g. Asia/Kolkata)"),
        ));
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
pub(super) async fn create_venue(
    op: CatalogOperator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateVenue>,
) -> Result<(StatusCode, ApiJson<Venue>), ApiError> {
    check_name("name", &req.name, 200)?;
    op.check_city(req.city.as_str())?;
    check_time_zone(&req.time_zone)?;
    super::cities::city_exists(&state, &req.city).await?;
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    let res = sqlx::query!(
        "INSERT INTO venues (id, city_code, name, time_zone) VALUES ($1, $2, $3, $4)",
        id,
        req.city.as_str(),
        &req.name,
        &req.time_zone
    )
    .execute(&mut *tx)
    .await;
    match res {
        Err(e) if crate::db::is_unique_violation(&e) => {
            drop(tx);
            let existing = sqlx::query_scalar!(
                "SELECT id FROM venues WHERE city_code = $1 AND name = $2",
                req.city.as_str(),
                &req.name
            )
            .fetch_optional(&state.db)
            .await?;
            Err(exists(
                "venue_exists",
                format!("venue {:?} already exists in {}", req.name, req.city),
                existing,
            ))
        }
        Err(e) => Err(e.into()),
        Ok(_) => {
            let venue = Venue {
                id,
                city: req.city,
                name: req.name,
                time_zone: req.time_zone,
            };
            let entry = Entry {
                action: "venue.create",
                target_kind: "venue",
                target_id: id.to_string(),
                city: Some(venue.city.as_str()),
                before: None,
                after: Some(serde_json::to_value(&venue).map_err(anyhow::Error::from)?),
            };
            audit::record(&mut tx, &op, entry).await?;
            tx.commit().await?;
            after_write(&state, &[venue.city.to_string()]).await;
            Ok((StatusCode::CREATED, ApiJson(venue)))
        }
    }
}

/// `GET /v1/operator/venues` filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VenueQuery {
    city: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// Venues in the token's cities (or in `city`), by id.
pub(super) async fn list_venues(
    op: ReadOperator,
    state: State<AppState>,
    ApiQuery(q): ApiQuery<VenueQuery>,
) -> Result<ApiJson<Page<Venue>>, ApiError> {
    let limit = page::limit(q.limit)?;
    let after = page::id_cursor(q.after.as_deref())?;
    if let Some(c) = &q.city {
        op.check_city(c)?;
    }
    let cities = op.city_filter();
    let rows = sqlx::query!(
        "SELECT id, city_code, name, time_zone FROM venues
          WHERE ($1::text[] IS NULL OR city_code = ANY($1))
            AND ($2::text IS NULL OR city_code = $2)
            AND ($3::uuid IS NULL OR id > $3)
          ORDER BY id LIMIT $4",
        cities.as_deref(),
        q.city,
        after,
        limit
    )
    .fetch_all(&state.db)
    .await?;
    let venues = rows
        .into_iter()
        .map(|r| venue(r.id, &r.city_code, r.name, r.time_zone))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiJson(Page::new(venues, limit, |v| v.id.to_string())))
}

fn venue(id: Uuid, city: &str, name: String, time_zone: String) -> Result<Venue, ApiError> {
    Ok(Venue {
        id,
        city: CityCode::parse(city).map_err(anyhow::Error::from)?,
        name,
        time_zone,
    })
}

/// The venue `id` (locked, in a transaction), `None` if there is none.
async fn fetch_venue(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Venue>, ApiError> {
    let row = if lock {
        sqlx::query!(
            "SELECT id, city_code, name, time_zone FROM venues WHERE id = $1 FOR UPDATE",
            id
        )
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| (r.id, r.city_code, r.name, r.time_zone))
    } else {
        sqlx::query!(
            "SELECT id, city_code, name, time_zone FROM venues WHERE id = $1",
            id
        )
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| (r.id, r.city_code, r.name, r.time_zone))
    };
    row.map(|(id, c, n, tz)| venue(id, &c, n, tz)).transpose()
}

fn unknown_venue(id: Uuid) -> ApiError {
    ApiError::not_found("unknown_venue", format!("no venue {id}"))
}

/// 404 for an unknown venue, 403 outside the token's cities; the venue.
async fn owned_venue(conn: &mut PgConnection, op: &Operator, raw: &str) -> Result<Uuid, ApiError> {
    let id = parse_id("invalid_venue_id", raw)?;
    match ownership::check(conn, op, Owned::Venue(id)).await? {
        Some(_) => Ok(id),
        None => Err(unknown_venue(id)),
    }
}

pub(super) async fn get_venue(
    op: ReadOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<Venue>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let id = owned_venue(&mut conn, &op, &raw).await?;
    let v = fetch_venue(&mut conn, id, false).await?;
    v.map(ApiJson).ok_or_else(|| unknown_venue(id))
}

/// `PATCH /v1/operator/venues/{id}`: the name any time; the time zone
/// only while no show of the venue is still to come (a show's local date
/// and time, as buyers were told them, are the venue's).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchVenue {
    name: Option<String>,
    time_zone: Option<String>,
}

#[tracing::instrument(skip_all)]
pub(super) async fn patch_venue(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<PatchVenue>,
) -> Result<ApiJson<Venue>, ApiError> {
    if req.name.is_none() && req.time_zone.is_none() {
        return Err(empty_patch());
    }
    if let Some(n) = &req.name {
        check_name("name", n, 200)?;
    }
    if let Some(tz) = &req.time_zone {
        check_time_zone(tz)?;
    }
    let mut tx = state.db.begin().await?;
    let id = owned_venue(&mut tx, &op, &raw).await?;
    let before = fetch_venue(&mut tx, id, true)
        .await?
        .ok_or_else(|| unknown_venue(id))?;
    let mut after = before.clone();
    if let Some(tz) = req.time_zone {
        if tz != before.time_zone {
            let future = sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM shows sh JOIN screens sc ON sc.id = sh.screen_id
                    WHERE sc.venue_id = $1 AND sh.ends_at > now()"#,
                id
            )
            .fetch_one(&mut *tx)
            .await?;
            if future > 0 {
                return Err(ApiError::conflict(
                    "venue_has_future_shows",
                    format!("the venue has {future} shows still to come or playing: its time zone cannot change"),
                ));
            }
        }
        after.time_zone = tz;
    }
    if let Some(n) = req.name {
        after.name = n;
    }
    let res = sqlx::query!(
        "UPDATE venues SET name = $2, time_zone = $3 WHERE id = $1",
        id,
        &after.name,
        &after.time_zone
    )
    .execute(&mut *tx)
    .await;
    match res {
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "venue_exists",
                format!("venue {:?} already exists in {}", after.name, after.city),
            ))
        }
        r => r?,
    };
    let entry = Entry {
        action: "venue.update",
        target_kind: "venue",
        target_id: id.to_string(),
        city: Some(after.city.as_str()),
        before: Some(audit_json(&before)?),
        after: Some(audit_json(&after)?),
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[after.city.to_string()]).await;
    Ok(ApiJson(after))
}

/// `DELETE /v1/operator/venues/{id}`: only a venue without screens.
#[tracing::instrument(skip_all)]
pub(super) async fn delete_venue(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let id = owned_venue(&mut tx, &op, &raw).await?;
    let before = fetch_venue(&mut tx, id, true)
        .await?
        .ok_or_else(|| unknown_venue(id))?;
    let screens = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM screens WHERE venue_id = $1"#,
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    if screens > 0 {
        return Err(ApiError::conflict(
            "venue_has_screens",
            format!("the venue has {screens} screens: delete them first"),
        ));
    }
    sqlx::query!("DELETE FROM venues WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    let entry = Entry {
        action: "venue.delete",
        target_kind: "venue",
        target_id: id.to_string(),
        city: Some(before.city.as_str()),
        before: Some(audit_json(&before)?),
        after: None,
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    after_write(&state, &[before.city.to_string()]).await;
    Ok(StatusCode::NO_CONTENT)
}
