//! The live seat map's polling fallback at the edge:
//! `GET /v1/c/{city}/shows/{show}/seats?since=N` is forwarded to the
//! region core and its answer (one frame, or a 304) kept in the location's
//! cache for one second under (show, since), so a show's pollers cost the
//! region about one request per second per `since` value per location —
//! and up-to-date pollers all share one `since`. `If-None-Match` is
//! answered 304 here whenever the stored `ETag` allows.

use worker::{Headers, Method, Request, Response};

use super::cache::{self, Cached};
use super::handlers::Call;
use super::http::{self, now_ms, OrInternal};
use super::region;
use crate::catalog::{self, Freshness, CACHE_HEADER};
use crate::error::EdgeError;
use crate::live::{self, POLL_TTL};

type Hdrs = Vec<(&'static str, String)>;

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
            let accept = Headers::new();
            accept
                .set("Accept", "application/json")
                .or_internal("accept header")?;
            let up = region::call(&call.cfg, city, Method::Get, upstream, accept, None).await?;
            if up.status != 200 && up.status != 304 {
                // 404 unknown show, 503 …: the region's answer, not kept.
                return up.into_response(rl).or_internal("poll response");
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
                &key,
                POLL_TTL,
                ct,
                body.clone(),
                stored_at_ms,
                etag.as_deref(),
            )
            .await;
            let c = Cached {
                stored_at_ms,
                content_type: ct.to_owned(),
                body,
                etag,
            };
            (c, "MISS")
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
