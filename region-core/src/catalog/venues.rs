//! Venues: a name, a city and the time zone its shows are sold in.

use super::{check_name, exists};
use crate::audit::store::{self as audit, Entry};
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::http::StatusCode;
use chrono_tz::Tz;
use shared::api::{CreateVenue, Venue};
use uuid::Uuid;

#[tracing::instrument(skip_all)]
pub(super) async fn create_venue(
    op: CatalogOperator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateVenue>,
) -> Result<(StatusCode, ApiJson<Venue>), ApiError> {
    check_name("name", &req.name, 200)?;
    op.check_city(req.city.as_str())?;
    if req.time_zone.parse::<Tz>().is_err() {
        return Err(ApiError::unprocessable(
            "invalid_time_zone",
            format!(
                "{:?} is not an IANA time zone (e.g. Asia/Kolkata)",
                req.time_zone
            ),
        ));
    }
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
            Ok((StatusCode::CREATED, ApiJson(venue)))
        }
    }
}
