//! Idempotency keys, after Stripe's published design: the first response
//! for a (user, key) is stored and replayed byte for byte; the same key
//! with other parameters is refused; a request works on a key only while
//! it holds the key's lock, and the work's progress is the key's
//! `recovery_point`, so a retry after a crash resumes, never restarts.

use crate::error::ApiError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Postgres, Transaction};
use std::time::Duration;

/// Longest key accepted (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// How far a keyed request has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl RecoveryPoint {
    /// The database spelling.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::PaymentCreated => "payment_created",
            Self::PaymentSucceeded => "payment_succeeded",
            Self::Finished => "finished",
        }
    }

    fn from_db_str(s: &str) -> Option<Self> {
        Some(match s {
            "started" => Self::Started,
            "payment_created" => Self::PaymentCreated,
            "payment_succeeded" => Self::PaymentSucceeded,
            "finished" => Self::Finished,
            _ => return None,
        })
    }
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
pub async fn begin(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    key: &str,
    hash: &str,
    lock_timeout: Duration,
    now: DateTime<Utc>,
) -> Result<KeyState, ApiError> {
    type Row = (
        String,
        String,
        Option<DateTime<Utc>>,
        Option<i32>,
        Option<Vec<u8>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT request_hash, recovery_point, locked_at, response_status, response_body
           FROM idempotency_keys WHERE user_id = $1 AND key = $2 FOR UPDATE",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((stored_hash, point, locked_at, status, body)) = row else {
        return Ok(KeyState::New);
    };
    if stored_hash != hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used with different parameters; use a new key for a new request",
        ));
    }
    let point = RecoveryPoint::from_db_str(&point)
        .ok_or_else(|| anyhow::anyhow!("unknown recovery point {point:?}"))?;
    if point == RecoveryPoint::Finished {
        let (Some(status), Some(body)) = (status, body) else {
            return Err(anyhow::anyhow!("finished key without a response").into());
        };
        return Ok(KeyState::Replay(StoredResponse {
            status: status as u16,
            body,
        }));
    }
    let lapse = chrono::Duration::from_std(lock_timeout).unwrap_or(chrono::Duration::seconds(30));
    if locked_at.is_some_and(|t| t > now - lapse) {
        return Err(ApiError::Conflict {
            code: "idempotency_key_in_use",
            message: "a request with this Idempotency-Key is still being processed; retry shortly"
                .into(),
            details: None,
        });
    }
    sqlx::query("UPDATE idempotency_keys SET locked_at = $3, updated_at = now() WHERE user_id = $1 AND key = $2")
        .bind(user)
        .bind(key)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(KeyState::Resume(point))
}

/// Inserts the key (locked, `started`) unless it exists; true if this
/// call inserted it. A concurrent inserter of the same key waits for our
/// transaction and then finds the row (ON CONFLICT), so it can replay.
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, recovery_point, locked_at)
         VALUES ($1, $2, $3, 'started', $4)
         ON CONFLICT (user_id, key) DO NOTHING",
    )
    .bind(user)
    .bind(key)
    .bind(hash)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Inserts a new key, locked by the caller, at `point`.
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    user: &str,
    key: &str,
    hash: &str,
    point: RecoveryPoint,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, recovery_point, locked_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user)
    .bind(key)
    .bind(hash)
    .bind(point.as_db_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A concurrent request inserted the same key first: it is in use.
pub fn insert_error(e: sqlx::Error) -> ApiError {
    if crate::holds::store::sqlstate(&e).as_deref() == Some("23505") {
        return ApiError::Conflict {
            code: "idempotency_key_in_use",
            message: "a request with this Idempotency-Key is still being processed; retry shortly"
                .into(),
            details: None,
        };
    }
    e.into()
}

/// Moves an unfinished key forward (never back, never past finished).
pub async fn advance(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
    point: RecoveryPoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET recovery_point = $3, updated_at = now()
          WHERE user_id = $1 AND key = $2 AND recovery_point <> 'finished'",
    )
    .bind(user)
    .bind(key)
    .bind(point.as_db_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the final response of an unfinished key and unlocks it. A key
/// already finished keeps its first response.
pub async fn finish(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
    response: &StoredResponse,
) -> Result<(), sqlx::Error> {
    store_answer(conn, user, key, response, false).await
}

/// Writes a key's answer: only over an unfinished key, or (`replace`)
/// over whatever it said before.
async fn store_answer(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
    response: &StoredResponse,
    replace: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys
            SET recovery_point = 'finished', response_status = $3, response_body = $4,
                locked_at = NULL, updated_at = now()
          WHERE user_id = $1 AND key = $2 AND ($5 OR recovery_point <> 'finished')",
    )
    .bind(user)
    .bind(key)
    .bind(response.status as i32)
    .bind(&response.body)
    .bind(replace)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces a finished key's answer when the truth changed after it was
/// given (a payment answered "not charged" that the gateway charged late).
pub async fn replace_answer(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
    response: &StoredResponse,
) -> Result<(), sqlx::Error> {
    store_answer(conn, user, key, response, true).await
}

/// Releases the lock of a request that stops without finishing (an
/// unknown gateway outcome): the next retry resumes at once.
pub async fn unlock(conn: &mut PgConnection, user: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET locked_at = NULL, updated_at = now()
          WHERE user_id = $1 AND key = $2",
    )
    .bind(user)
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// The stored response of a key, if finished.
pub async fn response_of(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    let row: Option<(Option<i32>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT response_status, response_body FROM idempotency_keys
          WHERE user_id = $1 AND key = $2 AND recovery_point = 'finished'",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((Some(status), Some(body))) => Some(StoredResponse {
            status: status as u16,
            body,
        }),
        _ => None,
    })
}

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
