//! Idempotency keys, after Stripe's published design: the first response
//! for a (user, key) is stored and replayed byte for byte; the same key
//! with other parameters is refused; a request works on a key only while
//! it holds the key's lock, and the work's progress is the key's
//! `recovery_point`, so a retry after a crash resumes, never restarts.
//!
//! This module holds the types and the pure parts (key and request-hash
//! rules, stored answers as HTTP responses); `store` holds the SQL.

pub mod store;

use crate::error::ApiError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Longest key accepted (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// How far a keyed request has got (the `idempotency_keys.recovery_point`
/// column; the query macros read and bind it as this type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RecoveryPoint {
    /// Key recorded, nothing else yet.
    Started,
    /// The payment row exists; the gateway may or may not have charged.
    PaymentCreated,
    /// The gateway charged; booking or refund not yet decided.
    PaymentSucceeded,
    /// Done: the response is stored.
    Finished,
}

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Exact body bytes.
    pub body: Vec<u8>,
}

/// What a request may do with its key.
#[derive(Debug)]
pub enum KeyState {
    /// Never seen: the caller does the work (and inserts the key in the
    /// same transaction as its first phase).
    New,
    /// Seen and finished: replay this.
    Replay(StoredResponse),
    /// Seen, unfinished, and now locked by this request: resume here.
    Resume(RecoveryPoint),
}

/// The `Idempotency-Key` header, validated.
pub fn key_from_headers(headers: &HeaderMap, required: bool) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return if required {
            Err(ApiError::bad_request(
                "idempotency_key_missing",
                "this request needs an Idempotency-Key header (a unique string per purchase attempt, e.g. a UUID)",
            ))
        } else {
            Ok(None)
        };
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"),
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// Fingerprint of a request: method, path and the canonical (re-encoded)
/// body, so whitespace or key order do not count as other parameters.
pub fn request_hash(method: &str, path: &str, canonical_body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(canonical_body);
    hex::encode(h.finalize())
}

/// Looks the key up and, if it is unfinished and not locked by a live
/// request, locks it for this one (committing that lock at once).
/// An error response as stored bytes (the same JSON shape as every error).
pub fn error_response(
    status: u16,
    code: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> StoredResponse {
    let mut body = shared::ErrorBody::new(code, message);
    body.error.details = details;
    StoredResponse {
        status,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// A stored response as an HTTP response. Replays say so in a header
/// (as Stripe's `Idempotent-Replayed`); the body is the stored bytes.
pub fn into_response(r: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, r.body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_points_are_spelled_as_the_column_allows() {
        use RecoveryPoint as R;
        let points = [
            R::Started,
            R::PaymentCreated,
            R::PaymentSucceeded,
            R::Finished,
        ];
        let spelled: Vec<String> = points.map(crate::db::spelling).into();
        assert_eq!(
            spelled,
            [
                "started",
                "payment_created",
                "payment_succeeded",
                "finished"
            ]
        );
    }

    #[test]
    fn the_hash_covers_path_and_body() {
        let a = request_hash(
            "POST",
            "/v1/holds/x/checkout",
            br#"{"payment_method":"pm_card_ok"}"#,
        );
        let b = request_hash(
            "POST",
            "/v1/holds/y/checkout",
            br#"{"payment_method":"pm_card_ok"}"#,
        );
        let c = request_hash(
            "POST",
            "/v1/holds/x/checkout",
            br#"{"payment_method":"pm_card_declined"}"#,
        );
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            request_hash(
                "POST",
                "/v1/holds/x/checkout",
                br#"{"payment_method":"pm_card_ok"}"#
            )
        );
    }

    #[test]
    fn keys_must_be_visible_ascii_and_bounded() {
        let mut h = HeaderMap::new();
        assert!(key_from_headers(&h, true).is_err());
        assert_eq!(key_from_headers(&h, false).unwrap(), None);
        h.insert("idempotency-key", "abc-123".parse().unwrap());
        assert_eq!(
            key_from_headers(&h, true).unwrap().as_deref(),
            Some("abc-123")
        );
        h.insert("idempotency-key", "a b".parse().unwrap());
        assert!(key_from_headers(&h, true).is_err());
        h.insert("idempotency-key", "x".repeat(256).parse().unwrap());
        assert!(key_from_headers(&h, true).is_err());
    }
}
