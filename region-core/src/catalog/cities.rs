//! Cities: created by operators, listed for buyers.

use super::check_name;
use crate::audit::store::{self as audit, Entry};
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::http::StatusCode;
use shared::api::{City, CreateCity};
use shared::CityCode;

#[tracing::instrument(skip_all)]
pub(super) async fn create_city(
    op: CatalogOperator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateCity>,
) -> Result<(StatusCode, ApiJson<City>), ApiError> {
    check_name("name", &req.name, 200)?;
    op.check_city(req.code.as_str())?;
    let mut tx = state.db.begin().await?;
    let res = sqlx::query!(
        "INSERT INTO cities (code, name) VALUES ($1, $2)",
        req.code.as_str(),
        &req.name
    )
    .execute(&mut *tx)
    .await;
    match res {
        Err(e) if crate::db::is_unique_violation(&e) => Err(ApiError::conflict(
            "city_exists",
            format!("city {} already exists", req.code),
        )),
        Err(e) => Err(e.into()),
        Ok(_) => {
            let city = City {
                code: req.code,
                name: req.name,
            };
            let entry = Entry {
                action: "city.create",
                target_kind: "city",
                target_id: city.code.to_string(),
                city: Some(city.code.as_str()),
                before: None,
                after: Some(serde_json::to_value(&city).map_err(anyhow::Error::from)?),
            };
            audit::record(&mut tx, &op, entry).await?;
            tx.commit().await?;
            super::after_write(&state, &[city.code.to_string()]).await;
            Ok((StatusCode::CREATED, ApiJson(city)))
        }
    }
}

pub(super) async fn list_cities(
    state: axum::extract::State<AppState>,
) -> Result<ApiJson<Vec<City>>, ApiError> {
    let rows = sqlx::query!("SELECT code, name FROM cities ORDER BY code")
        .fetch_all(&state.db)
        .await?;
    let cities = rows
        .into_iter()
        .filter_map(|r| {
            Some(City {
                code: CityCode::parse(&r.code).ok()?,
                name: r.name,
            })
        })
        .collect();
    Ok(ApiJson(cities))
}

pub(super) async fn city_exists(state: &AppState, city: &CityCode) -> Result<(), ApiError> {
    let found = sqlx::query_scalar!("SELECT code FROM cities WHERE code = $1", city.as_str())
        .fetch_optional(&state.db)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("unknown_city", format!("no city {city} on this shard")))
}
