//! The checkout endpoint: parses and checks the request, runs the flow,
//! and answers with the key's stored response.

use super::flow;
use crate::auth::User;
use crate::error::ApiError;
use crate::holds::rules::parse_hold_id;
use crate::idempotency;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use shared::api::Checkout;

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Checkout, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let req: Checkout = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            )
        } else {
            ApiError::unprocessable("invalid_body", e.to_string())
        }
    })?;
    let pm = &req.payment_method;
    if pm.is_empty()
        || pm.len() > 64
        || !pm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::unprocessable(
            "invalid_payment_method",
            "payment_method must be a gateway token like pm_card_ok (1-64 letters, digits, _ or -)",
        ));
    }
    Ok(req)
}

#[tracing::instrument(skip_all, fields(hold = %raw_id))]
pub(super) async fn checkout(
    State(state): State<AppState>,
    user: User,
    axum::extract::Path(raw_id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Every answer counts, a refused request's too: the booking success
    // rate is `outcome="booked"` over all of `checkout_seconds_count`.
    let started = std::time::Instant::now();
    let result = answer(&state, &user, &raw_id, &headers, &body).await;
    let outcome = match &result {
        Ok(http) => status_label(http.status().as_u16()),
        Err(e) => e.code(),
    };
    metrics::histogram!("checkout_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Checks the request, runs the flow, and builds the answer.
async fn answer(
    state: &AppState,
    user: &User,
    raw_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let key = idempotency::key_from_headers(headers, true)?
        .ok_or_else(|| anyhow::anyhow!("required key missing"))?;
    let hold_id = parse_hold_id(raw_id)?;
    let req = parse_body(headers, body)?;
    let canonical = serde_json::to_vec(&req).map_err(anyhow::Error::from)?;
    let hash =
        idempotency::request_hash("POST", &format!("/v1/holds/{hold_id}/checkout"), &canonical);
    let answer = flow::run(state, user, hold_id.0, &key, &hash, &req).await?;
    let booked = answer.response.status == 201;
    // A replay (or a booking settled by someone else) does not know the
    // pass at hand; a booking made now does.
    let known_pass = answer.pass.clone();
    let mut http = idempotency::into_response(answer.response, answer.replayed);
    if booked {
        // A flash-sale purchase is done: tell the edge, which gives the
        // pass's waiting-room slot to the next user.
        let pass = match known_pass {
            Some(known) => known,
            None => sqlx::query_scalar!(
                "SELECT admission_pass_id FROM holds WHERE id = $1",
                hold_id.0
            )
            .fetch_optional(&state.db)
            .await?
            .flatten(),
        };
        if let Some(pid) = pass {
            if let Ok(v) = HeaderValue::from_str(&pid) {
                http.headers_mut().insert(ADMISSION_COMPLETED_HEADER, v);
            }
        }
    }
    Ok(http)
}

/// Response header naming the admission pass a booking completed.
pub const ADMISSION_COMPLETED_HEADER: &str = "admission-completed";

/// The `outcome` of a checkout answered with a stored response.
fn status_label(status: u16) -> &'static str {
    match status {
        201 => "booked",
        402 => "declined",
        409 => "refunded",
        _ => "other",
    }
}
