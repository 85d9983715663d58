//! The operator console's glue (`crate::pages::ops`): read the console
//! session, check the grant covers the page's city, call the city's
//! region core with the operator's token as `Authorization: Bearer`,
//! render. Every form post checks `Origin` and the console's CSRF token
//! before anything else. Every error, the region's included, is a
//! console page with a readable message (never JSON, never a buyer page).

use chrono::NaiveDate;
use shared::api::{City, SeatMap, Show, ShowList, ShowSale};
use shared::token::Scope;
use worker::{Context, Headers, Method, Request, Response};

use super::handlers::{self, Call, Handled};
use super::http::{self, OrInternal};
use super::pages::{city_list, page, redirect, today};
use super::region::{self, Upstream};
use crate::error::EdgeError;
use crate::pages::ops::data::{
    region_message, BookingLookup, Integrity, MailList, Occupancy, RefundList, Resent, SalesReport,
    ShardStatus, ShowBookings,
};
use crate::pages::ops::health::{self, HealthPage};
use crate::pages::ops::mail::{self, MailPage};
use crate::pages::ops::render::{self, Console, ShowPage};
use crate::pages::ops::sale::{self, SaleForm};
use crate::pages::ops::session::{self, Operator, OPS_COOKIE};
use crate::pages::ops::{plain_ref, IntegrityAsk, OpsRoute, ReportAsk};
use crate::pages::{form, session::cookie};
use crate::rate_limit::RouteClass;
use crate::waiting_room::SaleWrite;

/// The signed-in operator: their token, claims and CSRF token.
struct Signed {
    token: String,
    op: Operator,
    csrf: String,
}

impl Signed {
    fn console<'a>(&'a self, city: Option<&'a str>) -> Console<'a> {
        Console {
            op: Some(&self.op),
            csrf: &self.csrf,
            city,
        }
    }
}

/// Serves one console route; its errors are console pages.
pub(super) async fn dispatch(
    req: &mut Request,
    call: &Call,
    ctx: &Context,
    route: OpsRoute,
) -> Handled {
    let signed = signed_in(call);
    let city = route.city().map(str::to_owned);
    match serve(req, call, ctx, route, signed.as_ref()).await {
        Ok(r) => Ok(r),
        Err(e) => error_response(call, signed.as_ref(), city.as_deref(), &e),
    }
}

/// The console's error page for `e`: the operator's header when signed
/// in, a link back to `city`'s shows (or to the console's home).
fn error_response(
    call: &Call,
    signed: Option<&Signed>,
    city: Option<&str>,
    e: &EdgeError,
) -> Handled {
    let console = match signed {
        Some(s) => s.console(city),
        None => Console::default(),
    };
    let mut resp = page(
        call,
        e.status,
        render::error(&console, e.status, &e.message),
        &[],
    )?;
    for (n, v) in &e.headers {
        resp.headers_mut().set(n, v).or_internal("error header")?;
    }
    Ok(resp)
}

/// The error page of a console path that is no console page (an unknown
/// city, a malformed id, a wrong method): the console's, not the
/// buyer's.
pub(super) fn error_page(call: &Call, e: &EdgeError) -> worker::Result<Response> {
    match error_response(call, signed_in(call).as_ref(), None, e) {
        Ok(r) => Ok(r),
        Err(inner) => http::error(&inner),
    }
}

fn signed_in(call: &Call) -> Option<Signed> {
    let token = cookie(call.cookies.as_deref(), OPS_COOKIE)?;
    let op = session::verify(&call.cfg.jwt_secret, token, call.now_s()).ok()?;
    Some(Signed {
        token: token.to_owned(),
        csrf: session::csrf_token(&call.cfg.jwt_secret, token),
        op,
    })
}

async fn serve(
    req: &mut Request,
    call: &Call,
    ctx: &Context,
    route: OpsRoute,
    signed: Option<&Signed>,
) -> Handled {
    match route {
        OpsRoute::SignIn { post: false } => {
            let why = call
                .query
                .as_deref()
                .is_some_and(|q| q.contains("expired=1"))
                .then_some("Your console session has ended. Paste your token again.");
            signin_page(call, why, 200)
        }
        OpsRoute::SignIn { post: true } => signin_post(req, call).await,
        route => {
            // Any other page needs a session: without one (or with an
            // expired one), back to the sign-in page saying so.
            let Some(s) = signed else {
                let had = cookie(call.cookies.as_deref(), OPS_COOKIE).is_some();
                let to = if had {
                    "/ops/signin?expired=1"
                } else {
                    "/ops/signin"
                };
                let clear = if had {
                    vec![session::clear_cookie()]
                } else {
                    Vec::new()
                };
                return redirect(to, &clear);
            };
            if let Some(city) = route.city() {
                if !s.op.covers(city) {
                    return Err(EdgeError::new(
                        403,
                        "city_forbidden",
                        format!("Your operator token does not reach the city {city}."),
                    ));
                }
            }
            call.gate(RouteClass::Api, Some(&s.op.sub), &[]).await?;
            signed_route(req, call, ctx, route, s).await
        }
    }
}

async fn signed_route(
    req: &mut Request,
    call: &Call,
    ctx: &Context,
    route: OpsRoute,
    s: &Signed,
) -> Handled {
    match route {
        OpsRoute::SignIn { .. } => Err(EdgeError::no_route()),
        OpsRoute::SignOut => {
            checked_form(req, call, s).await?;
            redirect("/ops/signin", &[session::clear_cookie()])
        }
        OpsRoute::Home => {
            // The directory says which cities are served; the merged city
            // list (cached) names them. Without it, the codes will do.
            let names = city_list(call, ctx).await.unwrap_or_default();
            let cities: Vec<(String, String)> = call
                .cfg
                .regions
                .distinct()
                .into_iter()
                .flat_map(|(_, cities)| cities)
                .filter(|c| s.op.covers(c))
                .map(|c| (c.to_owned(), city_name(&names, c)))
                .collect();
            page(call, 200, render::home(&s.console(None), &cities), &[])
        }
        OpsRoute::Shows { city, date } => {
            let date = date.unwrap_or_else(|| today(call));
            let (list, names) = futures::future::join(
                read::<ShowList>(
                    call,
                    s,
                    &city,
                    &format!("/v1/cities/{city}/shows?date={date}"),
                ),
                city_list(call, ctx),
            )
            .await;
            let name = city_name(&names.unwrap_or_default(), &city);
            let html = render::shows(&s.console(Some(&city)), &city, &name, date, &list?.shows);
            page(call, 200, html, &[])
        }
        OpsRoute::Show { city, show, after } => {
            let (sh, occ, seats, bookings) =
                show_reads(call, s, &city, &show, after.as_deref()).await?;
            let html = render::show(
                &s.console(Some(&city)),
                &ShowPage {
                    city: &city,
                    show: &sh,
                    occupancy: &occ,
                    seats: &seats,
                    bookings: &bookings,
                    after: after.as_deref(),
                },
            );
            page(call, 200, html, &[])
        }
        OpsRoute::CancelConfirm { city, show } => {
            cancel_page(call, s, &city, &show, None, 200).await
        }
        OpsRoute::Cancel { city, show } => {
            let fields = checked_form(req, call, s).await?;
            let reason = form::get(&fields, "reason").unwrap_or_default().trim();
            if reason.is_empty() {
                let m = "Give a reason: the buyers are told why their show was cancelled.";
                return cancel_page(call, s, &city, &show, Some(m), 422).await;
            }
            let body = serde_json::json!({ "reason": reason });
            let up = send(
                call,
                s,
                &city,
                Method::Post,
                &format!("/v1/operator/shows/{show}/cancel"),
                Some(&body),
            )
            .await?;
            if !(200..=202).contains(&up.status) {
                return Err(region_error(&up));
            }
            let job: serde_json::Value = serde_json::from_slice(&up.body).unwrap_or_default();
            let html = render::cancellation(&s.console(Some(&city)), &city, &show, true, &job);
            page(call, 200, html, &[])
        }
        OpsRoute::Cancellation { city, show } => {
            let job: serde_json::Value = read(
                call,
                s,
                &city,
                &format!("/v1/operator/shows/{show}/cancellation"),
            )
            .await?;
            let html = render::cancellation(&s.console(Some(&city)), &city, &show, false, &job);
            page(call, 200, html, &[])
        }
        OpsRoute::Sale { city, show, saved } => {
            let (sh, stored) = sale_reads(call, s, &city, &show).await?;
            let form = SaleForm::from_stored(&stored, &sh);
            let mut p = sale_view(s, &sh, &stored, &form);
            p.saved = saved;
            sale_page(call, s, &p, 200)
        }
        OpsRoute::SaveSale { city, show } => {
            let fields = checked_form(req, call, s).await?;
            needs_sales(s, "Changing a sale")?;
            let (sh, stored) = sale_reads(call, s, &city, &show).await?;
            let form = SaleForm::from_fields(&fields);
            let set = match form.check(&sh) {
                Ok(set) => set,
                Err(errors) => {
                    let mut p = sale_view(s, &sh, &stored, &form);
                    p.errors = &errors;
                    return sale_page(call, s, &p, 422);
                }
            };
            let w = SaleWrite {
                city: city.clone(),
                set,
            };
            let headers = region_headers(call, s)?;
            match handlers::store_sale(call, &show, &w, headers, &s.op.sub).await? {
                Ok(_) => redirect(&format!("/ops/c/{city}/shows/{show}/sale?done=saved"), &[]),
                // A sale the region refuses (its checks are the last
                // word): the form again, with the region's reason.
                Err(up) if up.status == 422 => {
                    let why = region_error(&up).message;
                    let mut p = sale_view(s, &sh, &stored, &form);
                    p.refused = Some(&why);
                    sale_page(call, s, &p, 422)
                }
                Err(up) => Err(region_error(&up)),
            }
        }
        OpsRoute::Booking {
            city,
            number,
            resent,
        } => {
            let found = match &number {
                None => None,
                Some(n) => {
                    let n = crate::pages::ops::plain_ref(n).ok_or_else(|| {
                        EdgeError::new(
                            400,
                            "invalid_booking_id",
                            "A booking is named by its number (BMS…) or its id.",
                        )
                    })?;
                    Some(
                        read::<BookingLookup>(
                            call,
                            s,
                            &city,
                            &format!("/v1/operator/bookings/{n}"),
                        )
                        .await?,
                    )
                }
            };
            let html = render::booking(
                &s.console(Some(&city)),
                &city,
                number.as_deref(),
                found.as_ref(),
                resent,
            );
            page(call, 200, html, &[])
        }
        OpsRoute::ResendConfirmation { city, booking } => {
            checked_form(req, call, s).await?;
            needs_sales(s, "Sending a confirmation again")?;
            let path = format!("/v1/operator/bookings/{booking}/resend-confirmation");
            let up = send(call, s, &city, Method::Post, &path, None).await?;
            if up.status != 202 {
                return Err(region_error(&up));
            }
            redirect(
                &format!("/ops/c/{city}/bookings?number={booking}&done=resent"),
                &[],
            )
        }
        OpsRoute::Health { city, check } => health_page(call, s, &city, check.as_ref()).await,
        OpsRoute::Mail { city, after, sent } => {
            let list = failed_mail(call, s, &city, after.as_deref(), 100).await?;
            let html = mail::render(
                &s.console(Some(&city)),
                &MailPage {
                    city: &city,
                    messages: &list.messages,
                    next_after: list.next_after.as_deref(),
                    after: after.as_deref(),
                    can_send: s.op.grant.allows(Scope::Sales),
                    sent,
                },
            );
            page(call, 200, html, &[])
        }
        OpsRoute::ResendMail { city } => {
            let fields = checked_form(req, call, s).await?;
            needs_sales(s, "Sending e-mail again")?;
            let ids: Vec<String> = match (form::get(&fields, "event_id"), form::get(&fields, "all"))
            {
                (Some(id), _) => vec![plain_ref(id)
                    .ok_or_else(|| EdgeError::new(400, "invalid_event_id", "not a message id"))?],
                // All of this city's failed messages (the region's filter
                // would take every city of the token's on this shard).
                (None, Some(_)) => failed_mail(call, s, &city, None, 500)
                    .await?
                    .messages
                    .into_iter()
                    .map(|m| m.event_id)
                    .collect(),
                (None, None) => {
                    return Err(EdgeError::new(
                        422,
                        "invalid_body",
                        "Choose a message to send again, or all of them.",
                    ))
                }
            };
            if ids.is_empty() {
                return redirect(&format!("/ops/c/{city}/mail?sent=0"), &[]);
            }
            let body = serde_json::json!({ "event_ids": ids });
            let up = send(
                call,
                s,
                &city,
                Method::Post,
                "/v1/operator/mail/resend",
                Some(&body),
            )
            .await?;
            if up.status != 200 {
                return Err(region_error(&up));
            }
            let done: Resent = serde_json::from_slice(&up.body).or_internal("resend")?;
            redirect(&format!("/ops/c/{city}/mail?sent={}", done.resent), &[])
        }
        OpsRoute::Reports { city, ask } => reports(call, s, &city, ask.as_ref()).await,
        OpsRoute::Refunds { city, done } => {
            let list: RefundList = read(call, s, &city, "/v1/operator/refunds").await?;
            let html = render::refunds(&s.console(Some(&city)), &city, &list, done.as_deref());
            page(call, 200, html, &[])
        }
        OpsRoute::Retry { city, refund } => {
            checked_form(req, call, s).await?;
            let path = format!("/v1/operator/refunds/{refund}/retry");
            let up = send(call, s, &city, Method::Post, &path, None).await?;
            if up.status != 200 {
                return Err(region_error(&up));
            }
            redirect(&format!("/ops/c/{city}/refunds?done=retried"), &[])
        }
        OpsRoute::Settle { city, refund } => {
            let fields = checked_form(req, call, s).await?;
            let note = form::get(&fields, "note").unwrap_or_default().trim();
            if note.is_empty() {
                return Err(EdgeError::new(
                    422,
                    "invalid_body",
                    "Say how the refund was paid back: the note is required.",
                ));
            }
            let mut body = serde_json::json!({ "note": note });
            if let Some(r) = form::get(&fields, "gateway_reference")
                .map(str::trim)
                .filter(|r| !r.is_empty())
            {
                body["gateway_reference"] = r.into();
            }
            let path = format!("/v1/operator/refunds/{refund}/settle");
            let up = send(call, s, &city, Method::Post, &path, Some(&body)).await?;
            if up.status != 200 {
                return Err(region_error(&up));
            }
            redirect(&format!("/ops/c/{city}/refunds?done=settled"), &[])
        }
    }
}

/// A write that needs the `sales` scope: refused at the edge, saying
/// why, before the region is asked.
fn needs_sales(s: &Signed, what: &str) -> Result<(), EdgeError> {
    if s.op.grant.allows(Scope::Sales) {
        return Ok(());
    }
    let scopes: Vec<&str> = s.op.grant.scopes.iter().map(|x| x.as_str()).collect();
    Err(EdgeError::new(
        403,
        "scope_forbidden",
        render::needs_sales(what, &scopes),
    ))
}

/// The health page: the shard's status (its refusal shown on the page:
/// a token not reaching every city of the shard still runs the checks)
/// and the consistency checks when asked for.
async fn health_page(call: &Call, s: &Signed, city: &str, check: Option<&IntegrityAsk>) -> Handled {
    let checks = async {
        match check {
            Some(ask) => read::<Integrity>(call, s, city, &ask.region_path())
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let (shard, checks) = futures::future::join(
        send(call, s, city, Method::Get, "/v1/operator/shard", None),
        checks,
    )
    .await;
    let shard = shard?;
    let status: Result<ShardStatus, String> = match shard.status {
        200 => Ok(serde_json::from_slice(&shard.body).or_internal("shard")?),
        403 => Err(region_error(&shard).message),
        _ => return Err(region_error(&shard)),
    };
    let checks = checks?;
    let html = health::render(
        &s.console(Some(city)),
        &HealthPage {
            city,
            shard: status.as_ref().map_err(String::as_str),
            checks: check.zip(checks.as_ref()),
        },
    );
    page(call, 200, html, &[])
}

/// One page of `city`'s failed messages (the region lists the token's
/// cities; a message naming no booking has no city and is shown too).
async fn failed_mail(
    call: &Call,
    s: &Signed,
    city: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<MailList, EdgeError> {
    let mut path = format!("/v1/operator/mail?state=failed&limit={limit}");
    if let Some(a) = after {
        path.push_str(&format!("&after={a}"));
    }
    let mut list: MailList = read(call, s, city, &path).await?;
    list.messages
        .retain(|m| m.city.as_deref().is_none_or(|c| c == city));
    Ok(list)
}

// ---------------------------------------------------------- sign-in

fn signin_page(call: &Call, error: Option<&str>, status: u16) -> Handled {
    let csrf = session::signin_token(&call.cfg.jwt_secret);
    page(call, status, render::signin(&csrf, error), &[])
}

async fn signin_post(req: &mut Request, call: &Call) -> Handled {
    let fields = read_form(req, call).await?;
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
    let token = form::get(&fields, "token").unwrap_or_default().trim();
    match session::verify(&call.cfg.jwt_secret, token, call.now_s()) {
        Ok(op) => {
            let cookie = session::set_cookie(token, &op, call.now_s());
            redirect("/ops", &[cookie])
        }
        Err(why) => {
            // A wrong token costs the address an auth failure, as the API's.
            call.gate(RouteClass::AuthFailure, None, &[]).await?;
            signin_page(call, Some(why), 401)
        }
    }
}

// ------------------------------------------------------------ forms

async fn read_form(req: &mut Request, call: &Call) -> Result<Vec<(String, String)>, EdgeError> {
    let body = http::read_body(req, call.cfg.max_body_bytes).await?;
    std::str::from_utf8(&body)
        .ok()
        .and_then(form::parse)
        .ok_or_else(|| EdgeError::new(400, "bad_form", "the form could not be read"))
}

/// A posted form whose origin and console CSRF token are ours.
async fn checked_form(
    req: &mut Request,
    call: &Call,
    s: &Signed,
) -> Result<Vec<(String, String)>, EdgeError> {
    let fields = read_form(req, call).await?;
    let origin = http::header(req, "Origin");
    if !shared::csrf::same_origin(origin.as_deref(), &call.origin)
        || !session::csrf_ok(
            &call.cfg.jwt_secret,
            &s.token,
            form::get(&fields, shared::csrf::FIELD),
        )
    {
        return Err(EdgeError::csrf_refused());
    }
    Ok(fields)
}

// ------------------------------------------------------------ region

/// The headers of a region call as the operator: their token, the
/// client's address.
fn region_headers(call: &Call, s: &Signed) -> Result<Headers, EdgeError> {
    let h = Headers::new();
    h.set("Accept", "application/json")
        .or_internal("region header")?;
    h.set("X-Forwarded-For", &call.ip)
        .or_internal("region header")?;
    h.set("Authorization", &format!("Bearer {}", s.token))
        .or_internal("region header")?;
    Ok(h)
}

/// A call to `city`'s region core with the operator's token.
async fn send(
    call: &Call,
    s: &Signed,
    city: &str,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Upstream, EdgeError> {
    let h = region_headers(call, s)?;
    let bytes = match body {
        Some(b) => {
            h.set("Content-Type", "application/json")
                .or_internal("region header")?;
            Some(serde_json::to_vec(b).or_internal("region body")?)
        }
        None => None,
    };
    region::call(&call.cfg, city, method, path, h, bytes.as_deref()).await
}

/// The region's refusal as a console error, with the region's message.
fn region_error(up: &Upstream) -> EdgeError {
    let message =
        region_message(&up.body).unwrap_or_else(|| format!("the region answered {}", up.status));
    let status = if up.status >= 500 { 503 } else { up.status };
    EdgeError::new(status, "refused", message)
}

/// A GET of `path` as the operator: 200 parsed, anything else its error.
async fn read<T: serde::de::DeserializeOwned>(
    call: &Call,
    s: &Signed,
    city: &str,
    path: &str,
) -> Result<T, EdgeError> {
    let up = send(call, s, city, Method::Get, path, None).await?;
    if up.status != 200 {
        return Err(region_error(&up));
    }
    serde_json::from_slice(&up.body).or_internal(path)
}

async fn show_reads(
    call: &Call,
    s: &Signed,
    city: &str,
    show: &str,
    after: Option<&str>,
) -> Result<(Show, Occupancy, SeatMap, ShowBookings), EdgeError> {
    let mut bookings = format!("/v1/operator/shows/{show}/bookings?limit=50");
    if let Some(a) = after {
        bookings.push_str(&format!("&after={a}"));
    }
    // The operator read first: it is the one that checks the grant.
    let occ: Occupancy = read(
        call,
        s,
        city,
        &format!("/v1/operator/shows/{show}/occupancy"),
    )
    .await?;
    let (sh, seats, b) = futures::future::join3(
        read::<Show>(call, s, city, &format!("/v1/shows/{show}")),
        read::<SeatMap>(call, s, city, &format!("/v1/shows/{show}/seats")),
        read::<ShowBookings>(call, s, city, &bookings),
    )
    .await;
    Ok((sh?, occ, seats?, b?))
}

/// A city's name from the city list, else its code.
fn city_name(cities: &[City], code: &str) -> String {
    cities
        .iter()
        .find(|c| c.code.as_str() == code)
        .map_or_else(|| code.to_owned(), |c| c.name.clone())
}

/// The show and its sale as the region stores it (the one copy). A show
/// of another city (one region may serve several) is not this page's.
async fn sale_reads(
    call: &Call,
    s: &Signed,
    city: &str,
    show: &str,
) -> Result<(Show, ShowSale), EdgeError> {
    let (sh, stored) = futures::future::join(
        read::<Show>(call, s, city, &format!("/v1/shows/{show}")),
        read::<ShowSale>(call, s, city, &format!("/v1/shows/{show}/sale")),
    )
    .await;
    let sh = sh?;
    if sh.city.as_str() != city {
        return Err(EdgeError::new(
            404,
            "unknown_show",
            format!("There is no show {show} in {city}."),
        ));
    }
    Ok((sh, stored?))
}

/// The sale page's parts with nothing refused and nothing just saved.
fn sale_view<'a>(
    s: &Signed,
    show: &'a Show,
    stored: &'a ShowSale,
    form: &'a SaleForm,
) -> sale::SalePage<'a> {
    sale::SalePage {
        city: show.city.as_str(),
        show,
        stored,
        form,
        errors: &[],
        refused: None,
        can_write: s.op.grant.allows(Scope::Sales),
        saved: false,
    }
}

fn sale_page(call: &Call, s: &Signed, p: &sale::SalePage<'_>, status: u16) -> Handled {
    let html = sale::render(&s.console(Some(p.city)), p);
    page(call, status, html, &[])
}

async fn cancel_page(
    call: &Call,
    s: &Signed,
    city: &str,
    show: &str,
    error: Option<&str>,
    status: u16,
) -> Handled {
    let (sh, occ, _, bookings) = show_reads(call, s, city, show, None).await?;
    let html = render::cancel_confirm(&s.console(Some(city)), city, &sh, &occ, &bookings, error);
    page(call, status, html, &[])
}

async fn reports(call: &Call, s: &Signed, city: &str, ask: Option<&ReportAsk>) -> Handled {
    let today: NaiveDate = today(call);
    let Some(ask) = ask else {
        return page(
            call,
            200,
            render::reports(&s.console(Some(city)), city, today, None, None),
            &[],
        );
    };
    let path = format!("/v1/operator/reports/sales?{}", ask.region_query());
    let up = send(call, s, city, Method::Get, &path, None).await?;
    if up.status != 200 {
        return Err(region_error(&up));
    }
    if ask.csv {
        // The region's CSV as it is, with its name for the download.
        let mut headers = vec![("Cache-Control", "private, no-store".to_owned())];
        if let Some(d) = up.header("Content-Disposition") {
            headers.push(("Content-Disposition", d.to_owned()));
        }
        let ct = up
            .header("Content-Type")
            .unwrap_or("text/csv; charset=utf-8")
            .to_owned();
        return http::respond(200, &ct, up.body, &headers).or_internal("csv");
    }
    let report: SalesReport = serde_json::from_slice(&up.body).or_internal("report")?;
    let html = render::reports(
        &s.console(Some(city)),
        city,
        today,
        Some(ask),
        Some(&report),
    );
    page(call, 200, html, &[])
}
