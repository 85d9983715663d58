//! A show's sale, configured once: `PUT /v1/operator/shows/{id}/sale` sets
//! its `sale_mode` and, for a flash sale, the waiting room's settings in
//! one transaction (audited in it); `GET /v1/shows/{id}/sale` reads them
//! back. The edge's waiting room is derived from this answer (the edge's
//! `PUT /v1/operator/sales/{show}` writes here first, then caches what it
//! got back): see `docs/adr/0023-one-source-for-a-flash-sale.md`.

pub mod store;

use crate::audit::store::{self as audit, Entry};
use crate::auth::SalesOperator;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::ownership::{self, Owned};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, put};
use axum::Router;
use chrono::Utc;
use shared::api::{SetSale, ShowSale, WaitingRoomSettings};
use shared::ShowId;
use store::Stored;

/// The sale routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/shows/{id}/sale", put(set_sale))
        .route("/v1/shows/{id}/sale", get(get_sale))
}

fn show_id(raw: &str) -> Result<ShowId, ApiError> {
    crate::catalog::parse_show_id(raw)
}

fn unknown_show(raw: &str) -> ApiError {
    ApiError::not_found("unknown_show", format!("no show {raw}"))
}

/// 422 unless `mode` and `room` go together (a flash sale needs its
/// waiting room; an open sale has none).
pub fn check(
    mode: shared::api::SaleMode,
    room: Option<&WaitingRoomSettings>,
) -> Result<(), ApiError> {
    WaitingRoomSettings::check_with(mode, room)
        .map_err(|m| ApiError::unprocessable("invalid_sale", m))
}

fn view(show: ShowId, city: String, s: Stored) -> ShowSale {
    ShowSale {
        show_id: show,
        city,
        sale_mode: s.sale_mode,
        waiting_room: s.waiting_room,
    }
}

/// `GET /v1/shows/{id}/sale`: public, as the waiting room's page shows
/// the same settings to everyone.
#[tracing::instrument(skip_all)]
async fn get_sale(
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<ApiJson<ShowSale>, ApiError> {
    let show = show_id(&raw)?;
    let mut conn = state.db.acquire().await?;
    let city = ownership::city_of(&mut conn, Owned::Show(show.0))
        .await?
        .ok_or_else(|| unknown_show(&raw))?;
    let stored = store::read(&mut conn, show.0, false)
        .await?
        .ok_or_else(|| unknown_show(&raw))?;
    Ok(ApiJson(view(show, city, stored)))
}

/// `PUT /v1/operator/shows/{id}/sale` (scope `sales`, the show's city).
#[tracing::instrument(skip_all, fields(operator = %op.id))]
async fn set_sale(
    op: SalesOperator,
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<SetSale>,
) -> Result<ApiJson<ShowSale>, ApiError> {
    let show = show_id(&raw)?;
    check(req.sale_mode, req.waiting_room.as_ref())?;
    let mut tx = state.db.begin().await?;
    let city = ownership::check(&mut tx, &op, Owned::Show(show.0))
        .await?
        .ok_or_else(|| unknown_show(&raw))?;
    let before = store::read(&mut tx, show.0, true)
        .await?
        .ok_or_else(|| unknown_show(&raw))?;
    store::write(
        &mut tx,
        show.0,
        req.sale_mode,
        req.waiting_room.as_ref(),
        Utc::now(),
    )
    .await?;
    let after = Stored {
        sale_mode: req.sale_mode,
        waiting_room: req.waiting_room.clone(),
    };
    let json = |s: &Stored| serde_json::json!({ "sale_mode": s.sale_mode, "waiting_room": s.waiting_room });
    let entry = Entry {
        action: "show.set_sale",
        target_kind: "show",
        target_id: show.to_string(),
        city: Some(&city),
        before: Some(json(&before)),
        after: Some(json(&after)),
    };
    audit::record(&mut tx, &op, entry).await?;
    // Every replica's cached sale mode is dropped when this commits.
    crate::shows::announce_change(&mut tx, show.0).await?;
    tx.commit().await?;
    state.shows.forget(Some(show));
    tracing::info!(show = %show, mode = req.sale_mode.as_db_str(), "sale set");
    Ok(ApiJson(view(show, city, after)))
}
