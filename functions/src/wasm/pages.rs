//! The buyer's pages: fetch what a page shows (the edge's cached catalog
//! for public data, the city's region core for the user's own), render
//! it with the pure `crate::pages`, answer with the security headers.
//! Every form post checks `Origin` and the session's CSRF token before
//! anything else, then calls the region core with the session's token.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use shared::api::{
    Availability, Booking, BookingList, BookingStatus, BookingTickets, CancellationQuote, City,
    Hold, SearchResults, SeatMap, Show, ShowList,
};
use worker::{Context, Delay, Headers, Method, Request, Response, Url};

use super::handlers::{self, Call, Handled};
use super::http::{self, random_hex, OrInternal};
use super::region::{self, Upstream};
use crate::auth::{self, User};
use crate::catalog::CacheKind;
use crate::config::CATALOG;
use crate::error::EdgeError;
use crate::pages::layout::{self, Viewer};
use crate::pages::{
    assets, bookings, checkout, city, form, home, sale, search, session, show, signin, PageRoute,
};
use crate::rate_limit::RouteClass;
use crate::waiting_room::{Mode, State};

/// Serves one page route.
pub(super) async fn dispatch(
    req: &mut Request,
    call: &Call,
    ctx: &Context,
    route: PageRoute,
) -> Handled {
    match route {
        PageRoute::Asset { name } => asset(&name),
        PageRoute::Home => home_page(call, ctx).await,
        PageRoute::City { city, date } => city_page(call, ctx, &city, date).await,
        PageRoute::Show { city, show } => show_page(call, ctx, &city, &show, None, 200).await,
        PageRoute::HoldForm { city, show } => hold_form(req, call, ctx, &city, &show).await,
        PageRoute::Checkout { city, hold } => {
            checkout_page(call, ctx, &city, &hold, None, None, 200).await
        }
        PageRoute::Pay { city, hold } => pay(req, call, ctx, &city, &hold).await,
        PageRoute::Extend { city, hold } => extend(req, call, ctx, &city, &hold).await,
        PageRoute::Booking { city, booking } => booking_page(call, &city, &booking).await,
        PageRoute::CancelQuote { city, booking } => {
            cancel_page(call, &city, &booking, None, 200).await
        }
        PageRoute::Cancel { city, booking } => cancel(req, call, &city, &booking).await,
        PageRoute::Bookings => bookings_page(call).await,
        PageRoute::Search => search_page(call, ctx).await,
        PageRoute::SignIn { post: false } => {
            let next = http::header(req, "Referer")
                .and_then(|r| r.strip_prefix(&call.origin).map(str::to_owned));
            signin_page(call, "", next.as_deref(), None, 200)
        }
        PageRoute::SignIn { post: true } => signin_post(req, call).await,
        PageRoute::SignOut => signout(req, call).await,
        PageRoute::Ops(route) => super::ops::dispatch(req, call, ctx, route).await,
    }
}

// ------------------------------------------------------------ the frame

/// The signed-in user (if the session verifies) and their CSRF token.
struct Me {
    user: Option<User>,
    csrf: String,
}

impl Me {
    fn of(call: &Call) -> Self {
        let user = call
            .token
            .as_deref()
            .and_then(|t| auth::verify(&call.cfg.jwt_secret, t, call.now_s()).ok());
        let csrf = match (&user, &call.token) {
            (Some(_), Some(t)) => session::csrf_token(&call.cfg.jwt_secret, t),
            _ => String::new(),
        };
        Self { user, csrf }
    }

    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            user: self.user.as_ref().map(|u| u.id.as_str()),
            csrf: &self.csrf,
        }
    }

    /// The user, or a 303 to the sign-in page.
    fn require(&self) -> Result<&User, EdgeError> {
        self.user
            .as_ref()
            .ok_or_else(|| EdgeError::new(401, "unauthorized", "Please sign in to continue."))
    }
}

/// An HTML page with the security headers, `extra` headers and cookies.
pub(super) fn page(call: &Call, status: u16, body: String, cookies: &[String]) -> Handled {
    let h = Headers::new();
    let mut all = layout::security_headers(&call.origin);
    all.push(("Content-Type", "text/html; charset=utf-8".into()));
    for (n, v) in &all {
        h.set(n, v).or_internal("page header")?;
    }
    for c in cookies {
        h.append("Set-Cookie", c).or_internal("cookie")?;
    }
    Ok(Response::builder()
        .with_status(status)
        .with_headers(h)
        .fixed(body.into_bytes()))
}

/// `303 See Other` to `location`, setting `cookies`.
pub(super) fn redirect(location: &str, cookies: &[String]) -> Handled {
    let h = Headers::new();
    h.set("Location", location).or_internal("redirect")?;
    h.set("Cache-Control", "no-store").or_internal("redirect")?;
    for c in cookies {
        h.append("Set-Cookie", c).or_internal("cookie")?;
    }
    Ok(Response::builder().with_status(303).with_headers(h).empty())
}

/// The error page of a page route (a 401 sends the browser to sign in).
pub(super) fn error_page(call: &Call, e: &EdgeError) -> worker::Result<Response> {
    if e.status == 401 && e.code == "unauthorized" {
        if let Ok(r) = redirect("/signin", &[]) {
            return Ok(r);
        }
    }
    let me = Me::of(call);
    let body = layout::error_page(e.status, &e.message, me.viewer());
    let h = Headers::new();
    for (n, v) in layout::security_headers(&call.origin) {
        h.set(n, &v)?;
    }
    for (n, v) in &e.headers {
        h.set(n, v)?;
    }
    h.set("Content-Type", "text/html; charset=utf-8")?;
    Ok(Response::builder()
        .with_status(e.status)
        .with_headers(h)
        .fixed(body.into_bytes()))
}

fn asset(name: &str) -> Handled {
    let a = assets::find(name).ok_or_else(EdgeError::no_route)?;
    http::respond(
        200,
        a.content_type,
        a.body.as_bytes().to_vec(),
        &assets::headers(),
    )
    .or_internal("asset")
}

// --------------------------------------------------------- reading data

/// A cached catalog read (the edge's own JSON route, cache and all):
/// `Ok(None)` for a 404, the value for a 200.
async fn catalog<T: DeserializeOwned>(
    call: &Call,
    ctx: &Context,
    kind: CacheKind,
    city: &str,
    upstream: String,
    show: Option<&str>,
) -> Result<Option<T>, EdgeError> {
    let mut resp = handlers::catalog_read(
        call,
        ctx,
        kind,
        city.to_owned(),
        upstream,
        show.map(str::to_owned),
    )
    .await?;
    match resp.status_code() {
        200 => {
            let body = resp.bytes().await.or_internal("catalog body")?;
            serde_json::from_slice(&body)
                .map(Some)
                .or_internal("catalog JSON")
        }
        404 => Ok(None),
        s => {
            worker::console_warn!("catalog read {}: {s}", kind.name());
            Err(EdgeError::region_unavailable(1))
        }
    }
}

/// A call to `city`'s region core as the signed-in user.
async fn region_call(
    call: &Call,
    city: &str,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
    extra: &[(&str, &str)],
) -> Result<Upstream, EdgeError> {
    let (h, bytes) = user_request(call, body, extra)?;
    region::call(&call.cfg, city, method, path, h, bytes.as_deref()).await
}

/// [`region_call`] for a payment: the region answers after the gateway
/// (`region::pay`).
async fn region_pay(
    call: &Call,
    city: &str,
    path: &str,
    body: &serde_json::Value,
    extra: &[(&str, &str)],
) -> Result<Upstream, EdgeError> {
    let (h, bytes) = user_request(call, Some(body), extra)?;
    region::pay(&call.cfg, city, Method::Post, path, h, bytes.as_deref()).await
}

/// The headers and JSON body of a request as the signed-in user.
fn user_request(
    call: &Call,
    body: Option<&serde_json::Value>,
    extra: &[(&str, &str)],
) -> Result<(Headers, Option<Vec<u8>>), EdgeError> {
    let h = Headers::new();
    let set = |n: &str, v: &str| h.set(n, v).or_internal("region header");
    set("Accept", "application/json")?;
    set("X-Forwarded-For", &call.ip)?;
    if let Some(t) = &call.token {
        set("Authorization", &format!("Bearer {t}"))?;
    }
    let bytes = match body {
        Some(b) => {
            set("Content-Type", "application/json")?;
            Some(serde_json::to_vec(b).or_internal("region body")?)
        }
        None => None,
    };
    for (n, v) in extra {
        set(n, v)?;
    }
    Ok((h, bytes))
}

/// The region's error code and `details` (as strings) of a refusal.
fn refusal(up: &Upstream) -> (String, Vec<String>) {
    let v: serde_json::Value = serde_json::from_slice(&up.body).unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or("unknown").to_owned();
    let details = v["error"]["details"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (code, details)
}

/// A signed-in user's GET of their own resource from the region core
/// (rate-limited as the API is): 200 parsed, anything else its error.
async fn read_as_user<T: DeserializeOwned>(
    call: &Call,
    me: &Me,
    city: &str,
    path: &str,
    what: &str,
) -> Result<T, EdgeError> {
    let user = me.require()?;
    call.gate(RouteClass::Api, Some(&user.id), &[]).await?;
    let up = region_call(call, city, Method::Get, path, None, &[]).await?;
    if up.status != 200 {
        return Err(region_error(&up));
    }
    parse(&up, what)
}

fn parse<T: DeserializeOwned>(up: &Upstream, what: &str) -> Result<T, EdgeError> {
    serde_json::from_slice(&up.body).or_internal(what)
}

/// The region's refusal as the page's error (404s and the like).
fn region_error(up: &Upstream) -> EdgeError {
    let v: serde_json::Value = serde_json::from_slice(&up.body).unwrap_or_default();
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or("the request was refused")
        .to_owned();
    let status = if up.status >= 500 { 503 } else { up.status };
    EdgeError::new(status, "refused", message)
}

/// A posted form whose origin and CSRF token are ours.
async fn checked_form(req: &mut Request, call: &Call) -> Result<Vec<(String, String)>, EdgeError> {
    let body = http::read_body(req, call.cfg.max_body_bytes).await?;
    let fields = std::str::from_utf8(&body)
        .ok()
        .and_then(form::parse)
        .ok_or_else(|| EdgeError::new(400, "bad_form", "the form could not be read"))?;
    let origin = http::header(req, "Origin");
    let session = call.token.as_deref().unwrap_or_default();
    let token = form::get(&fields, shared::csrf::FIELD);
    if !shared::csrf::same_origin(origin.as_deref(), &call.origin)
        || !session::csrf_ok(&call.cfg.jwt_secret, session, token)
    {
        return Err(EdgeError::csrf_refused());
    }
    Ok(fields)
}

/// A client-chosen idempotency key from a form: 1–255 visible ASCII.
fn idempotency_key(fields: &[(String, String)]) -> Result<String, EdgeError> {
    form::get(fields, "idempotency_key")
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| EdgeError::new(400, "bad_form", "the form is missing its payment key"))
}

fn new_key() -> Result<String, EdgeError> {
    random_hex(16).or_internal("idempotency key")
}

pub(super) fn today(call: &Call) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(call.now_ms)
        .unwrap_or_default()
        .date_naive()
}

fn now(call: &Call) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(call.now_ms).unwrap_or_default()
}

// --------------------------------------------------------------- pages

/// Every shard's cities with their names: the merged city list, through
/// the edge's cache (the buyer's pages and the console's).
pub(super) async fn city_list(call: &Call, ctx: &Context) -> Result<Vec<City>, EdgeError> {
    Ok(
        catalog(call, ctx, CacheKind::Cities, "", "/v1/cities".into(), None)
            .await?
            .unwrap_or_default(),
    )
}

async fn home_page(call: &Call, ctx: &Context) -> Handled {
    let me = Me::of(call);
    let cities = city_list(call, ctx).await?;
    let search = call.cfg.catalog_url.is_some();
    page(call, 200, home::render(&cities, search, me.viewer()), &[])
}

/// `/search?q=`: the global catalog's answer (through the edge's cache),
/// with city names from the city list.
async fn search_page(call: &Call, ctx: &Context) -> Handled {
    let me = Me::of(call);
    let asked = call.query.as_deref().and_then(|q| {
        Url::parse(&format!("http://edge/?{q}"))
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.trim().chars().take(100).collect::<String>())
    });
    let results = match asked.filter(|q| !q.is_empty()) {
        None => None,
        Some(q) => {
            // One spelling of the query per cache entry.
            let mut url = Url::parse("http://edge/v1/search").or_internal("search url")?;
            url.query_pairs_mut().append_pair("q", &q);
            let upstream = format!("/v1/search?{}", url.query().unwrap_or_default());
            catalog::<SearchResults>(call, ctx, CacheKind::Search, CATALOG, upstream, None).await?
        }
    };
    let cities = city_list(call, ctx).await.unwrap_or_default();
    page(
        call,
        200,
        search::render(results.as_ref(), &cities, me.viewer()),
        &[],
    )
}

async fn city_page(call: &Call, ctx: &Context, code: &str, date: Option<String>) -> Handled {
    let me = Me::of(call);
    let today = today(call);
    let asked = date;
    let mut date = match &asked {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| EdgeError::new(400, "bad_query", "the date must be YYYY-MM-DD"))?,
        None => today,
    };
    let cities = city_list(call, ctx).await.unwrap_or_default();
    let name = cities
        .iter()
        .find(|c| c.code.as_str() == code)
        .map_or_else(|| code.to_owned(), |c| c.name.clone());
    let shows_on = |day: NaiveDate| async move {
        catalog::<ShowList>(
            call,
            ctx,
            CacheKind::Shows,
            code,
            format!("/v1/cities/{code}/shows?date={day}"),
            None,
        )
        .await?
        .ok_or_else(|| EdgeError::unknown_city(code))
    };
    let mut list = shows_on(date).await?;
    let mut moved = false;
    if asked.is_none() {
        // Nothing today: open on the first day of the week that has shows
        // (cached reads), rather than on an empty page.
        let mut day = date;
        while list.shows.is_empty() && day < today + chrono::Duration::days(6) {
            day += chrono::Duration::days(1);
            list = shows_on(day).await?;
            moved = !list.shows.is_empty();
        }
        if moved {
            date = day;
        }
    }
    // Free seats per show, for the "few left" / "sold out" marks; a show
    // whose count cannot be read just has no mark.
    let counts = futures::future::join_all(list.shows.iter().map(|s| {
        let id = s.id.to_string();
        async move {
            catalog::<Availability>(
                call,
                ctx,
                CacheKind::Availability,
                code,
                format!("/v1/shows/{id}/availability"),
                Some(&id),
            )
            .await
            .ok()
            .flatten()
            .map(|a| city::Seats {
                available: a.available,
                total: a.total,
            })
        }
    }))
    .await;
    let shows: Vec<(Show, Option<city::Seats>)> = list.shows.into_iter().zip(counts).collect();
    let html = city::render(
        &city::CityPage {
            city: code,
            name: &name,
            date,
            today: today.min(date),
            shows: &shows,
            note: moved.then_some("No shows today: here is the next day with shows."),
        },
        me.viewer(),
    );
    page(call, 200, html, &[])
}

/// One of a show's cached catalog reads (`/v1/shows/{show}{suffix}`);
/// a show the region does not know is the page's 404.
async fn read_show_part<T: DeserializeOwned>(
    call: &Call,
    ctx: &Context,
    city: &str,
    show: &str,
    kind: CacheKind,
    suffix: &str,
) -> Result<T, EdgeError> {
    catalog(
        call,
        ctx,
        kind,
        city,
        format!("/v1/shows/{show}{suffix}"),
        Some(show),
    )
    .await?
    .ok_or_else(|| EdgeError::unknown_show(show))
}

async fn read_show(call: &Call, ctx: &Context, city: &str, show: &str) -> Result<Show, EdgeError> {
    read_show_part(call, ctx, city, show, CacheKind::Show, "").await
}

async fn read_seats(
    call: &Call,
    ctx: &Context,
    city: &str,
    show: &str,
) -> Result<SeatMap, EdgeError> {
    read_show_part(call, ctx, city, show, CacheKind::Seats, "/seats").await
}

async fn show_page(
    call: &Call,
    ctx: &Context,
    city: &str,
    id: &str,
    message: Option<&str>,
    status: u16,
) -> Handled {
    let me = Me::of(call);
    let s = read_show(call, ctx, city, id).await?;
    let seats = read_seats(call, ctx, city, id).await?;
    let needs_pass =
        session::cookie(call.cookies.as_deref(), &session::pass_cookie_name(id)).is_none();
    let html = show::render(
        &show::ShowPage {
            city,
            show: &s,
            seats: &seats,
            needs_pass,
            message,
        },
        me.viewer(),
    );
    page(call, status, html, &[])
}

async fn hold_form(req: &mut Request, call: &Call, ctx: &Context, city: &str, id: &str) -> Handled {
    let me = Me::of(call);
    let user = me.require()?;
    let fields = checked_form(req, call).await?;
    let seats = form::all(&fields, "seats");
    if seats.is_empty() {
        let m = show::hold_problem("no_seats", &[]);
        return show_page(call, ctx, city, id, Some(&m), 422).await;
    }
    call.gate(RouteClass::Hold, Some(&user.id), &[]).await?;
    let pass = session::cookie(call.cookies.as_deref(), &session::pass_cookie_name(id));
    let extra: Vec<(&str, &str)> = pass.map(|p| ("Admission-Pass", p)).into_iter().collect();
    let up = region_call(
        call,
        city,
        Method::Post,
        &format!("/v1/shows/{id}/holds"),
        Some(&serde_json::json!({ "seats": seats })),
        &extra,
    )
    .await?;
    if up.status == 201 {
        let hold: Hold = parse(&up, "hold")?;
        return redirect(&format!("/c/{city}/holds/{}/checkout", hold.hold_id), &[]);
    }
    let (code, taken) = refusal(&up);
    let m = show::hold_problem(&code, &taken);
    let status = if up.status >= 500 { 503 } else { up.status };
    show_page(call, ctx, city, id, Some(&m), status).await
}

#[allow(clippy::too_many_arguments)]
async fn checkout_page(
    call: &Call,
    ctx: &Context,
    city: &str,
    hold_id: &str,
    key: Option<String>,
    message: Option<&str>,
    status: u16,
) -> Handled {
    let me = Me::of(call);
    let hold: Hold = read_as_user(call, &me, city, &format!("/v1/holds/{hold_id}"), "hold").await?;
    let show_id = hold.show_id.to_string();
    let s = read_show(call, ctx, city, &show_id).await?;
    let seats = read_seats(call, ctx, city, &show_id).await?;
    let categories: BTreeMap<String, String> = seats
        .seats
        .into_iter()
        .map(|seat| (seat.label, seat.category))
        .collect();
    let key = match key {
        Some(k) => k,
        None => new_key()?,
    };
    let html = checkout::render(
        &checkout::CheckoutPage {
            city,
            show: &s,
            hold: &hold,
            categories: &categories,
            idempotency_key: &key,
            message,
            now: now(call),
        },
        me.viewer(),
    );
    page(call, status, html, &[])
}

async fn pay(req: &mut Request, call: &Call, ctx: &Context, city: &str, hold: &str) -> Handled {
    let me = Me::of(call);
    let user = me.require()?;
    let fields = checked_form(req, call).await?;
    let key = idempotency_key(&fields)?;
    let pm = form::get(&fields, "payment_method").unwrap_or_default();
    if !checkout::valid_payment_method(pm) {
        let m = "Choose one of the cards.";
        return checkout_page(call, ctx, city, hold, Some(key), Some(m), 422).await;
    }
    call.gate(RouteClass::Checkout, Some(&user.id), &[]).await?;
    let body = serde_json::json!({ "payment_method": pm });
    let path = format!("/v1/holds/{hold}/checkout");
    // A double click: the first request is still paying under this key.
    // Wait for it (briefly) rather than tell the buyer to go and look.
    let mut up = region_pay(call, city, &path, &body, &[("Idempotency-Key", &key)]).await?;
    for _ in 0..6 {
        if up.status != 409 || refusal(&up).0 != "idempotency_key_in_use" {
            break;
        }
        Delay::from(Duration::from_millis(500)).await;
        up = region_pay(call, city, &path, &body, &[("Idempotency-Key", &key)]).await?;
    }
    handlers::report_completion(call, ctx, &up);
    if up.status == 201 {
        let booking: Booking = parse(&up, "booking")?;
        return redirect(&format!("/c/{city}/bookings/{}", booking.id), &[]);
    }
    let (code, _) = refusal(&up);
    let (message, keep_key) = checkout::payment_problem(&code);
    let next_key = if keep_key { key } else { new_key()? };
    let status = if up.status >= 500 { 503 } else { up.status };
    checkout_page(call, ctx, city, hold, Some(next_key), Some(message), status).await
}

async fn extend(req: &mut Request, call: &Call, ctx: &Context, city: &str, hold: &str) -> Handled {
    let me = Me::of(call);
    let user = me.require()?;
    checked_form(req, call).await?;
    call.gate(RouteClass::Api, Some(&user.id), &[]).await?;
    let up = region_call(
        call,
        city,
        Method::Post,
        &format!("/v1/holds/{hold}/extend"),
        None,
        &[],
    )
    .await?;
    if up.status == 200 {
        return redirect(&format!("/c/{city}/holds/{hold}/checkout"), &[]);
    }
    let message = match refusal(&up).0.as_str() {
        "hold_already_extended" => "This hold has already been extended once.",
        "show_started" => "The show has started.",
        _ => "The hold could not be extended.",
    };
    checkout_page(
        call,
        ctx,
        city,
        hold,
        None,
        Some(message),
        up.status.min(499),
    )
    .await
}

async fn booking_page(call: &Call, city: &str, booking: &str) -> Handled {
    let me = Me::of(call);
    let b: Booking = read_as_user(
        call,
        &me,
        city,
        &format!("/v1/bookings/{booking}"),
        "booking",
    )
    .await?;
    // The tickets (QR codes) of a confirmed booking; a page without them
    // still answers if that read fails.
    let tickets = if b.status == BookingStatus::Confirmed {
        read_as_user::<BookingTickets>(
            call,
            &me,
            city,
            &format!("/v1/bookings/{}/tickets", b.id),
            "tickets",
        )
        .await
        .map(|t| t.tickets)
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    page(
        call,
        200,
        checkout::render_booking(city, &b, &tickets, me.viewer()),
        &[],
    )
}

async fn bookings_page(call: &Call) -> Handled {
    let me = Me::of(call);
    let user = me.require()?;
    call.gate(RouteClass::Api, Some(&user.id), &[]).await?;
    // One read per region core (cities sharing one share its bookings);
    // each booking is acted on through the first city of its region.
    let regions = call.cfg.regions.distinct();
    let reads = regions.iter().map(|(_, cities)| async move {
        let city = cities[0];
        let up = region_call(call, city, Method::Get, "/v1/bookings?limit=200", None, &[]).await;
        (city, up)
    });
    let mut all: Vec<(String, Booking)> = Vec::new();
    let mut partial = false;
    for (city, up) in futures::future::join_all(reads).await {
        match up {
            Ok(up) if up.status == 200 => {
                let list: BookingList = parse(&up, "bookings")?;
                all.extend(list.bookings.into_iter().map(|b| (city.to_owned(), b)));
            }
            _ => partial = true,
        }
    }
    all.sort_by_key(|(_, b)| std::cmp::Reverse(b.created_at));
    let html = bookings::render(
        &bookings::BookingsPage {
            bookings: &all,
            partial,
            now: now(call),
        },
        me.viewer(),
    );
    page(call, 200, html, &[])
}

async fn cancel_page(
    call: &Call,
    city: &str,
    booking: &str,
    message: Option<&str>,
    status: u16,
) -> Handled {
    let me = Me::of(call);
    let b: Booking = read_as_user(
        call,
        &me,
        city,
        &format!("/v1/bookings/{booking}"),
        "booking",
    )
    .await?;
    let q = region_call(
        call,
        city,
        Method::Get,
        &format!("/v1/bookings/{booking}/cancellation-quote"),
        None,
        &[],
    )
    .await?;
    let (quote, why) = if q.status == 200 {
        (Some(parse::<CancellationQuote>(&q, "quote")?), None)
    } else {
        let why = match refusal(&q).0.as_str() {
            "already_cancelled" => "This booking is already cancelled.",
            "show_started" => "The show has started: it can no longer be cancelled.",
            _ => "This booking cannot be cancelled just now.",
        };
        (None, Some(why))
    };
    let key = new_key()?;
    let html = bookings::render_cancel(
        &bookings::CancelPage {
            city,
            booking: &b,
            quote: quote.as_ref(),
            message: message.or(why),
            idempotency_key: &key,
        },
        me.viewer(),
    );
    page(call, status, html, &[])
}

async fn cancel(req: &mut Request, call: &Call, city: &str, booking: &str) -> Handled {
    let me = Me::of(call);
    let user = me.require()?;
    let fields = checked_form(req, call).await?;
    let key = idempotency_key(&fields)?;
    call.gate(RouteClass::Api, Some(&user.id), &[]).await?;
    let up = region_call(
        call,
        city,
        Method::Post,
        &format!("/v1/bookings/{booking}/cancel"),
        None,
        &[("Idempotency-Key", &key)],
    )
    .await?;
    if up.status == 200 || refusal(&up).0 == "already_cancelled" {
        return redirect("/bookings", &[]);
    }
    let m = match refusal(&up).0.as_str() {
        "show_started" => "The show has started: it can no longer be cancelled.",
        _ => "The booking could not be cancelled just now. Please try again.",
    };
    cancel_page(call, city, booking, Some(m), up.status.min(499)).await
}

// ---------------------------------------------------------- signing in

fn signin_page(
    call: &Call,
    email: &str,
    next: Option<&str>,
    error: Option<&str>,
    status: u16,
) -> Handled {
    let me = Me::of(call);
    let csrf = session::signin_token(&call.cfg.jwt_secret);
    let html = signin::render(
        &signin::SignInPage {
            enabled: call.cfg.dev_signin,
            csrf: &csrf,
            email,
            next: session::safe_next(next),
            error,
        },
        me.viewer(),
    );
    page(call, status, html, &[])
}

async fn signin_post(req: &mut Request, call: &Call) -> Handled {
    if !call.cfg.dev_signin {
        return Err(EdgeError::no_route());
    }
    let body = http::read_body(req, call.cfg.max_body_bytes).await?;
    let fields = std::str::from_utf8(&body)
        .ok()
        .and_then(form::parse)
        .ok_or_else(|| EdgeError::new(400, "bad_form", "the form could not be read"))?;
    let origin = http::header(req, "Origin");
    if !shared::csrf::same_origin(origin.as_deref(), &call.origin)
        || !session::signin_ok(
            &call.cfg.jwt_secret,
            form::get(&fields, shared::csrf::FIELD),
        )
    {
        return Err(EdgeError::csrf_refused());
    }
    call.gate(RouteClass::Api, None, &[]).await?;
    let raw = form::get(&fields, "email").unwrap_or_default();
    let next = form::get(&fields, "next");
    let email = match session::normalise_email(raw) {
        Ok(e) => e,
        Err(why) => return signin_page(call, raw, next, Some(why), 422),
    };
    let token = session::mint(&call.cfg.jwt_secret, &email, call.now_s()).or_internal("session")?;
    redirect(session::safe_next(next), &[session::set_session(&token)])
}

async fn signout(req: &mut Request, call: &Call) -> Handled {
    checked_form(req, call).await?;
    redirect("/", &session::clear_session())
}

// ------------------------------------------------------ the flash sale

/// The flash sale's landing page. An admitted user gets the pass as a
/// cookie and goes straight to the seat map.
pub(super) async fn sale(call: &Call, ctx: &Context, city: &str, id: &str) -> Handled {
    let me = Me::of(call);
    let details = read_show(call, ctx, city, id).await.ok();
    let (view, status, headers) = if me.user.is_some() {
        let (view, rl) = handlers::room(call, city, id, Mode::Status).await?;
        if view.state == State::Admitted {
            if let (Some(pass), Some(until)) = (&view.pass, &view.pass_expires_at) {
                let left = DateTime::parse_from_rfc3339(until)
                    .map(|t| (t.with_timezone(&Utc) - now(call)).num_seconds())
                    .unwrap_or(60);
                let cookie = session::set_pass(id, pass, left);
                return redirect(&format!("/c/{city}/shows/{id}"), &[cookie]);
            }
        }
        let h = handlers::status_headers(&view, rl);
        (Some(view), 200, h)
    } else {
        (None, 401, Vec::new())
    };
    let html = sale::render(
        &sale::SalePage {
            city,
            show: id,
            details: details.as_ref(),
            view: view.as_ref(),
            csrf: &me.csrf,
        },
        me.viewer(),
    );
    let mut resp = page(call, status, html, &[])?;
    for (n, v) in headers {
        resp.headers_mut().set(n, &v).or_internal("status header")?;
    }
    Ok(resp)
}
