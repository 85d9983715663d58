//! Small runtime helpers: responses, the clock, randomness, timeouts and
//! reading a request body with a size limit.

use std::future::Future;
use std::time::Duration;

use futures::future::{select, Either};
use futures::StreamExt;
use worker::js_sys::{self, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{AbortController, Date, Delay, Headers, Request, Response, Result};

use crate::error::EdgeError;

/// Unix milliseconds. In Workers the clock advances only across I/O,
/// which is all the precision a decision needs.
pub fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// `n` random bytes as hex, from `crypto.getRandomValues` (a CSPRNG: the
/// waiting room's seed must not be guessable).
pub fn random_hex(n: u32) -> Result<String> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    let get: js_sys::Function = Reflect::get(&crypto, &JsValue::from_str("getRandomValues"))?
        .dyn_into()
        .map_err(|_| worker::Error::from("crypto.getRandomValues is not a function"))?;
    let buf = Uint8Array::new_with_length(n);
    get.call1(&crypto, &buf)?;
    Ok(hex::encode(buf.to_vec()))
}

/// Runs `fut` for at most `ms`; `None` on timeout (then `abort` is
/// triggered, so the fetch behind it is cancelled, not left running).
pub async fn with_timeout<T>(
    fut: impl Future<Output = T>,
    ms: u64,
    abort: AbortController,
) -> Option<T> {
    let fut = std::pin::pin!(fut);
    let delay = std::pin::pin!(Delay::from(Duration::from_millis(ms)));
    match select(fut, delay).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(((), _)) => {
            abort.abort();
            None
        }
    }
}

/// A response with a body and headers.
pub fn respond(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<Response> {
    let h = Headers::new();
    h.set("Content-Type", content_type)?;
    for (name, value) in headers {
        h.set(name, value)?;
    }
    if !h.has("Cache-Control")? {
        h.set("Cache-Control", "no-store")?;
    }
    Ok(Response::builder()
        .with_status(status)
        .with_headers(h)
        .fixed(body))
}

/// A JSON response.
pub fn json(status: u16, body: String, headers: &[(&str, String)]) -> Result<Response> {
    respond(status, "application/json", body.into_bytes(), headers)
}

/// The JSON error response of an [`EdgeError`] (never cached).
pub fn error(e: &EdgeError) -> Result<Response> {
    let headers: Vec<(&str, String)> = e.headers.iter().map(|(n, v)| (*n, v.clone())).collect();
    json(e.status, e.body(), &headers)
}

/// Reads the request body, refusing more than `limit` bytes (checked on
/// the declared length first, then while reading, so a chunked upload
/// cannot make the edge buffer more).
pub async fn read_body(req: &mut Request, limit: usize) -> std::result::Result<Vec<u8>, EdgeError> {
    crate::auth::check_declared_length(
        req.headers()
            .get("Content-Length")
            .ok()
            .flatten()
            .as_deref(),
        limit,
    )?;
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    let mut stream = req.stream().map_err(|_| EdgeError::body_too_large(limit))?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| EdgeError::malformed_json())?;
        if body.len() + chunk.len() > limit {
            return Err(EdgeError::body_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Most of an unread request body [`drain_body`] reads: bounded work for
/// a client that declares a huge body (it may then see a reset, not the
/// answer), and well above `MAX_BODY_BYTES`'s default.
pub const DRAIN_LIMIT: usize = 1 << 20;

/// Reads and discards what is left of a request body nobody read, up to
/// [`DRAIN_LIMIT`] bytes, so that workerd can end the exchange cleanly.
pub async fn drain_body(req: &mut Request) {
    if req.inner().body_used() || req.inner().body().is_none() {
        return;
    }
    let declared = header(req, "Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return;
    }
    let Ok(mut stream) = req.stream() else {
        return;
    };
    let mut read = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len();
        if read > DRAIN_LIMIT {
            return;
        }
    }
}

/// A header of the request, if present and valid.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Logs and maps an unexpected runtime error to a 500.
pub trait OrInternal<T> {
    /// `Err(EdgeError::internal())`, with `what` and the cause logged.
    fn or_internal(self, what: &str) -> std::result::Result<T, EdgeError>;
}

impl<T, E: std::fmt::Display> OrInternal<T> for std::result::Result<T, E> {
    fn or_internal(self, what: &str) -> std::result::Result<T, EdgeError> {
        self.map_err(|e| {
            worker::console_error!("{what}: {e}");
            EdgeError::internal()
        })
    }
}
