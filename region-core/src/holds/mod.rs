//! Seat holds: `POST /v1/shows/{id}/holds`, `GET`/`DELETE /v1/holds/{id}`,
//! `POST /v1/holds/{id}/extend`.
//!
//! A hold takes the Redis lock first (all seats or none), then is written
//! to Postgres by a group-commit writer, where the seat rows are checked
//! again under lock (the durable second line). When the Redis breaker is
//! open, holds go to Postgres alone with `FOR UPDATE NOWAIT`.

pub mod decide;
pub mod flash_sale;
pub mod rules;
pub mod store;
pub mod writer;

use crate::auth::User;
use crate::db::{codes, sqlstate};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::http_metrics::InFlight;
use crate::idempotency::{self, KeyState, RecoveryPoint, StoredResponse};
use crate::shows::ShowLayout;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use rules::{hold_view, not_active_error, parse_hold_id, show_started};
use shared::api::{CreateHold, Hold, HoldState, SaleMode};
use shared::breaker::State as BreakerState;
use shared::seat::{parse_seat_list, SeatError};
use shared::{HoldId, SeatState, ShowId};
use store::{HoldPath, NewHold, StoredHold};
use uuid::Uuid;
use writer::Outcome;

/// Hold routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/shows/{id}/holds", post(create_hold))
        .route("/v1/holds/{id}", get(get_hold).delete(release_hold))
        .route("/v1/holds/{id}/extend", post(extend_hold))
}

fn seat_error(e: SeatError) -> ApiError {
    let code = match e {
        SeatError::BadLabel(_) => "invalid_seat_label",
        SeatError::Empty => "no_seats",
        SeatError::TooMany { .. } => "too_many_seats",
        SeatError::Duplicate(_) => "duplicate_seat",
    };
    ApiError::unprocessable(code, e.to_string())
}

fn seats_unavailable(labels: Vec<String>) -> ApiError {
    ApiError::Conflict {
        code: "seats_unavailable",
        message: format!("seats not available: {}", labels.join(", ")),
        details: Some(serde_json::json!(labels)),
    }
}

/// Millisecond precision: what Postgres stores and the API returns agree.
fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// 409 `show_started` when the show of a hold has begun.
async fn refuse_if_started(
    state: &AppState,
    show_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let started = state
        .shows
        .get(&state.db, ShowId(show_id))
        .await?
        .is_some_and(|show| now >= show.starts_at);
    if started {
        Err(show_started())
    } else {
        Ok(())
    }
}

/// Header carrying the edge's admission pass.
pub const ADMISSION_PASS_HEADER: &str = "admission-pass";

/// A flash-sale show takes holds only from users the waiting room
/// admitted (invariant 8, docs/architecture.md): the pass must be genuine, unexpired,
/// the caller's, and for this show. Returns the pass id.
fn admitted(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    show: ShowId,
    now: DateTime<Utc>,
) -> Result<String, ApiError> {
    let pass = headers
        .get(ADMISSION_PASS_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Denied {
            code: "pass_required",
            message: "this show is in a flash sale: join the waiting room to get an admission pass"
                .into(),
        })?;
    let keys: Vec<&[u8]> = state
        .settings
        .admission_keys
        .iter()
        .map(|k| k.as_bytes())
        .collect();
    shared::admission::check(&keys, pass, &user.id, &show.to_string(), now.timestamp())
        .map(|claims| claims.pid)
        .map_err(|e| {
            metrics::counter!("admission_refused_total", "reason" => e.code()).increment(1);
            ApiError::Denied {
                code: e.code(),
                message: e.to_string(),
            }
        })
}

#[tracing::instrument(skip_all, fields(show = %show))]
async fn create_hold(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    ApiPath(show): ApiPath<String>,
    ApiJson(req): ApiJson<CreateHold>,
) -> Result<Response, ApiError> {
    // Counted until this future ends, however it ends (an error, a shed
    // hold, a client that went away mid-request).
    let _in_flight = InFlight::enter("holds_in_flight");
    let show = crate::catalog::parse_show_id(&show)?;
    // A retried request with the same Idempotency-Key gets the first hold
    // back instead of taking a second one (its answer may have been lost).
    let key = idempotency::key_from_headers(&headers, false)?;
    if let Some(key) = &key {
        let canonical = serde_json::to_vec(&req).map_err(anyhow::Error::from)?;
        let hash =
            idempotency::request_hash("POST", &format!("/v1/shows/{show}/holds"), &canonical);
        let now = Utc::now();
        let mut tx = state.db.begin().await?;
        match idempotency::store::begin(
            &mut tx,
            &user.id,
            key,
            &hash,
            state.settings.idempotency_lock(),
            now,
        )
        .await?
        {
            KeyState::Replay(r) => return Ok(idempotency::into_response(r, true)),
            // An earlier attempt stopped before answering: try again.
            KeyState::Resume(_) => {}
            KeyState::New => idempotency::store::insert(
                &mut tx,
                &user.id,
                key,
                &hash,
                RecoveryPoint::Started,
                now,
            )
            .await
            .map_err(idempotency::store::insert_error)?,
        }
        tx.commit().await?;
    }
    let result = take_hold(&state, &user, &headers, show, req).await;
    if let Some(key) = &key {
        let mut conn = state.db.acquire().await?;
        match &result {
            Ok(hold) => {
                let body = serde_json::to_vec(hold).map_err(anyhow::Error::from)?;
                idempotency::store::finish(
                    &mut conn,
                    &user.id,
                    key,
                    &StoredResponse { status: 201, body },
                )
                .await?;
            }
            // Not stored: a retry with the same key tries again (the seats
            // may be free by then, the outage over).
            Err(_) => idempotency::store::unlock(&mut conn, &user.id, key).await?,
        }
    }
    Ok((StatusCode::CREATED, ApiJson(result?)).into_response())
}

/// Validates and places one hold.
async fn take_hold(
    state: &AppState,
    user: &User,
    headers: &HeaderMap,
    show: ShowId,
    req: CreateHold,
) -> Result<Hold, ApiError> {
    let labels =
        parse_seat_list(&req.seats, state.settings.max_seats_per_hold).map_err(seat_error)?;
    let layout = state.shows.require(&state.db, show).await?;
    let now = Utc::now();
    if now >= layout.starts_at {
        return Err(show_started());
    }
    let admission_pass_id = match layout.sale_mode {
        SaleMode::FlashSale => Some(admitted(state, headers, user, show, now)?),
        SaleMode::Open => None,
    };
    // A flash-sale hold is placed under the buyer's (show, user) lock, after
    // the spent-pass and seat-limit checks (see `flash_sale`).
    let guard = match &admission_pass_id {
        Some(pid) => {
            Some(flash_sale::Guard::acquire(&state.db, show.0, &user.id, pid, labels.len()).await?)
        }
        None => None,
    };
    let unknown: Vec<String> = labels
        .iter()
        .filter(|l| layout.seat(l.as_str()).is_none())
        .map(|l| l.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(
            "unknown_seat",
            format!("no such seats in this show: {}", unknown.join(", ")),
        ));
    }
    let mut seats: Vec<_> = labels
        .iter()
        .filter_map(|l| layout.seat(l.as_str()))
        .collect();
    seats.sort_by_key(|s| s.ordinal);
    let hold = NewHold {
        hold_id: Uuid::now_v7(),
        show_id: show.0,
        user_id: user.id.clone(),
        seat_ids: seats.iter().map(|s| s.seat_id).collect(),
        ordinals: seats.iter().map(|s| s.ordinal).collect(),
        expires_at: truncate_ms(now + state.settings.hold_ttl()),
        admission_pass_id,
        // Set by each attempt to place it.
        path: HoldPath::Postgres { generation: 0 },
    };
    let sorted_labels: Vec<String> = seats.iter().map(|s| s.label.clone()).collect();
    let started = std::time::Instant::now();
    let placed = place_hold(state, &layout, &hold, &sorted_labels).await;
    if let Some(guard) = guard {
        guard.release().await;
    }
    let outcome = match &placed {
        Ok(_) => "held",
        Err(e) => e.code(),
    };
    metrics::histogram!("hold_place_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    let path = placed?;
    metrics::counter!("holds_created_total", "path" => path).increment(1);
    Ok(Hold {
        hold_id: HoldId(hold.hold_id),
        show_id: show,
        seats: sorted_labels,
        state: HoldState::Active,
        expires_at: hold.expires_at,
        extended: false,
    })
}

/// Why one attempt to place a hold did not.
enum Placement {
    /// The answer for the caller.
    Refused(ApiError),
    /// The shard switched paths under the hold: try again.
    PathChanged,
}

impl From<ApiError> for Placement {
    fn from(e: ApiError) -> Self {
        Self::Refused(e)
    }
}

/// Attempts at placing a hold while the shard switches paths under it
/// (each switch is one transaction, so a second attempt almost always
/// lands).
const PLACE_ATTEMPTS: usize = 3;

/// Takes the seats: Redis then group commit, or Postgres alone when the
/// shard is on the Postgres-only path. Returns which path served the hold.
async fn place_hold(
    state: &AppState,
    layout: &ShowLayout,
    hold: &NewHold,
    labels: &[String],
) -> Result<&'static str, ApiError> {
    for _ in 0..PLACE_ATTEMPTS {
        match place_once(state, layout, hold.clone(), labels).await {
            Ok(path) => return Ok(path),
            Err(Placement::Refused(e)) => return Err(e),
            Err(Placement::PathChanged) => {}
        }
    }
    Err(ApiError::unavailable(
        "hold_path_switching",
        "the shard is switching between its Redis and Postgres hold paths; retry shortly",
    ))
}

/// One attempt of [`place_hold`], on the path the shard is on now.
async fn place_once(
    state: &AppState,
    layout: &ShowLayout,
    mut hold: NewHold,
    labels: &[String],
) -> Result<&'static str, Placement> {
    let protect = !state.settings.unsafe_disable_seat_protection;
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let ttl = state.settings.hold_ttl();
    let redis = &state.redis;
    if !protect {
        hold.path = HoldPath::Postgres {
            generation: redis.generation(),
        };
        return group_commit(state, layout, &hold, None)
            .await
            .map(|_| "unprotected");
    }
    if redis.fast_path_available() {
        let generation = redis.generation();
        hold.path = HoldPath::Redis { generation };
        match redis
            .acquire(layout.id, &label_refs, hold.hold_id, ttl)
            .await
        {
            Ok(taken) if taken.is_empty() => {
                return group_commit(state, layout, &hold, Some(&label_refs))
                    .await
                    .map(|_| "redis");
            }
            Ok(taken) => {
                metrics::counter!("hold_conflicts_total", "stage" => "redis").increment(1);
                let taken = taken
                    .into_iter()
                    .filter_map(|i| labels.get(i).cloned())
                    .collect();
                return Err(seats_unavailable(taken).into());
            }
            // One failed call: the breaker may still be closed. With the
            // shard on the fast path the hold stays a Redis-path hold
            // (Postgres decides it; its keys are asserted after).
            Err(e) if redis.coordinated() && redis.fast_path_available() => {
                tracing::warn!(error = %e, "redis lock failed; Postgres decides this hold");
                group_commit(state, layout, &hold, Some(&label_refs)).await?;
                let _ = redis
                    .assert_hold(layout.id, &label_refs, hold.hold_id, ttl)
                    .await;
                return Ok("redis");
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis lock failed; using the Postgres-only path");
                let _ = redis.release(layout.id, &label_refs, hold.hold_id).await;
            }
        }
    }
    // This replica lost Redis while the shard is on the fast path: switch
    // the whole shard first, so no replica takes holds through Redis
    // while this one writes without it.
    if redis.coordinated() && redis.shard_on_fast_path() {
        if redis.breaker_state() == BreakerState::Recovering {
            // Waiting for a switch back that has happened: the fast path.
            redis.finish_recovery();
            return Err(Placement::PathChanged);
        }
        let reason = format!("{} cannot reach redis", state.settings.replica_id);
        let generation =
            crate::path_switch::mark_down(&state.db, &state.settings.replica_id, &reason)
                .await
                .map_err(ApiError::from)?;
        redis.observe_generation(generation);
    }
    hold.path = HoldPath::Postgres {
        generation: redis.generation(),
    };
    postgres_only(state, layout, &hold).await?;
    // Keep Redis in step where it answers: a hold written through
    // Postgres alone is asserted in Redis (so the fast path refuses its
    // seats up front; the switch back re-asserts every live hold anyway).
    if let Err(e) = redis
        .assert_hold(layout.id, &label_refs, hold.hold_id, ttl)
        .await
    {
        tracing::debug!(error = %e, "postgres-only hold not asserted in redis; recovery will");
    }
    Ok("postgres_only")
}

/// The durable second line, shared with other holds in one transaction.
/// On any failure the Redis keys taken for this hold are released.
async fn group_commit(
    state: &AppState,
    layout: &ShowLayout,
    hold: &NewHold,
    redis_keys: Option<&[&str]>,
) -> Result<(), Placement> {
    let result = state.writers.submit(hold.clone()).await;
    let err = match result {
        Ok(Ok(Outcome::Held)) => return Ok(()),
        Ok(Ok(Outcome::Unavailable(seat_ids))) => {
            metrics::counter!("hold_conflicts_total", "stage" => "postgres").increment(1);
            Placement::Refused(seats_unavailable(labels_of(layout, &seat_ids)))
        }
        Ok(Ok(Outcome::PathChanged)) => Placement::PathChanged,
        Ok(Ok(Outcome::ShowCancelled)) => Placement::Refused(rules::show_cancelled()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "hold not written");
            Placement::Refused(ApiError::unavailable(
                "hold_write_failed",
                "the hold could not be recorded; retry shortly",
            ))
        }
        Err(writer::Overloaded) => {
            metrics::counter!("holds_shed_total").increment(1);
            Placement::Refused(ApiError::unavailable(
                "overloaded",
                "too many holds in flight; retry shortly",
            ))
        }
    };
    if let Some(keys) = redis_keys {
        if let Err(e) = state.redis.release(layout.id, keys, hold.hold_id).await {
            tracing::warn!(error = %e, "could not release redis keys of a failed hold; they expire by TTL");
        }
    }
    Err(err)
}

/// Seat-of-last-resort path while Redis is unavailable: one transaction,
/// `FOR UPDATE NOWAIT` so a loser fails fast instead of queueing.
async fn postgres_only(
    state: &AppState,
    layout: &ShowLayout,
    hold: &NewHold,
) -> Result<(), Placement> {
    match writer::write_batch(&state.db, &state.redis, &[hold], true, true).await {
        Ok(outcomes) => match outcomes.into_iter().next() {
            Some(Outcome::Held) => Ok(()),
            Some(Outcome::Unavailable(seat_ids)) => {
                Err(seats_unavailable(labels_of(layout, &seat_ids)).into())
            }
            Some(Outcome::PathChanged) => Err(Placement::PathChanged),
            Some(Outcome::ShowCancelled) => Err(rules::show_cancelled().into()),
            None => Err(ApiError::from(anyhow::anyhow!("empty outcome for a batch of one")).into()),
        },
        Err(store::ApplyError::Db(e))
            if sqlstate(&e).as_deref() == Some(codes::LOCK_NOT_AVAILABLE) =>
        {
            metrics::counter!("hold_conflicts_total", "stage" => "postgres_nowait").increment(1);
            Err(ApiError::Conflict {
                code: "seats_unavailable",
                message: "some of these seats are being held by another request".into(),
                details: None,
            }
            .into())
        }
        Err(store::ApplyError::Db(e)) => Err(ApiError::from(e).into()),
        Err(e @ store::ApplyError::VersionMismatch { .. }) => {
            tracing::warn!(error = %e, "postgres-only hold lost a race");
            Err(ApiError::unavailable(
                "hold_write_failed",
                "the hold could not be recorded; retry shortly",
            )
            .into())
        }
    }
}

fn labels_of(layout: &ShowLayout, seat_ids: &[Uuid]) -> Vec<String> {
    layout
        .seats
        .iter()
        .filter(|s| seat_ids.contains(&s.seat_id))
        .map(|s| s.label.clone())
        .collect()
}

/// Loads a hold the caller owns; someone else's hold is "not found".
async fn owned_hold(state: &AppState, user: &User, id: HoldId) -> Result<StoredHold, ApiError> {
    let mut conn = state.db.acquire().await?;
    match store::fetch(&mut conn, id.0).await? {
        Some(h) if h.user_id == user.id => Ok(h),
        _ => Err(ApiError::not_found("unknown_hold", format!("no hold {id}"))),
    }
}

async fn get_hold(
    State(state): State<AppState>,
    user: User,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Hold>, ApiError> {
    let id = parse_hold_id(&id)?;
    let h = owned_hold(&state, &user, id).await?;
    Ok(ApiJson(hold_view(&h, Utc::now())))
}

#[tracing::instrument(skip_all, fields(hold = %id))]
async fn release_hold(
    State(state): State<AppState>,
    user: User,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Hold>, ApiError> {
    let id = parse_hold_id(&id)?;
    let mut h = owned_hold(&state, &user, id).await?;
    let now = Utc::now();
    if h.state == HoldState::Released.as_db_str() {
        return Ok(ApiJson(hold_view(&h, now))); // releasing twice is harmless
    }
    let mut tx = state.db.begin().await?;
    let Some(freed) = store::release(&mut tx, h.show_id, h.id, now).await? else {
        return Err(not_active_error(&h, now));
    };
    tx.commit().await?;
    let show = ShowId(h.show_id);
    let labels: Vec<&str> = h.seats.iter().map(|s| s.0.as_str()).collect();
    if let Err(e) = state.redis.release(show, &labels, h.id).await {
        tracing::warn!(error = %e, "released in Postgres; redis keys will expire by TTL");
    }
    state
        .redis
        .seatmap_update(&[(
            show,
            freed
                .into_iter()
                .map(|o| (o, SeatState::Available))
                .collect(),
        )])
        .await;
    metrics::counter!("holds_released_total").increment(1);
    h.state = HoldState::Released.as_db_str().into();
    Ok(ApiJson(hold_view(&h, now)))
}

#[tracing::instrument(skip_all, fields(hold = %id))]
async fn extend_hold(
    State(state): State<AppState>,
    user: User,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Hold>, ApiError> {
    let id = parse_hold_id(&id)?;
    let mut h = owned_hold(&state, &user, id).await?;
    let now = Utc::now();
    refuse_if_started(&state, h.show_id, now).await?;
    let new_expiry = truncate_ms(
        h.expires_at + chrono::Duration::seconds(state.settings.hold_extension_secs as i64),
    );
    let mut tx = state.db.begin().await?;
    if !store::extend(&mut tx, h.show_id, h.id, now, new_expiry).await? {
        return Err(not_active_error(&h, now));
    }
    tx.commit().await?;
    let labels: Vec<&str> = h.seats.iter().map(|s| s.0.as_str()).collect();
    let ttl = (new_expiry - Utc::now()).to_std().unwrap_or_default();
    match state
        .redis
        .extend(ShowId(h.show_id), &labels, h.id, ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "redis keys of an extended hold belong to another hold; Postgres decides"
        ),
        Err(e) => tracing::warn!(error = %e, "extended in Postgres only"),
    }
    h.expires_at = new_expiry;
    h.extended = true;
    Ok(ApiJson(hold_view(&h, now)))
}
