//! Calls to a city's region core: the routing table gives the base URLs
//! of its shard's replicas; requests rotate over them, each replica has
//! its own circuit breaker (isolate memory) that skips it while it is
//! down, and every call has a timeout. A read (or a write carrying an
//! `Idempotency-Key`) that gets no answer from one replica is sent to the
//! next. A shard whose replicas are all down costs its cities a quick 503
//! `region_unavailable`; other shards are untouched.

use worker::wasm_bindgen::JsValue;
use worker::{
    AbortController, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
};

use super::http::{now_ms, with_timeout, OrInternal};
use super::state;
use crate::config::EdgeConfig;
use crate::error::EdgeError;
use shared::breaker::{Admission, State};

/// Request headers passed on to the region core (plus `X-Forwarded-For`).
pub const FORWARDED_REQUEST_HEADERS: [&str; 5] = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Admission-Pass",
    "Accept",
];

/// Response headers not passed back: hop-by-hop, or describing a body
/// encoding the runtime has already undone, or internal to edge↔region.
const DROPPED_RESPONSE_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "admission-completed",
    "set-cookie",
];

/// A region core's answer, read whole (bodies are small).
pub struct Upstream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Upstream {
    /// A response header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response to the client: the region's status, body and headers,
    /// plus `extra` (rate-limit headers, cache status).
    pub fn into_response(self, extra: &[(&str, String)]) -> worker::Result<Response> {
        let h = Headers::new();
        for (name, value) in &self.headers {
            if !DROPPED_RESPONSE_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                h.append(name, value)?;
            }
        }
        for (name, value) in extra {
            h.set(name, value)?;
        }
        if !h.has("Cache-Control")? {
            h.set("Cache-Control", "private, no-store")?;
        }
        Ok(Response::builder()
            .with_status(self.status)
            .with_headers(h)
            .fixed(self.body))
    }
}

/// The headers to send upstream for a client request.
pub fn forward_headers(req: &Request, client_ip: &str) -> Result<Headers, EdgeError> {
    let h = Headers::new();
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(v) = req.headers().get(name).ok().flatten() {
            h.set(name, &v).or_internal("forward header")?;
        }
    }
    h.set("X-Forwarded-For", client_ip)
        .or_internal("forward header")?;
    Ok(h)
}

fn admit(cfg: &EdgeConfig, base: &str) -> Result<(), EdgeError> {
    match state::with(|s| s.breaker(base, cfg).admit(now_ms())) {
        Admission::Go { .. } => Ok(()),
        Admission::Refuse { retry_after_ms } => {
            Err(EdgeError::region_unavailable(retry_after_ms.div_ceil(1000)))
        }
    }
}

/// Records an outcome; on failure, the error to answer with.
fn record(cfg: &EdgeConfig, base: &str, status: Option<u16>) -> Option<EdgeError> {
    let now = now_ms();
    let state = state::with(|s| {
        let b = s.breaker(base, cfg);
        b.record(crate::breaker::is_failure(status), now);
        b.state()
    });
    if !crate::breaker::is_failure(status) {
        return None;
    }
    Some(match state {
        State::Open { until_ms } => {
            EdgeError::region_unavailable(((until_ms - now).max(0) as u64).div_ceil(1000))
        }
        _ => EdgeError::region_unavailable(1),
    })
}

/// Calls `city`'s region core: `path` is the path and query.
pub async fn call(
    cfg: &EdgeConfig,
    city: &str,
    method: Method,
    path: &str,
    headers: Headers,
    body: Option<&[u8]>,
) -> Result<Upstream, EdgeError> {
    let wait = Wait {
        timeout_ms: cfg.region_timeout_ms,
        on_timeout: || EdgeError::region_unavailable(1),
    };
    call_within(cfg, city, method, path, headers, body, wait).await
}

/// [`call`] for a payment (a checkout): the region answers once the
/// payment gateway has, or after its own gateway timeout, so it gets
/// `REGION_PAYMENT_TIMEOUT_MS`, longer than other calls. A slow gateway
/// then costs only the buyers it is slow for, not the city (a timeout at
/// the region timeout would count against the breaker and, a few in a
/// row, shut the whole city out). Given up on, the outcome is unknown:
/// `503 payment_pending`, retried with the same key.
pub async fn pay(
    cfg: &EdgeConfig,
    city: &str,
    method: Method,
    path: &str,
    headers: Headers,
    body: Option<&[u8]>,
) -> Result<Upstream, EdgeError> {
    let wait = Wait {
        timeout_ms: cfg.payment_timeout_ms,
        on_timeout: EdgeError::payment_pending,
    };
    call_within(cfg, city, method, path, headers, body, wait).await
}

/// How long a call may take, and what the client is told when it took
/// longer.
struct Wait {
    timeout_ms: u64,
    on_timeout: fn() -> EdgeError,
}

/// The replicas of `city`'s shard in the order this request tries them
/// (for [`crate::config::CATALOG`], the global catalog service).
fn replicas<'a>(cfg: &'a EdgeConfig, city: &str) -> Result<Vec<&'a str>, EdgeError> {
    if city == crate::config::CATALOG {
        return match &cfg.catalog_url {
            Some(url) => Ok(vec![url.as_str()]),
            None => Err(EdgeError::no_catalog()),
        };
    }
    let all = cfg
        .regions
        .replicas(city)
        .ok_or_else(|| EdgeError::unknown_city(city))?;
    let turn = state::with(|s| s.next_turn());
    Ok(crate::config::rotation(all.len(), turn)
        .map(|i| all[i].as_str())
        .collect())
}

async fn call_within(
    cfg: &EdgeConfig,
    city: &str,
    method: Method,
    path: &str,
    headers: Headers,
    body: Option<&[u8]>,
    wait: Wait,
) -> Result<Upstream, EdgeError> {
    let keyed = headers.has("Idempotency-Key").unwrap_or(false);
    let fail_over = crate::config::may_fail_over(method.as_ref(), keyed);
    let mut last = None;
    for base in replicas(cfg, city)? {
        // A replica whose breaker is open is skipped, not waited on.
        if let Err(e) = admit(cfg, base) {
            last = Some(e);
            continue;
        }
        match call_one(cfg, base, method.clone(), path, &headers, body, &wait).await {
            Ok(up) => return Ok(up),
            Err(Failed::Answer(e)) => return Err(e),
            Err(Failed::NoAnswer(e)) if fail_over => last = Some(e),
            Err(Failed::NoAnswer(e)) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| EdgeError::region_unavailable(1)))
}

/// How a call to one replica failed.
enum Failed {
    /// It answered, or its outcome is what the client must be told.
    Answer(EdgeError),
    /// No answer (or a proxy's 502/504): another replica may be tried.
    NoAnswer(EdgeError),
}

async fn call_one(
    cfg: &EdgeConfig,
    base: &str,
    method: Method,
    path: &str,
    headers: &Headers,
    body: Option<&[u8]>,
    wait: &Wait,
) -> Result<Upstream, Failed> {
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(headers.clone())
        .with_redirect(RequestRedirect::Manual);
    if let Some(b) = body.filter(|b| !b.is_empty()) {
        init.with_body(Some(JsValue::from(worker::js_sys::Uint8Array::from(b))));
    }
    let req = Request::new_with_init(&format!("{base}{path}"), &init)
        .or_internal("region request")
        .map_err(Failed::Answer)?;
    let abort = AbortController::default();
    let signal = abort.signal();
    let send = async {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let body = resp.bytes().await?;
        let headers = resp.headers().entries().collect();
        Ok::<_, worker::Error>(Upstream {
            status: resp.status_code(),
            headers,
            body,
        })
    };
    match with_timeout(send, wait.timeout_ms, abort).await {
        Some(Ok(up)) => match record(cfg, base, Some(up.status)) {
            None => Ok(up),
            // 502/504 from a proxy in front of the region: count it, and
            // answer with our own error (the proxy's body is not ours).
            Some(e) => Err(Failed::NoAnswer(e)),
        },
        Some(Err(e)) => {
            worker::console_warn!("region {base}: {e}");
            Err(Failed::NoAnswer(
                record(cfg, base, None).unwrap_or_else(|| EdgeError::region_unavailable(1)),
            ))
        }
        None => {
            worker::console_warn!("region {base}: no answer within {} ms", wait.timeout_ms);
            // Counted: a region slower than this is unwell. Told as the
            // call's own kind of failure unless the breaker is now open.
            let counted = record(cfg, base, None);
            let open = state::with(|s| matches!(s.breaker(base, cfg).state(), State::Open { .. }));
            Err(Failed::NoAnswer(match counted {
                Some(e) if open => e,
                _ => (wait.on_timeout)(),
            }))
        }
    }
}

/// Passes a WebSocket upgrade through to the region unchanged: the
/// region's `101` response carries the socket, so it is returned as is.
pub async fn websocket(
    cfg: &EdgeConfig,
    city: &str,
    req: &Request,
    path: &str,
) -> Result<Response, EdgeError> {
    let mut last = None;
    for base in replicas(cfg, city)? {
        if let Err(e) = admit(cfg, base) {
            last = Some(e);
            continue;
        }
        match upgrade(cfg, base, req, path).await {
            Ok(resp) => return Ok(resp),
            // Nothing was exchanged on a socket that never opened.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| EdgeError::region_unavailable(1)))
}

async fn upgrade(
    cfg: &EdgeConfig,
    base: &str,
    req: &Request,
    path: &str,
) -> Result<Response, EdgeError> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !name.eq_ignore_ascii_case("host") {
            headers
                .append(&name, &value)
                .or_internal("websocket header")?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let up =
        Request::new_with_init(&format!("{base}{path}"), &init).or_internal("websocket request")?;
    let abort = AbortController::default();
    let signal = abort.signal();
    match with_timeout(
        Fetch::Request(up).send_with_signal(&signal),
        cfg.region_timeout_ms,
        abort,
    )
    .await
    {
        Some(Ok(resp)) => {
            record(cfg, base, Some(resp.status_code()));
            Ok(resp)
        }
        _ => Err(record(cfg, base, None).unwrap_or_else(|| EdgeError::region_unavailable(1))),
    }
}
