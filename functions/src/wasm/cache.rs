//! The Cache API (`caches.default`, per Cloudflare location): catalog
//! copies with the time they were stored, and short-lived flags. Cache
//! failures are logged and treated as misses: the cache is an
//! optimisation, never a dependency.

use worker::{Cache, Headers, Response};

use crate::catalog::{storage_cache_control, Ttl, STORED_AT_HEADER};

/// A cached copy.
pub struct Cached {
    /// When it was fetched from the region (unix ms).
    pub stored_at_ms: i64,
    /// Its `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// Its `ETag`, if it was stored with one ([`put_tagged`]).
    pub etag: Option<String>,
}

/// The copy under `key`, if any.
pub async fn get(key: &str) -> Option<Cached> {
    let mut resp = match Cache::default().get(key, true).await {
        Ok(r) => r?,
        Err(e) => {
            worker::console_warn!("cache get: {e}");
            return None;
        }
    };
    let stored_at_ms = resp
        .headers()
        .get(STORED_AT_HEADER)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())?;
    let content_type = resp
        .headers()
        .get("Content-Type")
        .ok()
        .flatten()
        .unwrap_or_else(|| "application/json".into());
    let etag = resp.headers().get("ETag").ok().flatten();
    let body = resp.bytes().await.ok()?;
    Some(Cached {
        stored_at_ms,
        content_type,
        body,
        etag,
    })
}

async fn put_raw(
    key: &str,
    cache_control: &str,
    content_type: &str,
    body: Vec<u8>,
    stored_at_ms: i64,
    etag: Option<&str>,
) {
    let stored = (|| {
        let h = Headers::new();
        h.set("Content-Type", content_type)?;
        if let Some(tag) = etag {
            h.set("ETag", tag)?;
        }
        h.set("Cache-Control", cache_control)?;
        h.set(STORED_AT_HEADER, &stored_at_ms.to_string())?;
        Ok::<_, worker::Error>(Response::builder().with_headers(h).fixed(body))
    })();
    let result = match stored {
        Ok(resp) => Cache::default().put(key, resp).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        worker::console_warn!("cache put: {e}");
    }
}

/// Stores a copy fetched at `stored_at_ms`, kept for TTL + stale window.
pub async fn put(key: &str, ttl: Ttl, content_type: &str, body: Vec<u8>, stored_at_ms: i64) {
    put_raw(
        key,
        &storage_cache_control(ttl),
        content_type,
        body,
        stored_at_ms,
        None,
    )
    .await;
}

/// Stores a copy with its `ETag` (the polling fallback's answers).
pub async fn put_tagged(
    key: &str,
    ttl: Ttl,
    content_type: &str,
    body: Vec<u8>,
    stored_at_ms: i64,
    etag: Option<&str>,
) {
    put_raw(
        key,
        &storage_cache_control(ttl),
        content_type,
        body,
        stored_at_ms,
        etag,
    )
    .await;
}

/// Sets a flag for `secs`.
pub async fn put_flag(key: &str, secs: u32, now_ms: i64) {
    let cc = format!("public, max-age={secs}");
    put_raw(key, &cc, "text/plain", b"1".to_vec(), now_ms, None).await;
}

/// Whether a flag set for `secs` is still up at `now_ms`.
pub async fn flag(key: &str, secs: u32, now_ms: i64) -> bool {
    get(key)
        .await
        .is_some_and(|c| now_ms - c.stored_at_ms < i64::from(secs) * 1000)
}

/// Removes an entry.
pub async fn delete(key: &str) {
    if let Err(e) = Cache::default().delete(key, true).await {
        worker::console_warn!("cache delete: {e}");
    }
}
