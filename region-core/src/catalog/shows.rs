//! Shows: scheduled by operators (prices, sale mode, refund policy; no
//! overlap on a screen), read by buyers one by one or by city and day in
//! the venue's time zone.

use super::check_name;
use crate::audit::store::{self as audit, Entry};
use crate::auth::CatalogOperator;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use shared::api::{CreateShow, ListMovie, SaleMode, Show, ShowList, ShowStatus};
use shared::refund::RefundPolicy;
use shared::{CityCode, ShowId};
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Highest price of one seat, in minor units (10 million units of any
/// currency): keeps every sum of a booking far inside `i64`.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000;

/// How far ahead a show may be scheduled.
pub(super) const MAX_SCHEDULE_AHEAD_DAYS: i64 = 3 * 366;

#[tracing::instrument(skip_all)]
pub(super) async fn create_show(
    op: CatalogOperator,
    state: axum::extract::State<AppState>,
    ApiJson(req): ApiJson<CreateShow>,
) -> Result<(StatusCode, ApiJson<Show>), ApiError> {
    let refund_policy = check_new_show(&req, Utc::now())?;
    let screen = sqlx::query!(
        r#"SELECT v.city_code, array_agg(DISTINCT s.category) AS "categories!"
           FROM screens sc JOIN venues v ON v.id = sc.venue_id JOIN seats s ON s.screen_id = sc.id
           WHERE sc.id = $1
           GROUP BY v.city_code"#,
        req.screen_id
    )
    .fetch_optional(&state.db)
    .await?;
    let Some(screen) = screen else {
        return Err(ApiError::not_found(
            "unknown_screen",
            format!("no screen {}", req.screen_id),
        ));
    };
    op.check_city(&screen.city_code)?;
    let categories: Vec<&str> = screen.categories.iter().map(String::as_str).collect();
    check_prices_cover(&categories, &req.prices)?;
    // A global title: the catalog hears that this city shows it (and the
    // shard gets its copy) before the show exists; a show that then fails
    // to be created leaves a listing that merely points here early.
    if let Some(catalog) = &state.catalog {
        let listing = ListMovie {
            movie_id: req.movie_id,
            city: screen.city_code.clone(),
            starts_at: req.starts_at,
        };
        catalog.list(&state.db, &op.id, &listing).await?;
    }
    let movie = sqlx::query_scalar!("SELECT id FROM movies WHERE id = $1", req.movie_id)
        .fetch_optional(&state.db)
        .await?;
    if movie.is_none() {
        return Err(ApiError::not_found(
            "unknown_movie",
            format!("no movie {}", req.movie_id),
        ));
    }
    let id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "INSERT INTO shows (id, screen_id, movie_id, starts_at, prices, currency, sale_mode, seat_count, refund_policy, max_seats_per_user)
         VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT count(*) FROM seats WHERE screen_id = $2), $8, COALESCE($9, 10))",
        id,
        req.screen_id,
        req.movie_id,
        req.starts_at,
        Json(&req.prices) as _,
        &req.currency,
        req.sale_mode.as_db_str(),
        Json(&refund_policy) as _,
        req.max_seats_per_user.map(i32::from)
    )
    .execute(&mut *tx)
    .await
    // The screen is taken then: the exclusion constraint is the last
    // word, whatever raced with this request.
    .map_err(overlap_refusal)?;
    // Creating a show materialises one row per seat: the rows that holds
    // and bookings lock.
    sqlx::query!(
        "INSERT INTO show_seats (show_id, seat_id, ordinal)
         SELECT $1, id, ordinal FROM seats WHERE screen_id = $2",
        id,
        req.screen_id
    )
    .execute(&mut *tx)
    .await?;
    // A flash sale's waiting room, in the same transaction as its mode.
    crate::sale_config::store::put_room(&mut tx, id, req.waiting_room.as_ref(), Utc::now()).await?;
    let entry = Entry {
        action: "show.create",
        target_kind: "show",
        target_id: id.to_string(),
        city: Some(&screen.city_code),
        before: None,
        after: Some(serde_json::to_value(&req).map_err(anyhow::Error::from)?),
    };
    audit::record(&mut tx, &op, entry).await?;
    tx.commit().await?;
    super::after_write(&state, std::slice::from_ref(&screen.city_code)).await;
    let show = fetch_show(&state, ShowId(id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("show {id} vanished after insert"))?;
    Ok((StatusCode::CREATED, ApiJson(show)))
}

/// The checks of a new show that need no database, at `now`: in the
/// future but at most three years ahead, an ISO 4217 currency, prices in
/// range with clean category names, a valid refund policy (returned, the
/// default when none is given) and a seat limit of 1-100.
fn check_new_show(req: &CreateShow, now: DateTime<Utc>) -> Result<RefundPolicy, ApiError> {
    if req.starts_at <= now {
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
    crate::sale_config::check(req.sale_mode, req.waiting_room.as_ref())?;
    if req.starts_at > now + chrono::Duration::days(MAX_SCHEDULE_AHEAD_DAYS) {
        return Err(ApiError::unprocessable(
            "show_too_far_ahead",
            format!("starts_at must be within {MAX_SCHEDULE_AHEAD_DAYS} days from now"),
        ));
    }
    check_prices(&req.prices)?;
    let refund_policy = req.refund_policy.clone().unwrap_or_default();
    refund_policy
        .validate()
        .map_err(|e| ApiError::unprocessable("invalid_refund_policy", e.to_string()))?;
    Ok(refund_policy)
}

/// 422 for a price out of range or a bad category name.
pub(super) fn check_prices(prices: &BTreeMap<String, i64>) -> Result<(), ApiError> {
    if let Some((cat, p)) = prices
        .iter()
        .find(|(_, p)| !(0..=MAX_PRICE_MINOR).contains(*p))
    {
        return Err(ApiError::unprocessable(
            "invalid_price",
            format!("price of {cat} must be 0 to {MAX_PRICE_MINOR} minor units, got {p}"),
        ));
    }
    for cat in prices.keys() {
        check_name("prices (category)", cat, 40)?;
    }
    Ok(())
}

/// Every seat category of the screen has a price, and every price a
/// category.
pub(super) fn check_prices_cover(
    categories: &[&str],
    prices: &BTreeMap<String, i64>,
) -> Result<(), ApiError> {
    let missing: Vec<&str> = categories
        .iter()
        .copied()
        .filter(|c| !prices.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(
            "missing_price",
            format!("no price for categories: {}", missing.join(", ")),
        ));
    }
    let extra: Vec<&str> = prices
        .keys()
        .map(String::as_str)
        .filter(|p| !categories.contains(p))
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
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct DateQuery {
    pub(super) date: NaiveDate,
}

/// A show with its venue, screen and movie, as the catalog reads it.
struct ShowRow {
    id: Uuid,
    city_code: String,
    venue_id: Uuid,
    venue_name: String,
    screen_id: Uuid,
    screen_name: String,
    movie_id: Uuid,
    title: String,
    starts_at: DateTime<Utc>,
    time_zone: String,
    prices: Json<BTreeMap<String, i64>>,
    currency: String,
    sale_mode: String,
    seat_count: i32,
    refund_policy: Json<RefundPolicy>,
    status: String,
    cancelled_at: Option<DateTime<Utc>>,
}

/// The catalog's show select (its joins), ended by `$rest`: the macro
/// checks whole statements, so the ending is appended as a literal.
macro_rules! select_shows {
    ($rest:literal, $($arg:expr),+) => {
        sqlx::query_as!(
            ShowRow,
            r#"SELECT sh.id, v.city_code, v.id AS venue_id, v.name AS venue_name,
                      sc.id AS screen_id, sc.name AS screen_name, m.id AS movie_id, m.title,
                      sh.starts_at, v.time_zone,
                      sh.prices AS "prices: Json<BTreeMap<String, i64>>", sh.currency,
                      sh.sale_mode, sh.seat_count,
                      sh.refund_policy AS "refund_policy: Json<RefundPolicy>",
                      sh.status, sh.cancelled_at
                 FROM shows sh
                 JOIN screens sc ON sc.id = sh.screen_id
                 JOIN venues v ON v.id = sc.venue_id
                 JOIN movies m ON m.id = sh.movie_id
                "# + $rest,
            $($arg),+
        )
    };
}

fn show_from_row(r: ShowRow) -> Result<Show, ApiError> {
    let tz: Tz = r
        .time_zone
        .parse()
        .map_err(|_| anyhow::anyhow!("venue has invalid time zone {:?}", r.time_zone))?;
    let local = r.starts_at.with_timezone(&tz);
    Ok(Show {
        id: ShowId(r.id),
        city: CityCode::parse(&r.city_code).map_err(anyhow::Error::from)?,
        venue_id: r.venue_id,
        venue_name: r.venue_name,
        screen_id: r.screen_id,
        screen_name: r.screen_name,
        movie_id: r.movie_id,
        movie_title: r.title,
        starts_at: r.starts_at,
        starts_at_local: local.to_rfc3339(),
        local_date: local.date_naive(),
        time_zone: r.time_zone,
        prices: r.prices.0,
        currency: r.currency,
        sale_mode: SaleMode::from_db_str(&r.sale_mode).unwrap_or(SaleMode::Open),
        seat_count: r.seat_count as u32,
        refund_policy: r.refund_policy.0,
        status: ShowStatus::from_db_str(&r.status).unwrap_or_default(),
        cancelled_at: r.cancelled_at,
    })
}

/// Loads one show with its venue, screen and movie.
pub async fn fetch_show(state: &AppState, id: ShowId) -> Result<Option<Show>, ApiError> {
    let row = select_shows!("WHERE sh.id = $1", id.0)
        .fetch_optional(&state.db)
        .await?;
    row.map(show_from_row).transpose()
}

/// What an operator's list of shows is narrowed to.
#[derive(Debug, Default)]
pub(super) struct ShowFilter {
    /// Only these cities; `None`: all.
    pub(super) cities: Option<Vec<String>>,
    pub(super) city: Option<String>,
    pub(super) venue_id: Option<Uuid>,
    pub(super) screen_id: Option<Uuid>,
    pub(super) movie_id: Option<Uuid>,
    /// Starting at or after.
    pub(super) from: Option<DateTime<Utc>>,
    /// Starting before.
    pub(super) to: Option<DateTime<Utc>>,
    /// After this (start, id) in the order.
    pub(super) after: Option<(DateTime<Utc>, Uuid)>,
    pub(super) limit: i64,
}

/// Shows matching `f`, by start then id.
pub(super) async fn list_filtered(
    conn: &mut sqlx::PgConnection,
    f: &ShowFilter,
) -> Result<Vec<Show>, ApiError> {
    let rows = select_shows!(
        "WHERE ($1::text[] IS NULL OR v.city_code = ANY($1))
           AND ($2::text IS NULL OR v.city_code = $2)
           AND ($3::uuid IS NULL OR v.id = $3)
           AND ($4::uuid IS NULL OR sc.id = $4)
           AND ($5::uuid IS NULL OR m.id = $5)
           AND ($6::timestamptz IS NULL OR sh.starts_at >= $6)
           AND ($7::timestamptz IS NULL OR sh.starts_at < $7)
           AND ($8::timestamptz IS NULL OR (sh.starts_at, sh.id) > ($8::timestamptz, $9::uuid))
         ORDER BY sh.starts_at, sh.id
         LIMIT $10",
        f.cities.as_deref(),
        f.city,
        f.venue_id,
        f.screen_id,
        f.movie_id,
        f.from,
        f.to,
        f.after.map(|a| a.0),
        f.after.map(|a| a.1),
        f.limit
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(show_from_row).collect()
}

/// Loads one show on `conn` (an operator's transaction).
pub(super) async fn fetch_show_on(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Option<Show>, ApiError> {
    let row = select_shows!("WHERE sh.id = $1", id)
        .fetch_optional(conn)
        .await?;
    row.map(show_from_row).transpose()
}

/// Parses a show id from a path segment.
pub fn parse_show_id(raw: &str) -> Result<ShowId, ApiError> {
    ShowId::parse(raw).map_err(|e| ApiError::bad_request("invalid_show_id", e.to_string()))
}

pub(super) async fn get_show(
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
pub(super) async fn list_shows(
    state: axum::extract::State<AppState>,
    ApiPath(code): ApiPath<String>,
    ApiQuery(q): ApiQuery<DateQuery>,
) -> Result<ApiJson<ShowList>, ApiError> {
    let city =
        CityCode::parse(&code).map_err(|e| ApiError::bad_request("invalid_city", e.to_string()))?;
    super::cities::city_exists(&state, &city).await?;
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
    let rows = select_shows!(
        "WHERE v.city_code = $1 AND sh.starts_at >= $3 AND sh.starts_at < $4
           AND (sh.starts_at AT TIME ZONE v.time_zone)::date = $2
         ORDER BY sh.starts_at, sh.id",
        city.as_str(),
        q.date,
        lo,
        hi
    )
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

/// 409 `show_overlaps`: the screen plays another show then.
pub(super) fn show_overlaps() -> ApiError {
    ApiError::conflict(
        "show_overlaps",
        "another show plays on this screen at that time",
    )
}

/// A write to `shows` refused by the overlap constraint, as
/// [`show_overlaps`]; any other error as it is.
pub(super) fn overlap_refusal(e: sqlx::Error) -> ApiError {
    if crate::db::constraint_of(&e) == Some("shows_no_overlap") {
        show_overlaps()
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(starts_in_days: i64, now: DateTime<Utc>) -> CreateShow {
        serde_json::from_value(serde_json::json!({
            "screen_id": Uuid::nil(), "movie_id": Uuid::nil(),
            "starts_at": now + chrono::Duration::days(starts_in_days),
            "prices": {"REGULAR": 30000}, "currency": "INR",
        }))
        .expect("a show request")
    }

    fn code(r: Result<impl std::fmt::Debug, ApiError>) -> &'static str {
        r.expect_err("refused").code()
    }

    #[test]
    fn a_new_show_is_checked_before_the_database() {
        let now = Utc::now();
        assert!(check_new_show(&req(1, now), now).is_ok());
        assert_eq!(code(check_new_show(&req(0, now), now)), "show_in_past");
        assert_eq!(code(check_new_show(&req(-1, now), now)), "show_in_past");
        assert_eq!(
            code(check_new_show(&req(MAX_SCHEDULE_AHEAD_DAYS + 1, now), now)),
            "show_too_far_ahead"
        );
        let mut r = req(1, now);
        r.currency = "inr".into();
        assert_eq!(code(check_new_show(&r, now)), "invalid_currency");
        let mut r = req(1, now);
        r.prices.insert("VIP".into(), MAX_PRICE_MINOR + 1);
        assert_eq!(code(check_new_show(&r, now)), "invalid_price");
        let mut r = req(1, now);
        r.prices.insert("VIP".into(), -1);
        assert_eq!(code(check_new_show(&r, now)), "invalid_price");
        let mut r = req(1, now);
        r.prices.insert("V\0P".into(), 1);
        assert_eq!(code(check_new_show(&r, now)), "invalid_field");
        let mut r = req(1, now);
        r.max_seats_per_user = Some(101);
        assert_eq!(code(check_new_show(&r, now)), "invalid_field");
    }

    #[test]
    fn prices_and_seat_categories_match_exactly() {
        let prices: BTreeMap<String, i64> =
            [("REGULAR".to_owned(), 1), ("VIP".to_owned(), 2)].into();
        assert!(check_prices_cover(&["REGULAR", "VIP"], &prices).is_ok());
        assert_eq!(
            code(check_prices_cover(&["REGULAR", "VIP", "BOX"], &prices)),
            "missing_price"
        );
        assert_eq!(
            code(check_prices_cover(&["REGULAR"], &prices)),
            "unknown_category"
        );
    }
}
