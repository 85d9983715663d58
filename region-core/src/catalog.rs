//! The catalog of a city shard: operator endpoints that create cities,
//! venues, screens (with seat layouts), movies and shows, and the public
//! reads buyers browse with. Owns the SQL of those tables.

use crate::auth::Operator;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use shared::api::{
    City, CreateCity, CreateMovie, CreateScreen, CreateShow, CreateVenue, Movie, SaleMode, Screen,
    Show, ShowList, Venue,
};
use shared::refund::RefundPolicy;
use shared::{CityCode, SeatLabel, ShowId};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uuid::Uuid;

/// Most seats one screen may have.
pub const MAX_SEATS_PER_SCREEN: usize = 100_000;

/// Catalog routes (operator writes and public reads).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/cities", post(create_city))
        .route("/v1/operator/venues", post(create_venue))
        .route("/v1/operator/screens", post(create_screen))
        .route("/v1/operator/movies", post(create_movie))
        .route("/v1/operator/shows", post(create_show))
        .route("/v1/cities", get(list_cities))
        .route("/v1/cities/{code}/shows", get(list_shows))
        .route("/v1/shows/{id}", get(get_show))
}

/// A text field: 1 to `max` characters, no control characters (NUL used
/// to reach Postgres and come back as a 500). The rule is the edge's too
/// (`shared::text`); the 422 names the field.
fn check_name(field: &'static str, v: &str, max: usize) -> Result<(), ApiError> {
    shared::text::check_line(field, v, max)
        .map_err(|e| ApiError::unprocessable("invalid_field", e.to_string()))
}

/// Highest price of one seat, in minor units (10 million units of any
/// currency): keeps every sum of a booking far inside `i64`.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000;

/// How far ahead a show may be scheduled.
const MAX_SCHEDULE_AHEAD_DAYS: i64 = 3 * 366;

/// 409 for a name already taken, carrying the existing row's id in
/// `details.id` so an idempotent seeding client can use it.
fn exists(code: &'static str, message: String, existing: Option<(Uuid,)>) -> ApiError {
    ApiError::Conflict {
        code,
        message,
        details: existing.map(|(id,)| serde_json::json!({ "id": id })),
    }
}

/// The name of the constraint a database error violated, if any.
fn constraint_of(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[tracing::instrument(skip_all)]
async fn create_city(
    _op: Operator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateCity>,
) -> Result<(StatusCode, ApiJson<City>), ApiError> {
    check_name("name", &req.name, 200)?;
    let res = sqlx::query("INSERT INTO cities (code, name) VALUES ($1, $2)")
        .bind(req.code.as_str())
        .bind(&req.name)
        .execute(&state.db)
        .await;
    match res {
        Err(e) if unique_violation(&e) => Err(ApiError::conflict(
            "city_exists",
            format!("city {} already exists", req.code),
        )),
        Err(e) => Err(e.into()),
        Ok(_) => Ok((
            StatusCode::CREATED,
            ApiJson(City {
                code: req.code,
                name: req.name,
            }),
        )),
    }
}

#[tracing::instrument(skip_all)]
async fn create_venue(
    _op: Operator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateVenue>,
) -> Result<(StatusCode, ApiJson<Venue>), ApiError> {
    check_name("name", &req.name, 200)?;
    if req.time_zone.parse::<Tz>().is_err() {
        return Err(ApiError::unprocessable(
            "invalid_time_zone",
            format!(
                "{:?} is not an IANA time zone (e.g. Asia/Kolkata)",
                req.time_zone
            ),
        ));
    }
    city_exists(&state, &req.city).await?;
    let id = Uuid::now_v7();
    let res =
        sqlx::query("INSERT INTO venues (id, city_code, name, time_zone) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(req.city.as_str())
            .bind(&req.name)
            .bind(&req.time_zone)
            .execute(&state.db)
            .await;
    match res {
        Err(e) if unique_violation(&e) => {
            let existing: Option<(Uuid,)> =
                sqlx::query_as("SELECT id FROM venues WHERE city_code = $1 AND name = $2")
                    .bind(req.city.as_str())
                    .bind(&req.name)
                    .fetch_optional(&state.db)
                    .await?;
            Err(exists(
                "venue_exists",
                format!("venue {:?} already exists in {}", req.name, req.city),
                existing,
            ))
        }
        Err(e) => Err(e.into()),
        Ok(_) => Ok((
            StatusCode::CREATED,
            ApiJson(Venue {
                id,
                city: req.city,
                name: req.name,
                time_zone: req.time_zone,
            }),
        )),
    }
}

async fn city_exists(state: &AppState, city: &CityCode) -> Result<(), ApiError> {
    let found: Option<(String,)> = sqlx::query_as("SELECT code FROM cities WHERE code = $1")
        .bind(city.as_str())
        .fetch_optional(&state.db)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("unknown_city", format!("no city {city} on this shard")))
}

/// A validated seat row: (row label, number, category) per seat.
fn expand_layout(req: &CreateScreen) -> Result<Vec<(String, i32, String)>, ApiError> {
    if req.rows.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_layout",
            "a screen needs at least one row",
        ));
    }
    let mut rows_seen = HashSet::new();
    let mut seats = Vec::new();
    for r in &req.rows {
        if r.seats == 0 {
            return Err(ApiError::unprocessable(
                "invalid_layout",
                format!("row {} must have at least one seat", r.row),
            ));
        }
        SeatLabel::from_parts(&r.row, r.seats).map_err(|_| {
            ApiError::unprocessable(
                "invalid_layout",
                format!(
                    "row label {:?} must be 1-3 letters A-Z and seats 1-9999",
                    r.row
                ),
            )
        })?;
        if !rows_seen.insert(r.row.clone()) {
            return Err(ApiError::unprocessable(
                "invalid_layout",
                format!("row {} appears twice", r.row),
            ));
        }
        check_name("category", &r.category, 40)?;
        for n in 1..=r.seats {
            seats.push((r.row.clone(), i32::from(n), r.category.clone()));
        }
        if seats.len() > MAX_SEATS_PER_SCREEN {
            return Err(ApiError::unprocessable(
                "invalid_layout",
                format!("a screen may have at most {MAX_SEATS_PER_SCREEN} seats"),
            ));
        }
    }
    Ok(seats)
}

#[tracing::instrument(skip_all)]
async fn create_screen(
    _op: Operator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateScreen>,
) -> Result<(StatusCode, ApiJson<Screen>), ApiError> {
    check_name("name", &req.name, 200)?;
    let seats = expand_layout(&req)?;
    let venue: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM venues WHERE id = $1")
        .bind(req.venue_id)
        .fetch_optional(&state.db)
        .await?;
    if venue.is_none() {
        return Err(ApiError::not_found(
            "unknown_venue",
            format!("no venue {}", req.venue_id),
        ));
    }
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    let res = sqlx::query("INSERT INTO screens (id, venue_id, name) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(req.venue_id)
        .bind(&req.name)
        .execute(&mut *tx)
        .await;
    if let Err(e) = res {
        if !unique_violation(&e) {
            return Err(e.into());
        }
        drop(tx);
        let existing: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM screens WHERE venue_id = $1 AND name = $2")
                .bind(req.venue_id)
                .bind(&req.name)
                .fetch_optional(&state.db)
                .await?;
        return Err(exists(
            "screen_exists",
            format!("screen {:?} already exists in this venue", req.name),
            existing,
        ));
    }
    let ids: Vec<Uuid> = seats.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<&str> = seats.iter().map(|s| s.0.as_str()).collect();
    let numbers: Vec<i32> = seats.iter().map(|s| s.1).collect();
    let cats: Vec<&str> = seats.iter().map(|s| s.2.as_str()).collect();
    let ordinals: Vec<i32> = (0..seats.len() as i32).collect();
    sqlx::query(
        "INSERT INTO seats (id, screen_id, row_label, number, category, ordinal)
         SELECT u.id, $2, u.row_label, u.number, u.category, u.ordinal
           FROM unnest($1::uuid[], $3::text[], $4::int[], $5::text[], $6::int[])
                AS u(id, row_label, number, category, ordinal)",
    )
    .bind(&ids)
    .bind(id)
    .bind(&rows)
    .bind(&numbers)
    .bind(&cats)
    .bind(&ordinals)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let categories: BTreeSet<String> = seats.into_iter().map(|s| s.2).collect();
    Ok((
        StatusCode::CREATED,
        ApiJson(Screen {
            id,
            venue_id: req.venue_id,
            name: req.name,
            seat_count: ids.len() as u32,
            categories: categories.into_iter().collect(),
        }),
    ))
}

#[tracing::instrument(skip_all)]
async fn create_movie(
    _op: Operator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateMovie>,
) -> Result<(StatusCode, ApiJson<Movie>), ApiError> {
    check_name("title", &req.title, 300)?;
    if req.duration_minutes == 0 || req.duration_minutes > 1440 {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "duration_minutes must be 1-1440",
        ));
    }
    if let Some(l) = &req.language {
        check_name("language", l, 40)?;
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO movies (id, title, duration_minutes, language) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(&req.title)
    .bind(i32::from(req.duration_minutes))
    .bind(&req.language)
    .execute(&state.db)
    .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(Movie {
            id,
            title: req.title,
            duration_minutes: req.duration_minutes,
            language: req.language,
        }),
    ))
}

#[tracing::instrument(skip_all)]
async fn create_show(
    _op: Operator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateShow>,
) -> Result<(StatusCode, ApiJson<Show>), ApiError> {
    if req.starts_at <= Utc::now() {
        return Err(ApiError::unprocessable(
            "show_in_past",
            "starts_at must be in the future",
        ));
    }
    if !(req.currency.len() == 3 && req.currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err(ApiError::unprocessable(
            "invalid_currency",
            "currency must be an ISO 4217 code like INR",
        ));
    }
    if req
        .max_seats_per_user
        .is_some_and(|n| !(1..=100).contains(&n))
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "max_seats_per_user must be 1-100",
        ));
    }
    if req.starts_at > Utc::now() + chrono::Duration::days(MAX_SCHEDULE_AHEAD_DAYS) {
        return Err(ApiError::unprocessable(
            "show_too_far_ahead",
            format!("starts_at must be within {MAX_SCHEDULE_AHEAD_DAYS} days from now"),
        ));
    }
    if let Some((cat, p)) = req
        .prices
        .iter()
        .find(|(_, p)| !(0..=MAX_PRICE_MINOR).contains(*p))
    {
        return Err(ApiError::unprocessable(
            "invalid_price",
            format!("price of {cat} must be 0 to {MAX_PRICE_MINOR} minor units, got {p}"),
        ));
    }
    for cat in req.prices.keys() {
        check_name("prices (category)", cat, 40)?;
    }
    let refund_policy = req.refund_policy.clone().unwrap_or_default();
    refund_policy
        .validate()
        .map_err(|e| ApiError::unprocessable("invalid_refund_policy", e.to_string()))?;
    let movie: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM movies WHERE id = $1")
        .bind(req.movie_id)
        .fetch_optional(&state.db)
        .await?;
    if movie.is_none() {
        return Err(ApiError::not_found(
            "unknown_movie",
            format!("no movie {}", req.movie_id),
        ));
    }
    let cats: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT category FROM seats WHERE screen_id = $1")
            .bind(req.screen_id)
            .fetch_all(&state.db)
            .await?;
    if cats.is_empty() {
        return Err(ApiError::not_found(
            "unknown_screen",
            format!("no screen {}", req.screen_id),
        ));
    }
    let missing: Vec<&str> = cats
        .iter()
        .map(|c| c.0.as_str())
        .filter(|c| !req.prices.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(
            "missing_price",
            format!("no price for categories: {}", missing.join(", ")),
        ));
    }
    let extra: Vec<&str> = req
        .prices
        .keys()
        .map(String::as_str)
        .filter(|p| !cats.iter().any(|c| c.0 == *p))
        .collect();
    if !extra.is_empty() {
        return Err(ApiError::unprocessable(
            "unknown_category",
            format!(
                "the screen has no seats in categories: {}",
                extra.join(", ")
            ),
        ));
    }
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO shows (id, screen_id, movie_id, starts_at, prices, currency, sale_mode, seat_count, refund_policy, max_seats_per_user)
         VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT count(*) FROM seats WHERE screen_id = $2), $8, COALESCE($9, 10))",
    )
    .bind(id)
    .bind(req.screen_id)
    .bind(req.movie_id)
    .bind(req.starts_at)
    .bind(sqlx::types::Json(&req.prices))
    .bind(&req.currency)
    .bind(req.sale_mode.as_db_str())
    .bind(sqlx::types::Json(&refund_policy))
    .bind(req.max_seats_per_user.map(i32::from))
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        // The screen is taken then: the exclusion constraint is the last
        // word, whatever raced with this request.
        if constraint_of(&e) == Some("shows_no_overlap") {
            ApiError::conflict(
                "show_overlaps",
                "another show plays on this screen at that time",
            )
        } else {
            e.into()
        }
    })?;
    // Creating a show materialises one row per seat: the rows that holds
    // and bookings lock.
    sqlx::query(
        "INSERT INTO show_seats (show_id, seat_id, ordinal)
         SELECT $1, id, ordinal FROM seats WHERE screen_id = $2",
    )
    .bind(id)
    .bind(req.screen_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let show = fetch_show(&state, ShowId(id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("show {id} vanished after insert"))?;
    Ok((StatusCode::CREATED, ApiJson(show)))
}

async fn list_cities(
    state: axum::extract::State<AppState>,
) -> Result<ApiJson<Vec<City>>, ApiError> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT code, name FROM cities ORDER BY code")
        .fetch_all(&state.db)
        .await?;
    let cities = rows
        .into_iter()
        .filter_map(|(code, name)| {
            Some(City {
                code: CityCode::parse(&code).ok()?,
                name,
            })
        })
        .collect();
    Ok(ApiJson(cities))
}

#[derive(Deserialize)]
struct DateQuery {
    date: NaiveDate,
}

const SHOW_SELECT: &str = "
    SELECT sh.id, v.city_code, v.id, v.name, sc.id, sc.name, m.id, m.title, sh.starts_at,
           v.time_zone, sh.prices, sh.currency, sh.sale_mode, sh.seat_count, sh.refund_policy
      FROM shows sh
      JOIN screens sc ON sc.id = sh.screen_id
      JOIN venues v ON v.id = sc.venue_id
      JOIN movies m ON m.id = sh.movie_id";

type ShowRow = (
    Uuid,
    String,
    Uuid,
    String,
    Uuid,
    String,
    Uuid,
    String,
    DateTime<Utc>,
    String,
    sqlx::types::Json<BTreeMap<String, i64>>,
    String,
    String,
    i32,
    sqlx::types::Json<RefundPolicy>,
);

fn show_from_row(r: ShowRow) -> Result<Show, ApiError> {
    let tz: Tz =
        r.9.parse()
            .map_err(|_| anyhow::anyhow!("venue has invalid time zone {:?}", r.9))?;
    let local = r.8.with_timezone(&tz);
    Ok(Show {
        id: ShowId(r.0),
        city: CityCode::parse(&r.1).map_err(anyhow::Error::from)?,
        venue_id: r.2,
        venue_name: r.3,
        screen_id: r.4,
        screen_name: r.5,
        movie_id: r.6,
        movie_title: r.7,
        starts_at: r.8,
        starts_at_local: local.to_rfc3339(),
        local_date: local.date_naive(),
        time_zone: r.9,
        prices: r.10 .0,
        currency: r.11,
        sale_mode: SaleMode::from_db_str(&r.12).unwrap_or(SaleMode::Open),
        seat_count: r.13 as u32,
        refund_policy: r.14 .0,
    })
}

/// Loads one show with its venue, screen and movie.
pub async fn fetch_show(state: &AppState, id: ShowId) -> Result<Option<Show>, ApiError> {
    let row: Option<ShowRow> = sqlx::query_as(&format!("{SHOW_SELECT} WHERE sh.id = $1"))
        .bind(id.0)
        .fetch_optional(&state.db)
        .await?;
    row.map(show_from_row).transpose()
}

/// Parses a show id from a path segment.
pub fn parse_show_id(raw: &str) -> Result<ShowId, ApiError> {
    ShowId::parse(raw).map_err(|e| ApiError::bad_request("invalid_show_id", e.to_string()))
}

async fn get_show(
    state: axum::extract::State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Show>, ApiError> {
    let id = parse_show_id(&id)?;
    fetch_show(&state, id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found("unknown_show", format!("no show {id}")))
}

/// Shows of a city whose start falls on `date` in their venue's time zone.
async fn list_shows(
    state: axum::extract::State<AppState>,
    ApiPath(code): ApiPath<String>,
    ApiQuery(q): ApiQuery<DateQuery>,
) -> Result<ApiJson<ShowList>, ApiError> {
    let city =
        CityCode::parse(&code).map_err(|e| ApiError::bad_request("invalid_city", e.to_string()))?;
    city_exists(&state, &city).await?;
    // A local date spans at most 26 UTC hours either side; narrow by UTC
    // first so the index on starts_at is used, then filter exactly.
    let lo = q
        .date
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc() - chrono::Duration::hours(15));
    let hi = q
        .date
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc() + chrono::Duration::hours(39));
    let rows: Vec<ShowRow> = sqlx::query_as(&format!(
        "{SHOW_SELECT}
         WHERE v.city_code = $1 AND sh.starts_at >= $3 AND sh.starts_at < $4
           AND (sh.starts_at AT TIME ZONE v.time_zone)::date = $2
         ORDER BY sh.starts_at, sh.id"
    ))
    .bind(city.as_str())
    .bind(q.date)
    .bind(lo)
    .bind(hi)
    .fetch_all(&state.db)
    .await?;
    let shows = rows
        .into_iter()
        .map(show_from_row)
        .collect::<Result<_, _>>()?;
    Ok(ApiJson(ShowList {
        city,
        date: q.date,
        shows,
    }))
}
