//! One function per route: check, ask the gate (rate limit + deny list,
//! one Redis call), then serve from the cache, the waiting room or the
//! city's region core. The decisions are the pure modules'; this file
//! sequences I/O.

use std::rc::Rc;

use worker::{Context, Env, Headers, Method, Request, Response, Url};

use super::http::{self, now_ms, random_hex, OrInternal};
use super::region::{self, Upstream};
use super::upstash::Upstash;
use super::{cache, live, poll, state};
use crate::auth::{self, Reach, User};
use crate::catalog::{self, version_key, CacheKind, Freshness, Ttl, CACHE_HEADER};
use crate::config::{EdgeConfig, CATALOG};
use crate::controls::{self, Controls, NonEssential};
use crate::cross_shard;
use crate::error::EdgeError;
use crate::pages::session;
use crate::rate_limit::{
    decode_gate_reply, gate_keys_args, memory_keys, on_unavailable, outcome, Caller, ClassLimit,
    GateVerdict, Outcome, RouteClass,
};
use crate::routes::{self, Route};
use crate::scripts;
use crate::waiting_room::{self, Mode, Sale, SaleWrite, StatusView};
use shared::api::ShowSale;
use shared::token::Scope;

pub(super) type Hdrs = Vec<(&'static str, String)>;
pub(super) type Handled = Result<Response, EdgeError>;

/// Serves one request.
pub async fn handle(
    mut req: Request,
    env: Env,
    cfg: Rc<EdgeConfig>,
    ctx: &Context,
) -> worker::Result<Response> {
    let url = req.url()?;
    let method = req.method();
    // Classify by the method as sent: workers-rs maps any method it does
    // not know (PROPFIND, lower-case `get`) to GET.
    let raw_method = req.inner().method();
    // The city -> shard directory an operator set, if any (read at most
    // every few seconds per isolate).
    let cfg = super::directory::current(cfg, now_ms()).await;
    // The deny list and peak mode operators set (read as seldom).
    let controls = super::controls::current(&cfg, now_ms()).await;
    let route = routes::classify(&raw_method, url.path(), url.query(), &cfg.regions);
    // Everything outside the JSON API is a page: its errors are pages too.
    let browser = !url.path().starts_with("/v1/") && url.path() != "/healthz";
    let call = Call::new(&req, env, cfg, controls, &url, method);
    let result = match route {
        Ok(route) => dispatch(&mut req, &call, ctx, route).await,
        Err(e) => Err(e),
    };
    // An answer given before the body was read (401, 404, 413, 429, 503…):
    // workerd then closes the connection with the body's bytes unread, the
    // kernel turns that close into a reset, and the client often loses the
    // answer. Reading what is left first keeps the answer deliverable.
    http::drain_body(&mut req).await;
    match result {
        Ok(resp) => Ok(resp),
        // The console's own error page (its header, a way back to its
        // home), a path that is no console page included.
        Err(e) if crate::pages::ops::is_console_path(url.path()) => {
            super::ops::error_page(&call, &e)
        }
        Err(e) if browser => super::pages::error_page(&call, &e),
        Err(e) => http::error(&e),
    }
}

/// What every handler needs to know about the request.
pub(super) struct Call {
    pub(super) cfg: Rc<EdgeConfig>,
    /// The operators' run-time controls in force (`crate::controls`).
    pub(super) controls: Rc<Controls>,
    /// Bindings beyond the vars (the live seat map's Durable Objects).
    pub(super) env: Env,
    pub(super) now_ms: i64,
    pub(super) origin: String,
    pub(super) ip: String,
    bucket: String,
    /// The caller's token: `Authorization`, else the session cookie (on
    /// the JSON API only under `pages::session::api_token`'s rule).
    pub(super) token: Option<String>,
    /// The token came from the session cookie: forward it as
    /// `Authorization` (the region core reads no cookies).
    session_bearer: bool,
    /// The `Cookie` header.
    pub(super) cookies: Option<String>,
    pub(super) query: Option<String>,
    method: Method,
}

impl Call {
    fn new(
        req: &Request,
        env: Env,
        cfg: Rc<EdgeConfig>,
        controls: Rc<Controls>,
        url: &Url,
        method: Method,
    ) -> Self {
        let ip = auth::client_ip(
            &cfg.client_ip,
            http::header(req, "CF-Connecting-IP").as_deref(),
            http::header(req, "X-Forwarded-For").as_deref(),
        );
        let authorization = http::header(req, "Authorization");
        let cookies = http::header(req, "Cookie");
        let (token, session_bearer) = if url.path().starts_with("/v1/") {
            session::api_token(
                &cfg.jwt_secret,
                &req.inner().method(),
                authorization.as_deref(),
                cookies.as_deref(),
                http::header(req, session::CSRF_HEADER).as_deref(),
            )
        } else {
            // Pages: every state change is a form that checks its own
            // CSRF token (`wasm::pages`).
            let t = auth::token(authorization.as_deref())
                .or_else(|| session::session_cookie(cookies.as_deref()));
            (t.map(str::to_owned), false)
        };
        Self {
            cfg,
            controls,
            env,
            now_ms: now_ms(),
            origin: url.origin().ascii_serialization(),
            bucket: auth::ip_bucket(&ip),
            ip,
            token,
            session_bearer,
            cookies,
            query: url.query().map(str::to_owned),
            method,
        }
    }

    pub(super) fn now_s(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }

    fn caller<'a>(&'a self, user: Option<&'a str>) -> Caller<'a> {
        Caller {
            ip_bucket: &self.bucket,
            user,
        }
    }

    pub(super) async fn require_user(&self) -> Result<User, EdgeError> {
        let checked = auth::require_user(&self.cfg.jwt_secret, self.token.as_deref(), self.now_s());
        self.count_failure(checked).await
    }

    async fn optional_user(&self) -> Result<Option<User>, EdgeError> {
        let checked =
            auth::optional_user(&self.cfg.jwt_secret, self.token.as_deref(), self.now_s());
        self.count_failure(checked).await
    }

    /// A failed token check costs the client IP one `auth_failure`; past
    /// its limit the answer is 429 (with `Retry-After`) instead of 401.
    async fn count_failure<T>(&self, checked: Result<T, EdgeError>) -> Result<T, EdgeError> {
        if checked.is_err() {
            self.gate(RouteClass::AuthFailure, None, &[]).await?;
        }
        checked
    }

    pub(super) fn upstash(&self) -> Upstash<'_> {
        Upstash::new(&self.cfg.upstash)
    }

    /// The limits of `class` now: the configured ones, stricter in peak
    /// mode.
    fn limit(&self, class: RouteClass) -> ClassLimit {
        self.controls.peak.limit(class, self.cfg.limits.get(class))
    }

    /// 403 unless the caller is an operator whose grant carries `scope`
    /// and reaches `reach` (`auth::authorize`).
    fn authorize(&self, user: &User, scope: Scope, reach: Reach<'_>) -> Result<(), EdgeError> {
        auth::authorize(user, scope, reach)
    }

    /// The checks that need no Redis: the configured deny list, and
    /// refusals this isolate remembers.
    fn precheck(&self, class: RouteClass, caller: &Caller<'_>) -> Result<(), EdgeError> {
        if self.cfg.deny_list.denies(caller) {
            return Err(EdgeError::denied());
        }
        if let Some(entry) = self.controls.deny.denies(&self.ip, caller, self.now_ms) {
            worker::console_warn!("denied {} (entry {})", self.ip, entry.target);
            return Err(EdgeError::denied());
        }
        let keys = memory_keys(class, caller);
        match state::with(|s| s.refusals.check(&keys, self.now_ms)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies a gate verdict: the rate-limit headers, or the refusal
    /// (remembered in the isolate).
    fn apply(
        &self,
        class: RouteClass,
        limit: &ClassLimit,
        caller: &Caller<'_>,
        verdict: &GateVerdict,
    ) -> Result<Hdrs, EdgeError> {
        match outcome(class, limit, caller, verdict, self.now_ms) {
            Outcome::Allowed(h) => Ok(h),
            Outcome::Refused(e, remember) => {
                state::with(|s| {
                    for (key, r) in remember {
                        s.refusals.remember(key, r, self.now_ms);
                    }
                });
                Err(e)
            }
        }
    }

    /// The rate-limit gate of `class` for this caller, in one Redis call
    /// that also reads `context` keys. The values are `None` when Upstash
    /// could not be asked and the class fails open.
    pub(super) async fn gate(
        &self,
        class: RouteClass,
        user: Option<&str>,
        context: &[String],
    ) -> Result<(Hdrs, Option<Vec<Option<String>>>), EdgeError> {
        let caller = self.caller(user);
        let limit = &self.limit(class);
        self.precheck(class, &caller)?;
        let (keys, args) = gate_keys_args(class, limit, &caller, self.now_ms, context);
        let decoded = self
            .upstash()
            .eval(&scripts::GATE, &keys, &args)
            .await
            .and_then(|r| decode_gate_reply(&r, user.is_some()));
        match decoded {
            Ok((verdict, values)) => {
                let headers = self.apply(class, limit, &caller, &verdict)?;
                Ok((headers, Some(values)))
            }
            Err(e) => {
                worker::console_error!("rate-limit gate ({}): {e}", class.name());
                on_unavailable(limit)?;
                Ok((Vec::new(), None))
            }
        }
    }

    /// The catalog version under `key` from a gate's context value (and
    /// remembered for the isolate), or the last one remembered when the
    /// gate could not be asked.
    fn version(&self, key: &str, value: Option<Option<&str>>) -> i64 {
        match value {
            Some(v) => {
                let v = v.and_then(|s| s.parse().ok()).unwrap_or(0);
                state::with(|s| s.versions.insert(key.to_owned(), v));
                v
            }
            None => state::with(|s| s.versions.get(key).copied().unwrap_or(0)),
        }
    }
}

/// Adds the rate-limit headers to an error produced after the gate.
pub(super) fn with_limits(mut e: EdgeError, rl: &Hdrs) -> EdgeError {
    for (name, value) in rl {
        if !e.headers.iter().any(|(n, _)| n == name) {
            e.headers.push((name, value.clone()));
        }
    }
    e
}

async fn dispatch(req: &mut Request, call: &Call, ctx: &Context, route: Route) -> Handled {
    let upstream = route.upstream(call.query.as_deref());
    match route {
        Route::Health => {
            Ok(http::json(200, r#"{"status":"ok"}"#.into(), &[]).or_internal("health")?)
        }
        Route::Cities => {
            catalog_read(
                call,
                ctx,
                CacheKind::Cities,
                String::new(),
                "/v1/cities".into(),
                None,
            )
            .await
        }
        Route::CityShows { city, .. } => {
            let up = upstream.unwrap_or_default();
            catalog_read(call, ctx, CacheKind::Shows, city, up, None).await
        }
        Route::ShowRead { city, show, kind } => {
            let up = upstream.unwrap_or_default();
            catalog_read(call, ctx, kind, city, up, Some(show)).await
        }
        Route::SeatsSince { city, show, since } => {
            let (rl, _) = call.gate(RouteClass::Catalog, None, &[]).await?;
            let up = upstream.unwrap_or_default();
            poll::seats_since(req, call, &city, &show, since, &up, &rl)
                .await
                .map_err(|e| with_limits(e, &rl))
        }
        Route::Live { city, show } => {
            let (rl, _) = call.gate(RouteClass::Api, None, &[]).await?;
            live::viewer(req, call, &city, &show)
                .await
                .map_err(|e| with_limits(e, &rl))
        }
        Route::Hold { city, show } => {
            hold(req, call, &city, &show, &upstream.unwrap_or_default()).await
        }
        Route::Checkout { city, .. } => {
            checkout(req, call, ctx, &city, &upstream.unwrap_or_default()).await
        }
        Route::Operator { city, .. } => {
            operator(req, call, &city, &upstream.unwrap_or_default()).await
        }
        Route::Forward { city, .. } => {
            forward(req, call, &city, &upstream.unwrap_or_default()).await
        }
        Route::FindBooking { reference } => find_booking(req, call, &reference).await,
        Route::MyBookings => my_bookings(req, call).await,
        Route::GlobalRead { kind, .. } => {
            let up = upstream.unwrap_or_default();
            catalog_read(call, ctx, kind, CATALOG.to_owned(), up, None).await
        }
        Route::CatalogWrite => operator(req, call, CATALOG, &upstream.unwrap_or_default()).await,
        Route::Join { city, show } => room_json(call, &city, &show, Mode::Join).await,
        Route::Status { city, show } => room_json(call, &city, &show, Mode::Status).await,
        Route::Page { city, show } => super::pages::sale(call, ctx, &city, &show).await,
        Route::Pages(page) => super::pages::dispatch(req, call, ctx, page).await,
        Route::PageJoin { city, show } => {
            // A cookie-authenticated form post: our own origin, and the
            // token our page put in the form, or nothing happens.
            let body = http::read_body(req, call.cfg.max_body_bytes).await?;
            let body = std::str::from_utf8(&body).unwrap_or_default();
            let session = call.token.as_deref().unwrap_or_default();
            let token_ok = session::csrf_ok(
                &call.cfg.jwt_secret,
                session,
                shared::csrf::form_field(body, shared::csrf::FIELD),
            );
            let origin = http::header(req, "Origin");
            if !token_ok || !shared::csrf::same_origin(origin.as_deref(), &call.origin) {
                return Err(EdgeError::csrf_refused());
            }
            room(call, &city, &show, Mode::Join).await?;
            let location = format!("/c/{city}/sales/{show}");
            Ok(Response::builder()
                .with_status(303)
                .with_header("Location", &location)
                .and_then(|b| b.with_header("Cache-Control", "no-store"))
                .or_internal("redirect")?
                .empty())
        }
        Route::SaleConfig { show, write } => sale_config(req, call, &show, write).await,
        Route::Directory { write } => directory(req, call, write).await,
        Route::EdgeAudit { query } => {
            let user = call.require_user().await?;
            call.authorize(&user, Scope::Read, Reach::Anywhere)?;
            let (rl, _) = call.gate(RouteClass::Operator, Some(&user.id), &[]).await?;
            super::controls::audit(call, &query, &rl).await
        }
        Route::EdgeControl { control, write } => {
            let user = call.require_user().await?;
            if write {
                call.authorize(&user, Scope::Sales, Reach::Everywhere)?;
            } else {
                call.authorize(&user, Scope::Read, Reach::Anywhere)?;
            }
            let (rl, _) = call.gate(RouteClass::Operator, Some(&user.id), &[]).await?;
            super::controls::serve(req, call, &user, control, write, &rl).await
        }
    }
}

// ---------------------------------------------------------------- catalog

/// What a catalog fetch gives.
enum Fetched {
    /// A 200, stored in the cache at `stored_at_ms`.
    Stored {
        content_type: String,
        body: Vec<u8>,
        stored_at_ms: i64,
    },
    /// Only some regions answered the city list: served, not stored.
    Partial(Vec<u8>),
    /// Not a 200 (404 unknown show, …): passed through, not stored.
    Passthrough(Upstream),
}

/// Everything a catalog fetch needs, owned, so a stale copy can be
/// refreshed after the response has gone (`ctx.wait_until`).
#[derive(Clone)]
struct CatalogJob {
    cfg: Rc<EdgeConfig>,
    kind: CacheKind,
    city: String,
    show: Option<String>,
    upstream: String,
    key: String,
    ttl: Ttl,
    origin: String,
    version: i64,
}

async fn fetch_and_store(job: &CatalogJob) -> Result<Fetched, EdgeError> {
    let accept = || -> Result<Headers, EdgeError> {
        let h = Headers::new();
        h.set("Accept", "application/json")
            .or_internal("accept header")?;
        Ok(h)
    };
    let (content_type, body) = if job.kind == CacheKind::Cities {
        let regions = job.cfg.regions.distinct();
        let calls = regions.iter().map(|(_, cities)| {
            let city = cities[0];
            let cfg = &job.cfg;
            async move {
                let h = accept()?;
                region::call(cfg, city, Method::Get, "/v1/cities", h, None).await
            }
        });
        let answers = futures::future::join_all(calls).await;
        let mut parts = Vec::new();
        let mut first_error = None;
        for ((_, cities), answer) in regions.iter().zip(answers) {
            match answer {
                Ok(up) if up.status == 200 => parts.push((cities.as_slice(), up.body)),
                Ok(up) => {
                    worker::console_warn!("cities: a region answered {}", up.status);
                    first_error.get_or_insert_with(|| EdgeError::region_unavailable(1));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if parts.is_empty() {
            return Err(first_error.unwrap_or_else(|| EdgeError::region_unavailable(1)));
        }
        let merged = catalog::merge_cities(parts.iter().map(|(c, b)| (*c, b.as_slice())))
            .or_internal("cities from a region")?;
        let body = serde_json::to_vec(&merged).or_internal("cities")?;
        if first_error.is_some() {
            return Ok(Fetched::Partial(body));
        }
        ("application/json".to_owned(), body)
    } else {
        let up = region::call(
            &job.cfg,
            &job.city,
            Method::Get,
            &job.upstream,
            accept()?,
            None,
        )
        .await?;
        if up.status != 200 {
            return Ok(Fetched::Passthrough(up));
        }
        if matches!(job.kind, CacheKind::Availability | CacheKind::Seats) {
            note_sold_out(job, &up.body).await;
        }
        let ct = up
            .header("Content-Type")
            .unwrap_or("application/json")
            .to_owned();
        (ct, up.body)
    };
    let stored_at_ms = now_ms();
    cache::put(&job.key, job.ttl, &content_type, body.clone(), stored_at_ms).await;
    Ok(Fetched::Stored {
        content_type,
        body,
        stored_at_ms,
    })
}

/// Availability and seat-map answers tell whether a show is sold out:
/// remember it briefly (isolate and location cache) so holds for it get
/// `409 sold_out` without reaching the region.
async fn note_sold_out(job: &CatalogJob, body: &[u8]) {
    let Some(show) = &job.show else { return };
    let memo = format!("{}/{show}", job.city);
    let key = catalog::sold_out_key(&job.origin, job.version, &job.city, show);
    let secs = job.cfg.cache_ttls.sold_out_s;
    let now = now_ms();
    match catalog::sold_out(body) {
        Some(true) => {
            state::with(|s| s.sold_out.insert(memo, now + i64::from(secs) * 1000));
            cache::put_flag(&key, secs, now).await;
        }
        Some(false) => {
            let was = state::with(|s| s.sold_out.remove(&memo)).is_some();
            if was || cache::flag(&key, secs, now).await {
                cache::delete(&key).await;
            }
        }
        None => {}
    }
}

fn cached_response(c: cache::Cached, ttl: Ttl, status: &str, now: i64, rl: &Hdrs) -> Handled {
    let mut h: Vec<(&str, String)> = vec![
        (
            "Cache-Control",
            catalog::client_cache_control(ttl, c.stored_at_ms, now),
        ),
        ("Age", catalog::age_secs(c.stored_at_ms, now).to_string()),
        (CACHE_HEADER, status.to_owned()),
    ];
    h.extend(rl.iter().map(|(n, v)| (*n, v.clone())));
    http::respond(200, &c.content_type, c.body, &h).or_internal("cached response")
}

pub(super) async fn catalog_read(
    call: &Call,
    ctx: &Context,
    kind: CacheKind,
    city: String,
    upstream: String,
    show: Option<String>,
) -> Handled {
    // Catalog reads are public: a bad token is ignored, not refused.
    // A page view: a bad cookie just shows the signed-out page (not counted).
    let user = auth::optional_user(&call.cfg.jwt_secret, call.token.as_deref(), call.now_s())
        .ok()
        .flatten();
    // Peak mode: browsing gives way to buying (`crate::controls`). Paused
    // reads cost no Redis call; a denied client is still told so.
    let peak = call.controls.peak;
    let paused = peak.enabled && !controls::essential(kind);
    if paused && peak.non_essential == NonEssential::Off {
        let caller = call.caller(user.as_ref().map(|u| u.id.as_str()));
        call.precheck(RouteClass::Catalog, &caller)?;
        return Err(controls::peak_refusal(&peak));
    }
    let vkey = version_key((kind != CacheKind::Cities).then_some(city.as_str()));
    let (rl, values) = call
        .gate(
            RouteClass::Catalog,
            user.as_ref().map(|u| u.id.as_str()),
            std::slice::from_ref(&vkey),
        )
        .await?;
    let version = call.version(&vkey, values.as_ref().map(|v| v[0].as_deref()));
    let ttl = call.cfg.cache_ttls.get(kind);
    let key_city = if kind == CacheKind::Cities {
        "all"
    } else {
        city.as_str()
    };
    let job = CatalogJob {
        cfg: call.cfg.clone(),
        key: catalog::cache_key(&call.origin, version, kind, key_city, &upstream),
        kind,
        city,
        show,
        upstream,
        ttl,
        origin: call.origin.clone(),
        version,
    };
    let now = call.now_ms;
    let cached = cache::get(&job.key).await;
    if paused {
        // Whatever the copy's age; none cached: paused like `off`.
        return match cached {
            Some(c) => cached_response(c, ttl, "STALE", now, &rl),
            None => Err(with_limits(controls::peak_refusal(&peak), &rl)),
        };
    }
    let mut fallback = None;
    if let Some(c) = cached {
        match catalog::freshness(c.stored_at_ms, now, ttl) {
            Freshness::Fresh => return cached_response(c, ttl, "HIT", now, &rl),
            Freshness::Stale => {
                refresh_in_background(ctx, &job);
                return cached_response(c, ttl, "STALE", now, &rl);
            }
            Freshness::Expired => fallback = Some(c),
        }
    }
    miss(&job, fallback, now, &rl).await
}

/// A refresh of a stale entry, after the response (one per key per
/// isolate at a time).
fn refresh_in_background(ctx: &Context, job: &CatalogJob) {
    let first = state::with(|s| s.refreshing.insert(job.key.clone()));
    if first {
        let job = job.clone();
        ctx.wait_until(async move {
            if let Err(e) = fetch_and_store(&job).await {
                worker::console_warn!("background refresh of {}: {}", job.key, e.message);
            }
            state::with(|s| s.refreshing.remove(&job.key));
        });
    }
}

/// Not in the cache (or expired): fetched from the region and stored; an
/// expired copy (`fallback`) answers if the region is down.
async fn miss(job: &CatalogJob, fallback: Option<cache::Cached>, now: i64, rl: &Hdrs) -> Handled {
    let ttl = job.ttl;
    let mut h: Vec<(&str, String)> = rl.iter().map(|(n, v)| (*n, v.clone())).collect();
    h.push((CACHE_HEADER, "MISS".to_owned()));
    match fetch_and_store(job).await {
        Ok(Fetched::Stored {
            content_type,
            body,
            stored_at_ms,
        }) => {
            h.push((
                "Cache-Control",
                catalog::client_cache_control(ttl, stored_at_ms, stored_at_ms),
            ));
            http::respond(200, &content_type, body, &h).or_internal("catalog response")
        }
        Ok(Fetched::Partial(body)) => {
            h.push(("X-Edge-Partial", "true".to_owned()));
            http::json(200, String::from_utf8_lossy(&body).into_owned(), &h).or_internal("cities")
        }
        Ok(Fetched::Passthrough(up)) => up.into_response(&h).or_internal("region response"),
        // The region is down: an old copy beats an error (stale-if-error).
        Err(e) => match fallback {
            Some(c) => cached_response(c, ttl, "STALE", now, rl),
            None => Err(with_limits(e, rl)),
        },
    }
}

// ---------------------------------------------------------- region calls

/// Forwards the request (with `body`) to the city's region core.
async fn to_region(
    req: &Request,
    call: &Call,
    city: &str,
    upstream: &str,
    body: &[u8],
) -> Result<Upstream, EdgeError> {
    to_region_with(req, call, city, upstream, body, &[]).await
}

/// [`to_region`] with `extra` headers set (an admission pass from its
/// cookie).
async fn to_region_with(
    req: &Request,
    call: &Call,
    city: &str,
    upstream: &str,
    body: &[u8],
    extra: &[(&str, String)],
) -> Result<Upstream, EdgeError> {
    let headers = upstream_headers(req, call, extra)?;
    region::call(
        &call.cfg,
        city,
        call.method.clone(),
        upstream,
        headers,
        Some(body),
    )
    .await
}

/// The client's headers to pass on (its session as a bearer token when
/// it signed in with the cookie), plus `extra`.
fn upstream_headers(
    req: &Request,
    call: &Call,
    extra: &[(&str, String)],
) -> Result<worker::Headers, EdgeError> {
    let headers = region::forward_headers(req, &call.ip)?;
    if call.session_bearer {
        if let Some(t) = &call.token {
            headers
                .set("Authorization", &format!("Bearer {t}"))
                .or_internal("session header")?;
        }
    }
    for (name, value) in extra {
        headers.set(name, value).or_internal("extra header")?;
    }
    Ok(headers)
}

/// Reads a body the edge passes on: bounded, and JSON when not empty.
async fn json_body(req: &mut Request, call: &Call) -> Result<Vec<u8>, EdgeError> {
    let body = http::read_body(req, call.cfg.max_body_bytes).await?;
    auth::check_json(&body)?;
    Ok(body)
}

fn declared_length_ok(req: &Request, call: &Call) -> Result<(), EdgeError> {
    auth::check_declared_length(
        http::header(req, "Content-Length").as_deref(),
        call.cfg.max_body_bytes,
    )
}

async fn hold(req: &mut Request, call: &Call, city: &str, show: &str, upstream: &str) -> Handled {
    let user = call.require_user().await?;
    declared_length_ok(req, call)?;
    let context = [version_key(Some(city)), waiting_room::config_key(show)];
    let (rl, values) = call
        .gate(RouteClass::Hold, Some(&user.id), &context)
        .await?;
    let checks = async {
        let body = json_body(req, call).await?;
        let version = call.version(&context[0], values.as_ref().map(|v| v[0].as_deref()));
        let sale = match &values {
            Some(v) => {
                let sale = parse_sale(v[1].as_deref());
                state::with(|s| s.remember_sale(show, sale.clone(), call.now_ms));
                sale
            }
            // Upstash unreachable (and holds set to fail open): what this
            // isolate knows; the region core checks the pass anyway.
            None => state::with(|s| s.sale(show, call.now_ms)).flatten(),
        };
        if sold_out(call, city, show, version).await {
            return Err(EdgeError::sold_out());
        }
        // A browser's pass is in its cookie (`pages::session`), an app's
        // in the header.
        let cookie_pass =
            session::cookie(call.cookies.as_deref(), &session::pass_cookie_name(show))
                .map(str::to_owned);
        let header_pass = http::header(req, "Admission-Pass");
        let extra: Vec<(&str, String)> = match (&header_pass, &cookie_pass) {
            (None, Some(p)) => vec![("Admission-Pass", p.clone())],
            _ => Vec::new(),
        };
        if let Some(sale) = sale.filter(|s| s.city == city) {
            let pass = header_pass
                .or(cookie_pass)
                .ok_or_else(EdgeError::pass_required)?;
            shared::admission::check(
                &call.cfg.admission_keys(),
                &pass,
                &user.id,
                &sale.config.sale,
                call.now_s(),
            )
            .map_err(EdgeError::pass)?;
        }
        to_region_with(req, call, city, upstream, &body, &extra).await
    };
    match checks.await {
        Ok(up) => up.into_response(&rl).or_internal("hold response"),
        Err(e) => Err(with_limits(e, &rl)),
    }
}

async fn sold_out(call: &Call, city: &str, show: &str, version: i64) -> bool {
    let memo = format!("{city}/{show}");
    if state::with(|s| s.is_sold_out(&memo, call.now_ms)) {
        return true;
    }
    let key = catalog::sold_out_key(&call.origin, version, city, show);
    cache::flag(&key, call.cfg.cache_ttls.sold_out_s, call.now_ms).await
}

fn parse_sale(stored: Option<&str>) -> Option<Rc<Sale>> {
    let s = stored?;
    match serde_json::from_str::<Sale>(s) {
        Ok(sale) => Some(Rc::new(sale)),
        Err(e) => {
            worker::console_error!("a stored sale does not parse: {e}");
            None
        }
    }
}

async fn checkout(
    req: &mut Request,
    call: &Call,
    ctx: &Context,
    city: &str,
    upstream: &str,
) -> Handled {
    let user = call.require_user().await?;
    declared_length_ok(req, call)?;
    let (rl, _) = call.gate(RouteClass::Checkout, Some(&user.id), &[]).await?;
    let up = async {
        let body = json_body(req, call).await?;
        // A payment: the region answers after the gateway.
        let headers = upstream_headers(req, call, &[])?;
        region::pay(
            &call.cfg,
            city,
            call.method.clone(),
            upstream,
            headers,
            Some(&body),
        )
        .await
    }
    .await
    .map_err(|e| with_limits(e, &rl))?;
    report_completion(call, ctx, &up);
    up.into_response(&rl).or_internal("checkout response")
}

/// The region reports the pass of a hold that became a booking: its
/// waiting-room place goes to the next user (once per pass).
pub(super) fn report_completion(call: &Call, ctx: &Context, up: &Upstream) {
    if up.status == 201 {
        if let Some((keys, args)) = up
            .header("Admission-Completed")
            .and_then(waiting_room::completion)
        {
            let cfg = call.cfg.clone();
            ctx.wait_until(async move {
                if let Err(e) = Upstash::new(&cfg.upstash)
                    .eval(&scripts::COMPLETE, &keys, &args)
                    .await
                {
                    worker::console_error!("pass completion: {e}");
                }
            });
        }
    }
}

async fn operator(req: &mut Request, call: &Call, city: &str, upstream: &str) -> Handled {
    let user = call.require_user().await?;
    // Defence in depth: an operator token that does not reach the city
    // stops here (the region checks scope and city again).
    if user.operator && city != CATALOG && !user.grant.covers_city(city) {
        return Err(auth::authorize(&user, Scope::Read, Reach::City(city))
            .err()
            .unwrap_or_else(EdgeError::forbidden));
    }
    declared_length_ok(req, call)?;
    let (rl, _) = call.gate(RouteClass::Operator, Some(&user.id), &[]).await?;
    let up = async {
        let body = json_body(req, call).await?;
        to_region(req, call, city, upstream, &body).await
    }
    .await
    .map_err(|e| with_limits(e, &rl))?;
    let write = !matches!(call.method, Method::Get | Method::Head);
    if write && (200..300).contains(&up.status) {
        // A show's sale changed at the region: the edge's copy goes, and
        // the next waiting-room request reads the new one from there.
        if let Some(show) = waiting_room::sale_changed_by(upstream) {
            forget_sale(call, &show).await;
        }
        // A catalog change: new versions make the city's cached reads (and
        // the city list) stale at once, everywhere. A title created through
        // a city lands in the global catalog: its titles and searches too.
        let mut keys = vec![version_key(Some(city)), version_key(None)];
        if city != CATALOG && upstream.starts_with("/v1/operator/movies") {
            keys.push(version_key(Some(CATALOG)));
        }
        let upstash = call.upstash();
        let bump: Vec<Vec<String>> = keys
            .iter()
            .map(|k| vec!["INCR".to_owned(), upstash.key(k)])
            .collect();
        match upstash.pipeline(&bump).await {
            Ok(answers) => state::with(|s| {
                for (key, answer) in keys.iter().zip(answers) {
                    match answer.and_then(|r| r.int()) {
                        Ok(v) => {
                            s.versions.insert(key.clone(), v);
                        }
                        Err(e) => worker::console_error!("catalog version bump of {key}: {e}"),
                    }
                }
            }),
            Err(e) => worker::console_error!("catalog version bump failed: {e}"),
        }
    }
    up.into_response(&rl).or_internal("operator response")
}

async fn forward(req: &mut Request, call: &Call, city: &str, upstream: &str) -> Handled {
    let user = call.optional_user().await?;
    let user_id = user.as_ref().map(|u| u.id.as_str());
    let websocket =
        http::header(req, "Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !websocket {
        declared_length_ok(req, call)?;
    }
    let (rl, _) = call.gate(RouteClass::Api, user_id, &[]).await?;
    if websocket {
        return region::websocket(&call.cfg, city, req, upstream)
            .await
            .map_err(|e| with_limits(e, &rl));
    }
    let up = async {
        let body = json_body(req, call).await?;
        to_region(req, call, city, upstream, &body).await
    }
    .await
    .map_err(|e| with_limits(e, &rl))?;
    up.into_response(&rl).or_internal("region response")
}

// ------------------------------------------------------------ across shards

/// `path` asked of every shard (through the first city of each) as the
/// caller, all at once, each with the region timeout.
async fn every_shard<'a>(
    req: &Request,
    call: &'a Call,
    path: &str,
) -> Vec<(Vec<&'a str>, Option<Upstream>)> {
    let shards = call.cfg.regions.distinct();
    let calls = shards.iter().map(|(_, cities)| async move {
        let up = to_region(req, call, cities[0], path, &[]).await.ok();
        (cities.clone(), up)
    });
    futures::future::join_all(calls).await
}

fn shard_answers<'a>(
    answers: &'a [(Vec<&'a str>, Option<Upstream>)],
) -> Vec<cross_shard::ShardAnswer<'a>> {
    answers
        .iter()
        .map(|(cities, up)| cross_shard::ShardAnswer {
            cities: cities.as_slice(),
            status: up.as_ref().map(|u| u.status),
            body: up.as_ref().map_or(&[][..], |u| u.body.as_slice()),
        })
        .collect()
}

/// `GET /v1/bookings/{number or id}`: the caller's booking from whichever
/// shard has it, with the city to act on it through (`X-Booking-City`).
async fn find_booking(req: &Request, call: &Call, reference: &str) -> Handled {
    let user = call.require_user().await?;
    let (rl, _) = call.gate(RouteClass::Api, Some(&user.id), &[]).await?;
    let answers = every_shard(req, call, &format!("/v1/bookings/{reference}")).await;
    match cross_shard::find_booking(&shard_answers(&answers)) {
        cross_shard::Found::Booking { city, body } => {
            let mut headers = rl.clone();
            headers.push(("X-Booking-City", city));
            headers.push(("Cache-Control", "private, no-store".into()));
            http::json(200, body.to_string(), &headers).or_internal("booking")
        }
        cross_shard::Found::NotFound => Err(with_limits(
            EdgeError::new(
                404,
                "unknown_booking",
                format!("no booking {reference} of yours"),
            ),
            &rl,
        )),
        cross_shard::Found::Unknown { unavailable } => Err(with_limits(
            EdgeError::new(
                503,
                "region_unavailable",
                format!(
                    "not found in the shards that answered; these did not: {}",
                    unavailable.join(", ")
                ),
            )
            .retry_after(1),
            &rl,
        )),
    }
}

/// `GET /v1/me/bookings`: the caller's bookings from every shard, newest
/// first, `partial` when a shard did not answer in time.
async fn my_bookings(req: &Request, call: &Call) -> Handled {
    let user = call.require_user().await?;
    let (rl, _) = call.gate(RouteClass::Api, Some(&user.id), &[]).await?;
    let answers = every_shard(req, call, "/v1/bookings?limit=200").await;
    let merged = cross_shard::merge_bookings(&shard_answers(&answers));
    let mut headers = rl.clone();
    headers.push(("Cache-Control", "private, no-store".into()));
    http::json(200, merged.to_string(), &headers).or_internal("bookings")
}

// ----------------------------------------------------------- waiting room

/// The sale behind a waiting-room request: from isolate memory, or read
/// by the gate itself (then the rate-limit cost is already spent).
async fn room_sale(
    call: &Call,
    city: &str,
    class: RouteClass,
    user: &str,
    show: &str,
) -> Result<(Rc<Sale>, Hdrs, bool), EdgeError> {
    match state::with(|s| s.sale(show, call.now_ms)) {
        Some(Some(sale)) => Ok((sale, Vec::new(), false)),
        Some(None) => Err(EdgeError::unknown_sale()),
        None => {
            let (rl, values) = call
                .gate(class, Some(user), &[waiting_room::config_key(show)])
                .await?;
            let Some(values) = values else {
                return Err(EdgeError::edge_state_unavailable());
            };
            let sale = match parse_sale(values[0].as_deref()) {
                Some(sale) => {
                    state::with(|s| s.remember_sale(show, Some(sale.clone()), call.now_ms));
                    Some(sale)
                }
                // The edge's copy has expired (or was dropped by a
                // change): the region's is the sale.
                None => pull_sale(call, city, show)
                    .await
                    .map_err(|e| with_limits(e, &rl))?,
            };
            match sale {
                Some(sale) => Ok((sale, rl, true)),
                None => Err(with_limits(EdgeError::unknown_sale(), &rl)),
            }
        }
    }
}

/// A join or status: one `ROOM` script call (gate included).
pub(super) async fn room(
    call: &Call,
    city: &str,
    show: &str,
    mode: Mode,
) -> Result<(StatusView, Hdrs), EdgeError> {
    let user = call.require_user().await?;
    let class = match mode {
        Mode::Join => RouteClass::Join,
        Mode::Status => RouteClass::Status,
    };
    let caller = call.caller(Some(&user.id));
    call.precheck(class, &caller)?;
    let (sale, _, spent) = room_sale(call, city, class, &user.id, show).await?;
    if sale.city != city {
        return Err(EdgeError::unknown_sale());
    }
    let mut limit = call.limit(class);
    if spent {
        // The gate already charged this request when it read the sale.
        limit.cost = 0;
    }
    let (mut keys, mut args) = gate_keys_args(class, &limit, &caller, call.now_ms, &[]);
    let seed = random_hex(32).or_internal("seed")?;
    let pid = waiting_room::pass_id(show, &random_hex(12).or_internal("pass id")?);
    keys.extend(waiting_room::room_keys(show));
    args.extend(waiting_room::room_args(
        mode,
        &user.id,
        &sale,
        call.now_ms,
        &seed,
        &pid,
    ));
    let reply = call.upstash().eval(&scripts::ROOM, &keys, &args).await;
    let (verdict, reply) = reply
        .and_then(|r| waiting_room::decode_room_reply(&r))
        .map_err(|e| {
            worker::console_error!("waiting room: {e}");
            EdgeError::edge_state_unavailable()
        })?;
    let rl = call.apply(class, &limit, &caller, &verdict)?;
    let reply = reply.ok_or_else(EdgeError::internal)?;
    let view = waiting_room::status_view(
        &sale,
        &user.id,
        &reply,
        call.now_ms,
        &call.cfg.admission_key,
    );
    Ok((view, rl))
}

pub(super) fn status_headers(view: &StatusView, rl: Hdrs) -> Hdrs {
    let mut h = rl;
    if view.refresh_after_s > 0 {
        h.push(("Retry-After", view.refresh_after_s.to_string()));
    }
    h
}

async fn room_json(call: &Call, city: &str, show: &str, mode: Mode) -> Handled {
    let (view, rl) = room(call, city, show, mode).await?;
    let body = serde_json::to_string(&view).or_internal("status")?;
    let h = status_headers(&view, rl);
    let h: Vec<(&str, String)> = h.into_iter().collect();
    http::json(200, body, &h).or_internal("status response")
}

/// `GET`/`PUT /v1/operator/directory` (operator token).
async fn directory(req: &mut Request, call: &Call, write: bool) -> Handled {
    let user = call.require_user().await?;
    // The directory routes every city: changing it is edge-wide.
    if write {
        call.authorize(&user, Scope::Sales, Reach::Everywhere)?;
    } else {
        call.authorize(&user, Scope::Read, Reach::Anywhere)?;
    }
    let (rl, _) = call.gate(RouteClass::Operator, Some(&user.id), &[]).await?;
    let regions = if write {
        let body = http::read_body(req, call.cfg.max_body_bytes).await?;
        super::directory::replace(&call.cfg, &body, &user.id, call.now_ms)
            .await
            .map_err(|e| with_limits(e, &rl))?
    } else {
        call.cfg.regions.to_json()
    };
    super::directory::answer(regions, &rl)
}

// ------------------------------------------------------------ sale config

fn sale_unavailable(e: crate::upstash::UpstashError) -> EdgeError {
    worker::console_error!("sale config: {e}");
    EdgeError::edge_state_unavailable()
}

/// Keeps the edge's copy of a sale (derived from the region's) in Upstash
/// for `waiting_room::SALE_CACHE_MS`, the show's city as long as the
/// room's keys, and in this isolate.
async fn cache_sale(call: &Call, sale: &Rc<Sale>) -> Result<(), EdgeError> {
    let upstash = call.upstash();
    let show = &sale.config.sale;
    let stored = serde_json::to_string(&**sale).or_internal("sale")?;
    let answers = upstash
        .pipeline(&[
            vec![
                "SET".to_owned(),
                upstash.key(&waiting_room::config_key(show)),
                stored,
                "PX".to_owned(),
                waiting_room::SALE_CACHE_MS.to_string(),
            ],
            vec![
                "SET".to_owned(),
                upstash.key(&waiting_room::city_key(show)),
                sale.city.clone(),
                "PX".to_owned(),
                waiting_room::keep_ms(&sale.config, call.now_ms).to_string(),
            ],
        ])
        .await
        .map_err(sale_unavailable)?;
    for a in answers {
        a.map_err(sale_unavailable)?;
    }
    state::with(|s| s.remember_sale(show, Some(sale.clone()), call.now_ms));
    Ok(())
}

/// Drops the edge's copy of a sale (Upstash and this isolate): the next
/// waiting-room request reads the region's.
async fn forget_sale(call: &Call, show: &str) {
    let upstash = call.upstash();
    let del = [
        "DEL".to_owned(),
        upstash.key(&waiting_room::config_key(show)),
    ];
    if let Err(e) = upstash.command(&del).await {
        worker::console_error!("the edge's copy of sale {show} was not dropped: {e}");
    }
    state::with(|s| s.sales.remove(show));
}

/// The sale of `show` as the region of `city` stores it, and the room
/// derived from it (cached): `None` when the show is not in a flash sale
/// (or unknown there).
async fn pull_sale(call: &Call, city: &str, show: &str) -> Result<Option<Rc<Sale>>, EdgeError> {
    let path = format!("/v1/shows/{show}/sale");
    let up = region::call(&call.cfg, city, Method::Get, &path, Headers::new(), None).await?;
    let sale = match up.status {
        200 => {
            let stored: ShowSale = serde_json::from_slice(&up.body).or_internal("region sale")?;
            waiting_room::sale_from_region(&stored).map(Rc::new)
        }
        404 => None,
        s => {
            worker::console_warn!("sale of {show}: the region answered {s}");
            return Err(EdgeError::region_unavailable(1));
        }
    };
    match &sale {
        Some(sale) => cache_sale(call, sale).await?,
        None => state::with(|s| s.remember_sale(show, None, call.now_ms)),
    }
    Ok(sale)
}

fn open_view(show: &str, city: &str) -> String {
    serde_json::json!({ "sale": show, "city": city, "sale_mode": "open" }).to_string()
}

/// Stores `w` as the sale of `show`: at the show's region first (mode and
/// waiting room together, audited there: the one copy, ADR 0023), then
/// the edge's room derived from the region's answer (cached, or dropped
/// for an open sale). `headers` carry the operator's token, whose grant
/// the caller has checked (scope `sales`, the sale's city) and the region
/// checks again. `Ok(Err(up))` is the region's refusal (404 unknown
/// show, 403, 422) as it answered; `Ok(Ok(json))` the sale's view. Behind
/// `PUT /v1/operator/sales/{show}` and the console's sale form.
pub(super) async fn store_sale(
    call: &Call,
    show: &str,
    w: &SaleWrite,
    headers: Headers,
    by: &str,
) -> Result<Result<String, Upstream>, EdgeError> {
    headers
        .set("Content-Type", "application/json")
        .or_internal("content type")?;
    let set = serde_json::to_vec(&w.set).or_internal("sale")?;
    let path = format!("/v1/operator/shows/{show}/sale");
    let up = region::call(&call.cfg, &w.city, Method::Put, &path, headers, Some(&set)).await?;
    if up.status != 200 {
        return Ok(Err(up));
    }
    let stored: ShowSale = serde_json::from_slice(&up.body).or_internal("region sale")?;
    let body = match waiting_room::sale_from_region(&stored) {
        Some(sale) => {
            let sale = Rc::new(sale);
            cache_sale(call, &sale).await?;
            let upstash = call.upstash();
            let seed = upstash
                .command(&["GET".to_owned(), upstash.key(&waiting_room::seed_key(show))])
                .await
                .map_err(sale_unavailable)?;
            let seed = seed.opt_str().ok().flatten().map(str::to_owned);
            serde_json::to_string(&sale.view(seed.as_deref())).or_internal("sale view")?
        }
        None => {
            forget_sale(call, show).await;
            open_view(show, &stored.city)
        }
    };
    worker::console_log!(
        "sale {show} set to {} by {by:?}",
        stored.sale_mode.as_db_str()
    );
    Ok(Ok(body))
}

/// `GET`/`PUT /v1/operator/sales/{show}`. A `PUT` is stored by the show's
/// region (mode and waiting room together, audited there: the one copy);
/// the edge's room is then derived from the region's answer. A `GET`
/// reads the edge's copy, or the region's when the copy has expired.
async fn sale_config(req: &mut Request, call: &Call, show: &str, write: bool) -> Handled {
    let user = call.require_user().await?;
    if !user.operator {
        return Err(EdgeError::forbidden());
    }
    let (rl, _) = call.gate(RouteClass::Operator, Some(&user.id), &[]).await?;
    let upstash = call.upstash();
    let done = async {
        if write {
            let body = http::read_body(req, call.cfg.max_body_bytes).await?;
            let w = waiting_room::parse_sale(&body, &call.cfg.regions)?;
            call.authorize(&user, Scope::Sales, Reach::City(&w.city))?;
            let headers = upstream_headers(req, call, &[])?;
            return store_sale(call, show, &w, headers, &user.id).await;
        }
        call.authorize(&user, Scope::Read, Reach::Anywhere)?;
        let answers = upstash
            .pipeline(&[
                vec![
                    "GET".to_owned(),
                    upstash.key(&waiting_room::config_key(show)),
                ],
                vec!["GET".to_owned(), upstash.key(&waiting_room::seed_key(show))],
                vec!["GET".to_owned(), upstash.key(&waiting_room::city_key(show))],
            ])
            .await
            .map_err(sale_unavailable)?;
        let mut answers = answers.into_iter();
        let mut next = || {
            answers
                .next()
                .transpose()
                .map_err(sale_unavailable)
                .map(|r| r.and_then(|r| r.opt_str().ok().flatten().map(str::to_owned)))
        };
        let (stored, seed, city) = (next()?, next()?, next()?);
        let sale = match (parse_sale(stored.as_deref()), city) {
            (Some(sale), _) => Some(sale),
            (None, Some(city)) if call.cfg.regions.contains(&city) => {
                match pull_sale(call, &city, show).await? {
                    Some(sale) => Some(sale),
                    None => {
                        call.authorize(&user, Scope::Read, Reach::City(&city))?;
                        return Ok(Ok(open_view(show, &city)));
                    }
                }
            }
            _ => None,
        };
        let sale = sale.ok_or_else(EdgeError::unknown_sale)?;
        call.authorize(&user, Scope::Read, Reach::City(&sale.city))?;
        Ok(Ok(
            serde_json::to_string(&sale.view(seed.as_deref())).or_internal("sale view")?
        ))
    };
    match done.await {
        Ok(Ok(body)) => http::json(200, body, &rl).or_internal("sale response"),
        Ok(Err(up)) => up.into_response(&rl).or_internal("region response"),
        Err(e) => Err(with_limits(e, &rl)),
    }
}
