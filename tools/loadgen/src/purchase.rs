//! How a buyer's app pays for a hold, as a careful real client would, for
//! both the `checkout` benchmark and the demo:
//!
//! - one `Idempotency-Key` per purchase attempt;
//! - `503` (`payment_pending`: the gateway's outcome is unknown), `500`, a
//!   `409 idempotency_key_in_use` or no answer at all: the SAME key again,
//!   after `Retry-After` (bounded), since only the same key guarantees the
//!   card is not charged twice;
//! - `429` (the edge's rate limit; nothing reached the region): the same
//!   key after `Retry-After`;
//! - `402` (declined / failed / abandoned, nothing charged): a NEW key, at
//!   most `keys - 1` times;
//! - everything else is final: `201` (booked), `409 confirmation_failed`
//!   (charged, full refund scheduled) and the refusals (hold expired …).

use reqwest::StatusCode;
use shared::api::{Booking, Checkout};
use shared::HoldId;
use std::time::{Duration, Instant};
use testkit::api::{failure, Api, Method, RawResponse};
use uuid::Uuid;

/// The sandbox's "card that works" (the sandbox turns a share of these
/// into faults when its `fault_rate` is set).
pub const CARD_OK: &str = "pm_card_ok";

/// How long a buyer keeps trying.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Requests per key while the outcome stays unknown.
    pub requests_per_key: u32,
    /// Keys (purchase attempts) in all: 2 means "retry once after a 402".
    pub keys: u32,
    /// Longest `Retry-After` honoured (a longer one is cut to this).
    pub max_wait: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            requests_per_key: 6,
            keys: 2,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// One checkout request and its answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The Idempotency-Key it was sent with.
    pub key: String,
    /// HTTP status (None: no answer).
    pub status: Option<u16>,
    /// The error code, `booked`, or `transport`.
    pub code: String,
    /// Time to its answer.
    pub latency: Duration,
    /// The answer said `idempotent-replayed: true`.
    pub replayed: bool,
    /// How long the buyer waited before the next request (0 for the last).
    pub waited: Duration,
}

/// How the purchase ended.
#[derive(Debug, Clone)]
pub enum Paid {
    /// 201: confirmed. `body` is the exact answer (for replay checks).
    Booked {
        /// The booking.
        booking: Box<Booking>,
        /// The exact response body.
        body: Vec<u8>,
        /// The key that paid.
        key: String,
    },
    /// Every key got a 402: nothing charged.
    Declined,
    /// 409 confirmation_failed: charged, but the hold could not be
    /// honoured; the full amount is being refunded.
    Refunded,
    /// Still unknown after `requests_per_key` requests: the buyer gave up
    /// (reconciliation settles the payment later).
    Pending,
    /// Any other final answer.
    Refused {
        /// Status and code, e.g. `410 hold_expired`.
        kind: String,
    },
}

/// A purchase attempt, start to end.
#[derive(Debug, Clone)]
pub struct CheckoutRun {
    /// How it ended.
    pub outcome: Paid,
    /// Every request, in order.
    pub attempts: Vec<Attempt>,
    /// From the first request to the final answer, waits included.
    pub elapsed: Duration,
}

/// A fresh Idempotency-Key (`<prefix>-<uuid v7>`).
pub fn new_key(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7())
}

/// `POST /v1/holds/{hold}/checkout` with `key` (one request, no retry).
pub async fn checkout_once(
    api: &Api,
    bearer: &str,
    hold: HoldId,
    key: &str,
) -> anyhow::Result<RawResponse> {
    let body = Checkout {
        payment_method: CARD_OK.to_owned(),
    };
    api.send(
        Method::POST,
        &format!("/v1/holds/{hold}/checkout"),
        Some(bearer),
        Some(key),
        Some(&body),
    )
    .await
}

/// What to do after one answer.
enum Next {
    Done(Paid),
    /// Same key, after this long.
    Retry(Duration),
    /// A new key (after a 402).
    NewKey,
}

fn decide(resp: &anyhow::Result<RawResponse>, key: &str, max_wait: Duration) -> (Next, Attempt) {
    let mut attempt = Attempt {
        key: key.to_owned(),
        status: None,
        code: "transport".into(),
        latency: Duration::ZERO,
        replayed: false,
        waited: Duration::ZERO,
    };
    let r = match resp {
        Ok(r) => r,
        // No answer: the request may or may not have run. Same key.
        Err(_) => return (Next::Retry(Duration::from_secs(1)), attempt),
    };
    attempt.status = Some(r.status.as_u16());
    attempt.replayed = r.replayed();
    if r.status == StatusCode::CREATED {
        attempt.code = "booked".into();
        let next = match r.json::<Booking>() {
            Ok(b) => Next::Done(Paid::Booked {
                booking: Box::new(b),
                body: r.body.clone(),
                key: key.to_owned(),
            }),
            Err(e) => Next::Done(Paid::Refused {
                kind: format!("201 with an unreadable booking: {e}"),
            }),
        };
        return (next, attempt);
    }
    let f = r.failure();
    attempt.code = f.code.clone();
    let wait = |default: Duration| r.retry_after().unwrap_or(default).min(max_wait);
    let next = match (r.status.as_u16(), f.code.as_str()) {
        (402, _) => Next::NewKey,
        (409, "confirmation_failed") => Next::Done(Paid::Refunded),
        (409, "idempotency_key_in_use") => Next::Retry(wait(Duration::from_millis(500))),
        // The edge's rate limit: nothing was forwarded, so trying again
        // after Retry-After (same key, to be safe) is all there is to do.
        (429, _) => Next::Retry(wait(Duration::from_secs(1))),
        // 503 payment_pending (or overloaded) and 500: the outcome is not
        // known, so only the same key is safe.
        (503, _) => Next::Retry(wait(Duration::from_secs(2))),
        (500, _) => Next::Retry(wait(Duration::from_secs(1))),
        (status, code) => Next::Done(Paid::Refused {
            kind: format!("{status} {code}"),
        }),
    };
    (next, attempt)
}

/// Pays for `hold` with [`CARD_OK`], retrying as described in the module
/// doc; keys are `<key_prefix>-<uuid>`.
pub async fn pay(
    api: &Api,
    bearer: &str,
    hold: HoldId,
    key_prefix: &str,
    patience: Patience,
) -> CheckoutRun {
    let started = Instant::now();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut keys_used = 1;
    let mut key = new_key(key_prefix);
    let mut on_key = 0;
    let outcome = loop {
        let sent = Instant::now();
        let resp = checkout_once(api, bearer, hold, &key).await;
        let (next, mut attempt) = decide(&resp, &key, patience.max_wait);
        attempt.latency = sent.elapsed();
        on_key += 1;
        match next {
            Next::Done(paid) => {
                attempts.push(attempt);
                break paid;
            }
            Next::Retry(wait) => {
                if on_key >= patience.requests_per_key {
                    attempts.push(attempt);
                    break Paid::Pending;
                }
                attempt.waited = wait;
                attempts.push(attempt);
                tokio::time::sleep(wait).await;
            }
            Next::NewKey => {
                attempts.push(attempt);
                if keys_used >= patience.keys {
                    break Paid::Declined;
                }
                keys_used += 1;
                key = new_key(key_prefix);
                on_key = 0;
            }
        }
    };
    CheckoutRun {
        outcome,
        attempts,
        elapsed: started.elapsed(),
    }
}

/// `status code` of an error from [`Api`], or `transport`.
pub fn error_kind(e: &anyhow::Error) -> String {
    failure(e).map_or_else(
        || "transport".to_owned(),
        |f| format!("{} {}", f.status.as_u16(), f.code),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn answer(status: u16, code: &str, retry_after: Option<&str>) -> anyhow::Result<RawResponse> {
        let mut headers = HeaderMap::new();
        if let Some(s) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(s).expect("header"));
        }
        Ok(RawResponse {
            status: StatusCode::from_u16(status).expect("status"),
            headers,
            body: serde_json::to_vec(&serde_json::json!({"error": {"code": code, "message": "m"}}))
                .expect("json"),
        })
    }

    #[test]
    fn unknown_outcomes_retry_the_same_key_after_retry_after() {
        let max = Duration::from_secs(5);
        let (next, a) = decide(&answer(503, "payment_pending", Some("2")), "k1", max);
        assert!(matches!(next, Next::Retry(d) if d == Duration::from_secs(2)));
        assert_eq!(a.code, "payment_pending");
        let (next, _) = decide(&answer(503, "payment_pending", Some("60")), "k1", max);
        assert!(matches!(next, Next::Retry(d) if d == max));
        let (next, _) = decide(&answer(409, "idempotency_key_in_use", None), "k1", max);
        assert!(matches!(next, Next::Retry(_)));
        let (next, _) = decide(&answer(429, "rate_limited", Some("1")), "k1", max);
        assert!(matches!(next, Next::Retry(d) if d == Duration::from_secs(1)));
        let (next, a) = decide(&Err(anyhow::anyhow!("reset")), "k1", max);
        assert!(matches!(next, Next::Retry(_)));
        assert_eq!(a.status, None);
    }

    #[test]
    fn declines_take_a_new_key_and_other_answers_are_final() {
        let max = Duration::from_secs(5);
        let (next, _) = decide(&answer(402, "payment_declined", None), "k", max);
        assert!(matches!(next, Next::NewKey));
        let (next, _) = decide(&answer(409, "confirmation_failed", None), "k", max);
        assert!(matches!(next, Next::Done(Paid::Refunded)));
        let (next, _) = decide(&answer(410, "hold_expired", None), "k", max);
        assert!(matches!(next, Next::Done(Paid::Refused { kind }) if kind == "410 hold_expired"));
    }
}
