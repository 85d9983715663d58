//! The live seat map's polling fallback at the edge:
//! `GET /v1/c/{city}/shows/{show}/seats?since=N` is forwarded to the
//! region core and its answer (one frame, or a 304) kept in the location's
//! cache for one second under (show, since), so a show's pollers cost the
//! region about one request per second per `since` value per location —
//! and up-to-date pollers all share one `since`; polls that miss while a
//! fetch of their key runs wait for its answer. `If-None-Match` is
//! answered 304 here whenever the stored `ETag` allows.
//!
//! The waiting shares plain data only: workerd refuses one request's
//! handler touching another's I/O objects (a response body stream), so a
//! waiter never awaits the fetching request's future; it sleeps briefly
//! and reads the answer the fetcher left in isolate memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use worker::{Headers, Method, Request, Response};

use super::cache::{self, Cached};
use super::handlers::Call;
use super::http::{self, now_ms, OrInternal};
use super::region::{self, Upstream};
use crate::catalog::{self, Freshness, CACHE_HEADER};
use crate::config::EdgeConfig;
use crate::error::EdgeError;
use crate::live::{self, POLL_TTL};

type Hdrs = Vec<(&'static str, String)>;

/// What one region fetch for a key gave, shared by every poll that
/// waited for it.
enum Fetched {
    /// A frame or a 304, now in the cache.
    Stored(Cached),
    /// Anything else (404 unknown show, 503 …): passed on, not kept.
    Other(Upstream),
}

/// How often a waiting poll looks for the answer (ms).
const WAIT_STEP_MS: u64 = 10;

/// A key's fetch in this isolate.
enum Slot {
    /// Under way since `started_ms`, by fetch number `id`.
    Running { started_ms: i64, id: u64 },
    /// Finished at `at_ms`; waiters take the answer from here.
    Done {
        at_ms: i64,
        answer: Result<Rc<Fetched>, EdgeError>,
    },
}

thread_local! {
    /// Fetches by cache key: polls that miss while one runs wait for its
    /// answer instead of asking the region too (a second's boundary would
    /// otherwise let every poller of the show through at once). Per
    /// isolate; wasm32 is single-threaded and no borrow is held across
    /// an `.await`.
    static SLOTS: RefCell<HashMap<String, Slot>> = RefCell::new(HashMap::new());
    /// Numbers the fetches, so one fills only its own slot.
    static NEXT_FETCH: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Serves one poll; `rl` are the rate-limit headers of the gate passed.
pub async fn seats_since(
    req: &Request,
    call: &Call,
    city: &str,
    show: &str,
    since: u64,
    upstream: &str,
    rl: &Hdrs,
) -> Result<Response, EdgeError> {
    let key = live::poll_key(&call.origin, city, show, since);
    let fresh = cache::get(&key)
        .await
        .filter(|c| catalog::freshness(c.stored_at_ms, call.now_ms, POLL_TTL) == Freshness::Fresh);
    let (answer, status) = match fresh {
        Some(c) => (c, "HIT"),
        None => {
            let outcome = shared_fetch(call, city, upstream, key).await;
            match &*outcome? {
                Fetched::Stored(c) => (
                    Cached {
                        stored_at_ms: c.stored_at_ms,
                        content_type: c.content_type.clone(),
                        body: c.body.clone(),
                        etag: c.etag.clone(),
                    },
                    "MISS",
                ),
                Fetched::Other(up) => {
                    let copy = Upstream {
                        status: up.status,
                        headers: up.headers.clone(),
                        body: up.body.clone(),
                    };
                    return copy.into_response(rl).or_internal("poll response");
                }
            }
        }
    };
    let mut h: Vec<(&str, String)> = rl.iter().map(|(n, v)| (*n, v.clone())).collect();
    h.push((CACHE_HEADER, status.to_owned()));
    // Clients may keep the answer but must ask again (with the ETag).
    h.push(("Cache-Control", "no-cache".to_owned()));
    if let Some(tag) = &answer.etag {
        h.push(("ETag", tag.clone()));
    }
    let inm = http::header(req, "If-None-Match");
    if live::not_modified(
        answer.body.is_empty(),
        answer.etag.as_deref(),
        inm.as_deref(),
    ) {
        // A 304 has no body at all (the runtime refuses even an empty one).
        let headers = Headers::new();
        for (name, value) in &h {
            headers.set(name, value).or_internal("poll 304 header")?;
        }
        return Ok(Response::builder()
            .with_status(304)
            .with_headers(headers)
            .empty());
    }
    http::respond(200, &answer.content_type, answer.body, &h).or_internal("poll response")
}

/// The answer for `key`: fetched by this request, or, when another
/// request of this isolate is fetching it, that one's answer. A fetch
/// older than a region call may take is not waited for (its request may
/// have been cancelled).
async fn shared_fetch(
    call: &Call,
    city: &str,
    upstream: &str,
    key: String,
) -> Result<Rc<Fetched>, EdgeError> {
    let limit_ms = call.cfg.region_timeout_ms as i64 + 1_000;
    let mut waited = false;
    loop {
        let now = now_ms();
        let claimed = SLOTS.with(|m| {
            let mut m = m.borrow_mut();
            // Answers are kept briefly for late waiters, then dropped.
            m.retain(|_, slot| match slot {
                Slot::Done { at_ms, .. } => now - *at_ms < limit_ms,
                Slot::Running { started_ms, .. } => now - *started_ms < limit_ms,
            });
            match m.get(&key) {
                Some(Slot::Done { answer, .. }) if waited => return Err(answer.clone()),
                Some(Slot::Running { .. }) => return Ok(None),
                _ => {}
            }
            let id = NEXT_FETCH.with(|n| {
                n.set(n.get() + 1);
                n.get()
            });
            m.insert(
                key.clone(),
                Slot::Running {
                    started_ms: now,
                    id,
                },
            );
            Ok(Some(id))
        });
        match claimed {
            // Another request's answer, as plain data.
            Err(answer) => return answer,
            Ok(Some(id)) => {
                let answer = fetch_and_store(&call.cfg, city, upstream, &key).await;
                SLOTS.with(|m| {
                    let mut m = m.borrow_mut();
                    if matches!(m.get(&key), Some(Slot::Running { id: mine, .. }) if *mine == id) {
                        m.insert(
                            key.clone(),
                            Slot::Done {
                                at_ms: now_ms(),
                                answer: answer.clone(),
                            },
                        );
                    }
                });
                return answer;
            }
            Ok(None) => {
                waited = true;
                worker::Delay::from(std::time::Duration::from_millis(WAIT_STEP_MS)).await;
            }
        }
    }
}

/// Asks the region for `upstream` and stores a frame or 304 under `key`.
async fn fetch_and_store(
    cfg: &EdgeConfig,
    city: &str,
    upstream: &str,
    key: &str,
) -> Result<Rc<Fetched>, EdgeError> {
    let accept = Headers::new();
    accept
        .set("Accept", "application/json")
        .or_internal("accept header")?;
    let up = region::call(cfg, city, Method::Get, upstream, accept, None).await?;
    if up.status != 200 && up.status != 304 {
        return Ok(Rc::new(Fetched::Other(up)));
    }
    let etag = up.header("ETag").map(str::to_owned);
    // A 304 is stored as an empty body (a 200 always has a frame).
    let body = if up.status == 304 {
        Vec::new()
    } else {
        up.body
    };
    let stored_at_ms = now_ms();
    let ct = "application/json";
    cache::put_tagged(
        key,
        POLL_TTL,
        ct,
        body.clone(),
        stored_at_ms,
        etag.as_deref(),
    )
    .await;
    Ok(Rc::new(Fetched::Stored(Cached {
        stored_at_ms,
        content_type: ct.to_owned(),
        body,
        etag,
    })))
}
