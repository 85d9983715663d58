//! Operator diagnostics (issue 16, "no runbook step needs SQL"): what an
//! operator used to read from the shard's tables by hand.
//!
//! - `GET /v1/operator/shard`: one status document: the once-per-shard
//!   leases, the shard's Redis path and each replica's link, and the
//!   backlogs of the outbox, the sweeper, the mail queue and money in
//!   flight. It describes the whole shard, so it needs a token reaching
//!   every city of it;
//! - `GET /v1/operator/shows/overlaps`: shows kept overlapping another
//!   on their screen when the overlap constraint came;
//! - `GET /v1/operator/integrity[?show_id=]`: the seat consistency checks
//!   (a seat in two live holds, `show_seats` and `hold_seats` disagreeing,
//!   a hold owning some of its seats, `show_seats` and the confirmed
//!   bookings disagreeing), shard-wide or for one show; for one show, also
//!   whether Redis agrees with Postgres (`seat_check`).
//!
//! Reads only, with any operator token; lists hold the token's cities.

pub mod seat_check;
pub mod store;

use crate::auth::ReadOperator;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::ownership;
use crate::redis_path::{booked_value, RedisFailure};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use seat_check::{Expect, RedisMismatch, Seat};
use serde::{Deserialize, Serialize};
use shared::ShowId;
use store::{
    BookingMismatch, DoubleHold, HolderMismatch, Lease, MailBacklog, MoneyBacklog, OutboxBacklog,
    Overlap, PartialHold, ReplicaLink, Scope, SweeperBacklog,
};
use uuid::Uuid;

/// Diagnostics routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/shard", get(shard))
        .route("/v1/operator/shows/overlaps", get(overlaps))
        .route("/v1/operator/integrity", get(integrity))
}

/// A held seat whose hold ended longer ago than this counts as overdue:
/// the sweeper runs every second.
const OVERDUE_SECS: f64 = 10.0;

/// Rows reported per consistency check (more are counted as truncated).
const CHECK_ROWS: i64 = 100;

/// No query parameters (an unknown one is a 400).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// The replica that answered.
#[derive(Debug, Serialize)]
struct Answerer {
    /// Its name (`REGION_REPLICA_ID`, or its host name).
    replica: String,
    /// Whether its holds take the Redis fast path now.
    fast_path: bool,
}

/// The shard's hold path.
#[derive(Debug, Serialize)]
struct PathView {
    /// Grows by one at each switch.
    generation: i64,
    /// True (even generation): holds lock seats in Redis first. False
    /// (odd): Postgres alone.
    fast: bool,
    changed_at: DateTime<Utc>,
    changed_by: String,
    reason: String,
}

/// The status document.
#[derive(Debug, Serialize)]
struct ShardStatus {
    as_of: DateTime<Utc>,
    answered_by: Answerer,
    leases: Vec<Lease>,
    redis_path: Option<PathView>,
    replicas: Vec<ReplicaLink>,
    outbox: OutboxBacklog,
    sweeper: SweeperBacklog,
    mail: MailBacklog,
    money: MoneyBacklog,
}

#[tracing::instrument(skip_all, fields(operator = %op.id))]
async fn shard(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<ApiJson<ShardStatus>, ApiError> {
    let mut conn = state.db.acquire().await?;
    ownership::check_shard(&mut conn, &op).await?;
    let redis_path = store::redis_path(&mut conn).await?.map(|p| PathView {
        generation: p.generation,
        fast: crate::path_switch::is_fast(p.generation),
        changed_at: p.changed_at,
        changed_by: p.changed_by,
        reason: p.reason,
    });
    Ok(ApiJson(ShardStatus {
        as_of: Utc::now(),
        answered_by: Answerer {
            replica: state.settings.replica_id.clone(),
            fast_path: state.redis.fast_path_available(),
        },
        leases: store::leases(&mut conn).await?,
        redis_path,
        replicas: store::replica_links(&mut conn, crate::path_switch::LINK_FRESH_SECS).await?,
        outbox: store::outbox_backlog(&mut conn).await?,
        sweeper: store::sweeper_backlog(&mut conn, OVERDUE_SECS).await?,
        mail: store::mail_backlog(&mut conn).await?,
        money: store::money_backlog(&mut conn).await?,
    }))
}

/// Shows kept overlapping.
#[derive(Debug, Serialize)]
struct Overlaps {
    shows: Vec<Overlap>,
}

async fn overlaps(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<ApiJson<Overlaps>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let cities = op.city_filter();
    let shows = store::overlaps(&mut conn, cities.as_deref()).await?;
    Ok(ApiJson(Overlaps { shows }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrityQuery {
    show_id: Option<String>,
}

/// Whether Redis agrees with Postgres about one show's seats.
#[derive(Debug, Serialize)]
struct RedisAgreement {
    /// False when Redis was not compared (`reason` says why).
    checked: bool,
    reason: Option<String>,
    /// Seats compared.
    seats: usize,
    mismatches: Vec<RedisMismatch>,
}

/// The consistency checks' answer.
#[derive(Debug, Serialize)]
struct Integrity {
    /// True when every list is empty (and Redis, when compared, agrees).
    ok: bool,
    checked_at: DateTime<Utc>,
    /// The show checked; null: every show of `cities`.
    show_id: Option<Uuid>,
    /// The cities checked; null: every city (or the one show's).
    cities: Option<Vec<String>>,
    double_holds: Vec<DoubleHold>,
    holder_mismatches: Vec<HolderMismatch>,
    partial_holds: Vec<PartialHold>,
    booking_mismatches: Vec<BookingMismatch>,
    /// Whether a list was cut at 100 rows.
    truncated: bool,
    /// For one show: Redis against Postgres. Null shard-wide.
    redis: Option<RedisAgreement>,
}

/// Cuts `rows` to [`CHECK_ROWS`]; whether it had more.
fn cut<T>(rows: &mut Vec<T>) -> bool {
    let more = rows.len() as i64 > CHECK_ROWS;
    rows.truncate(CHECK_ROWS as usize);
    more
}

#[tracing::instrument(skip_all, fields(operator = %op.id))]
async fn integrity(
    State(state): State<AppState>,
    op: ReadOperator,
    ApiQuery(q): ApiQuery<IntegrityQuery>,
) -> Result<ApiJson<Integrity>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let show = match q.show_id.as_deref() {
        Some(raw) => Some(crate::reports::known_show(&mut conn, &op, raw).await?),
        None => None,
    };
    let cities = if show.is_some() {
        None
    } else {
        op.city_filter()
    };
    let scope = Scope {
        show,
        cities: cities.as_deref(),
        limit: CHECK_ROWS + 1,
    };
    let mut double_holds = store::double_holds(&mut conn, scope).await?;
    let mut holder_mismatches = store::holder_mismatches(&mut conn, scope).await?;
    let mut partial_holds = store::partial_holds(&mut conn, scope).await?;
    let mut booking_mismatches = store::booking_mismatches(&mut conn, scope).await?;
    let truncated = [
        cut(&mut double_holds),
        cut(&mut holder_mismatches),
        cut(&mut partial_holds),
        cut(&mut booking_mismatches),
    ]
    .contains(&true);
    let redis = match show {
        Some(show) => Some(redis_agreement(&state, &mut conn, show).await?),
        None => None,
    };
    let ok = double_holds.is_empty()
        && holder_mismatches.is_empty()
        && partial_holds.is_empty()
        && booking_mismatches.is_empty()
        && redis.as_ref().is_none_or(|r| r.mismatches.is_empty());
    if !ok {
        tracing::warn!(?show, "consistency check found problems");
    }
    Ok(ApiJson(Integrity {
        ok,
        checked_at: Utc::now(),
        show_id: show,
        cities,
        double_holds,
        holder_mismatches,
        partial_holds,
        booking_mismatches,
        truncated,
        redis,
    }))
}

/// The show's seats as Postgres has them, as key expectations.
async fn seats(conn: &mut sqlx::PgConnection, show: Uuid) -> Result<Vec<Seat>, sqlx::Error> {
    Ok(store::seats_of(conn, show)
        .await?
        .into_iter()
        .map(|r| Seat {
            expect: Expect::of(
                &r.status,
                r.hold_id,
                r.unexpired,
                r.booking_id,
                booked_value,
            ),
            label: r.label,
        })
        .collect())
}

/// Compares the show's seat keys with Postgres, read before and after.
async fn redis_agreement(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    show: Uuid,
) -> Result<RedisAgreement, ApiError> {
    let not_checked = |reason: &str| RedisAgreement {
        checked: false,
        reason: Some(reason.to_owned()),
        seats: 0,
        mismatches: Vec::new(),
    };
    if !state.redis.shard_on_fast_path() {
        return Ok(not_checked(
            "the shard's holds are on the Postgres-only path: Redis holds no locks now",
        ));
    }
    let before = seats(conn, show).await?;
    let labels: Vec<&str> = before.iter().map(|s| s.label.as_str()).collect();
    let values = match state.redis.seat_values(ShowId(show), &labels).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, %show, "seat keys not read for the consistency check");
            return Ok(not_checked(match e {
                RedisFailure::Timeout => "Redis did not answer in time",
                RedisFailure::NoQuorum(_) => "no majority of the lock servers answered",
                RedisFailure::BreakerOpen | RedisFailure::Redis(_) => "Redis could not be reached",
            }));
        }
    };
    let after = seats(conn, show).await?;
    Ok(RedisAgreement {
        checked: true,
        reason: None,
        seats: before.len(),
        mismatches: seat_check::compare(&before, &values, &after),
    })
}
