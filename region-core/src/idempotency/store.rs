//! The idempotency keys' table: a key taken, locked, advanced through its
//! recovery points, finished with its answer, or unlocked for a retry.

use super::{KeyState, RecoveryPoint, StoredResponse};
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::time::Duration;

/// A key's row as [`begin`] reads it.
struct KeyRow {
    request_hash: String,
    recovery_point: RecoveryPoint,
    locked_at: Option<DateTime<Utc>>,
    response_status: Option<i32>,
    response_body: Option<Vec<u8>>,
}

pub async fn begin(
    tx: &mut PgConnection,
    user: &str,
    key: &str,
    hash: &str,
    lock_timeout: Duration,
    now: DateTime<Utc>,
) -> Result<KeyState, ApiError> {
    let row = sqlx::query_as!(
        KeyRow,
        r#"SELECT request_hash, recovery_point AS "recovery_point: RecoveryPoint", locked_at,
                  response_status, response_body
             FROM idempotency_keys WHERE user_id = $1 AND key = $2 FOR UPDATE"#,
        user,
        key
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(KeyRow {
        request_hash: stored_hash,
        recovery_point: point,
        locked_at,
        response_status: status,
        response_body: body,
    }) = row
    else {
        return Ok(KeyState::New);
    };
    if stored_hash != hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used with different parameters; use a new key for a new request",
        ));
    }
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
    sqlx::query!(
        "UPDATE idempotency_keys SET locked_at = $3, updated_at = now() WHERE user_id = $1 AND key = $2",
        user,
        key,
        now
    )
    .execute(&mut *tx)
    .await?;
    Ok(KeyState::Resume(point))
}

/// Inserts the key (locked, `started`) unless it exists; true if this
/// call inserted it. A concurrent inserter of the same key waits for our
/// transaction and then finds the row (ON CONFLICT), so it can replay.
pub async fn claim(
    tx: &mut PgConnection,
    user: &str,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, recovery_point, locked_at)
         VALUES ($1, $2, $3, 'started', $4)
         ON CONFLICT (user_id, key) DO NOTHING",
        user,
        key,
        hash,
        now
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Inserts a new key, locked by the caller, at `point`.
pub async fn insert(
    tx: &mut PgConnection,
    user: &str,
    key: &str,
    hash: &str,
    point: RecoveryPoint,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, recovery_point, locked_at)
         VALUES ($1, $2, $3, $4, $5)",
        user,
        key,
        hash,
        point as RecoveryPoint,
        now
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A concurrent request inserted the same key first: it is in use.
pub fn insert_error(e: sqlx::Error) -> ApiError {
    if crate::db::is_unique_violation(&e) {
        return ApiError::Conflict {
            code: "idempotency_key_in_use",
            message: "a request with this Idempotency-Key is still being processed; retry shortly"
                .into(),
            details: None,
        };
    }
    e.into()
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

/// [`finish`] for many keys with one statement: each (user, key, answer).
pub async fn finish_many(
    conn: &mut PgConnection,
    answers: &[(&str, &str, &StoredResponse)],
) -> Result<(), sqlx::Error> {
    let users: Vec<&str> = answers.iter().map(|a| a.0).collect();
    let keys: Vec<&str> = answers.iter().map(|a| a.1).collect();
    let statuses: Vec<i32> = answers.iter().map(|a| i32::from(a.2.status)).collect();
    let bodies: Vec<&[u8]> = answers.iter().map(|a| a.2.body.as_slice()).collect();
    sqlx::query!(
        "UPDATE idempotency_keys k
            SET recovery_point = 'finished', response_status = u.status, response_body = u.body,
                locked_at = NULL, updated_at = now()
           FROM unnest($1::text[], $2::text[], $3::int4[], $4::bytea[]) AS u(user_id, key, status, body)
          WHERE k.user_id = u.user_id AND k.key = u.key AND k.recovery_point <> 'finished'",
        &users as &[&str],
        &keys as &[&str],
        &statuses,
        &bodies as &[&[u8]]
    )
    .execute(conn)
    .await?;
    Ok(())
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
    sqlx::query!(
        "UPDATE idempotency_keys
            SET recovery_point = 'finished', response_status = $3, response_body = $4,
                locked_at = NULL, updated_at = now()
          WHERE user_id = $1 AND key = $2 AND ($5 OR recovery_point <> 'finished')",
        user,
        key,
        i32::from(response.status),
        &response.body,
        replace
    )
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
    sqlx::query!(
        "UPDATE idempotency_keys SET locked_at = NULL, updated_at = now()
          WHERE user_id = $1 AND key = $2",
        user,
        key
    )
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
    let row = sqlx::query!(
        "SELECT response_status, response_body FROM idempotency_keys
          WHERE user_id = $1 AND key = $2 AND recovery_point = 'finished'",
        user,
        key
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row.map(|r| (r.response_status, r.response_body)) {
        Some((Some(status), Some(body))) => Some(StoredResponse {
            status: status as u16,
            body,
        }),
        _ => None,
    })
}
