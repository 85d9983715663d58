//! Live seat maps (issue 11, Q4: real-time seat availability).
//!
//! Every seat change is numbered and published atomically with its
//! seat-map update in Redis (`SEATMAP_UPDATE_LUA`), on one channel per
//! show, so every replica hears every change. Each process runs one feed
//! per watched show (`feed`, `task`) that turns those messages into the
//! protocol of `shared::live` and fans them out to its sockets (`socket`)
//! and pollers (`history`):
//!
//! - `GET /v1/shows/{id}/live`: a WebSocket; the snapshot, then deltas.
//! - `GET /v1/shows/{id}/seats?since=N` (routed in `seat_map`): one frame,
//!   `ETag` = the number, 304 when nothing changed.

pub mod feed;
pub mod history;
pub mod hub;
pub mod message;
pub mod snapshot;
pub mod socket;
pub mod task;

use crate::error::{ApiError, ApiPath};
use crate::shows::ShowLayout;
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use feed::{Feed, Poll};
use hub::Use;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for a new feed's first snapshot.
const FIRST_SNAPSHOT: Duration = Duration::from_secs(3);

/// Live routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/shows/{id}/live", get(live))
}

/// The show's feed, started if this process had none.
fn feed(state: &AppState, layout: &ShowLayout, how: Use) -> Arc<Feed> {
    let (feed, created) = state.live.feed(
        layout.id,
        layout.seat_count(),
        state.settings.live_buffer_frames,
        how,
    );
    if created {
        task::spawn(feed.clone(), state.live.clone(), state.clone());
    }
    feed
}

async fn live(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let show = crate::catalog::parse_show_id(&id)?;
    let layout = state.shows.require(&state.db, show).await?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::bad_request(
            "websocket_required",
            "this endpoint speaks WebSocket only (GET with Upgrade: websocket); pollers use GET /v1/shows/{id}/seats?since=N",
        )
    })?;
    let slot = state
        .live
        .open_socket(state.settings.live_max_sockets)
        .ok_or_else(|| {
            tracing::warn!(
                max = state.settings.live_max_sockets,
                "live socket refused: this process is at its cap"
            );
            ApiError::unavailable(
                "too_many_viewers",
                "this server has as many live viewers as it takes; retry shortly or poll GET /v1/shows/{id}/seats?since=N",
            )
        })?;
    let feed = feed(&state, &layout, Use::Socket);
    let hub = state.live.clone();
    let ping = Duration::from_secs(state.settings.live_ping_secs.max(1));
    // Small buffers: a viewer sends nothing but pongs, and each socket's
    // memory is what a popular show multiplies.
    Ok(upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(4 * 1024)
        .on_upgrade(move |socket| socket::serve(socket, feed, hub, slot, ping))
        .into_response())
}

/// `GET /v1/shows/{id}/seats?since=N`: what a poller at `N` needs.
pub async fn poll(
    state: &AppState,
    layout: &ShowLayout,
    since: u64,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    metrics::counter!("live_polls_total").increment(1);
    let feed = feed(state, layout, Use::Poll);
    if !feed.ready(FIRST_SNAPSHOT).await {
        return Err(ApiError::unavailable(
            "live_not_ready",
            "the seat map is being loaded; retry shortly",
        ));
    }
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=1"),
    );
    Ok(match feed.poll(since, if_none_match) {
        Poll::NotModified(etag) => (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value(&etag)), cache],
        )
            .into_response(),
        Poll::Frame(text, etag) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::ETAG, etag_value(&etag)),
                cache,
            ],
            text.to_string(),
        )
            .into_response(),
    })
}

fn etag_value(etag: &str) -> HeaderValue {
    HeaderValue::from_str(etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}
