//! `PUT /v1/operator/shows/{id}/prices`: a show's prices, for new holds.
//!
//! A hold records each seat's price when it is taken (`hold_seats.price_minor`,
//! written by the hold's own transaction from the show's prices as they
//! are then); checkout charges and the booking records that price. So a
//! change here reaches holds taken after it commits, and never what a
//! holder was shown or what a buyer paid. The price list is read in the
//! hold's transaction, not from a replica's cache: every replica sees the
//! change for its next hold.

use super::after_write;
use super::show_admin::{lock_show, operator_show, owned_show, OperatorShow};
use super::shows::{check_prices, check_prices_cover};
use crate::audit::store::{self as audit, Entry};
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use sqlx::types::Json;
use std::collections::BTreeMap;

/// The body: every category of the show's screen, each a price in minor
/// units of the show's currency.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutPrices {
    prices: BTreeMap<String, i64>,
}

#[tracing::instrument(skip_all)]
pub(super) async fn put_prices(
    op: CatalogOperator,
    state: State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<PutPrices>,
) -> Result<ApiJson<OperatorShow>, ApiError> {
    check_prices(&req.prices)?;
    let mut tx = state.db.begin().await?;
    let (id, city) = owned_show(&mut tx, &op, &raw).await?;
    lock_show(&mut tx, id).await?;
    let before = operator_show(&mut tx, id).await?;
    if before.show.starts_at <= Utc::now() {
        return Err(crate::holds::rules::show_started());
    }
    let categories = sqlx::query_scalar!(
        "SELECT DISTINCT s.category FROM shows sh JOIN seats s ON s.screen_id = sh.screen_id
          WHERE sh.id = $1",
        id
    )
    .fetch_all(&mut *tx)
    .await?;
    let categories: Vec<&str> = categories.iter().map(String::as_str).collect();
    check_prices_cover(&categories, &req.prices)?;
    sqlx::query!(
        "UPDATE shows SET prices = $2 WHERE id = $1",
        id,
        Json(&req.prices) as _
    )
    .execute(&mut *tx)
    .await?;
    let entry = Entry {
        action: "show.update_prices",
        target_kind: "show",
        target_id: id.to_string(),
        city: Some(&city),
        before: Some(serde_json::json!({ "prices": before.show.prices })),
        after: Some(serde_json::json!({ "prices": req.prices })),
    };
    audit::record(&mut tx, &op, entry).await?;
    let after = operator_show(&mut tx, id).await?;
    tx.commit().await?;
    after_write(&state, &[city]).await;
    Ok(ApiJson(after))
}
