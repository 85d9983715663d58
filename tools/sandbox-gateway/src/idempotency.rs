//! Stripe's idempotency rules for `POST` requests carrying an
//! `Idempotency-Key`:
//!
//! - the first *completed* answer for (API key, Idempotency-Key) is stored,
//!   status and exact body bytes, and replayed on every retry;
//! - the key with another endpoint or another body → 400
//!   `idempotency_key_reused`;
//! - a retry while the first request is still running → 409
//!   `idempotency_key_in_use`;
//! - answers that did nothing (5xx, timeouts) are not stored, so a retry
//!   runs again.
//!
//! [`IdempotencyStore`] is the pure state machine; [`run`] drives a
//! handler through it. Keys never expire (Stripe keeps them 24 hours; a
//! sandbox process does not live that long).

use crate::error::ApiError;
use crate::reply::Reply;
use crate::state::AppState;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;

/// (API key, Idempotency-Key): keys of different accounts never collide.
type Scope = (String, String);

/// What became of one key.
#[derive(Debug)]
struct Entry {
    /// The endpoint and parsed body of the first request; a retry must
    /// match both. Parsed JSON, so key order and spacing do not matter.
    endpoint: &'static str,
    request: Value,
    /// Executions so far (replays and 409s do not count).
    attempts: u32,
    state: State,
}

#[derive(Debug)]
enum State {
    /// No request running and nothing stored: the next one executes.
    Idle,
    /// A request with this key is executing.
    InFlight,
    /// The stored answer.
    Done(Reply),
}

/// The decision for an incoming request.
#[derive(Debug)]
pub(crate) enum Begin {
    /// Execute it; this is execution number `attempt` (1-based).
    Execute { attempt: u32 },
    /// Answer with the stored reply.
    Replay(Reply),
    /// 409: the first request is still running.
    InUse,
    /// 400: the key belongs to a different request.
    Reused,
}

/// Every key seen since start-up.
#[derive(Debug, Default)]
pub(crate) struct IdempotencyStore {
    entries: HashMap<Scope, Entry>,
}

impl IdempotencyStore {
    /// Decides what to do with a request; on `Execute` the key is marked
    /// in flight until [`IdempotencyStore::finish`].
    pub(crate) fn begin(
        &mut self,
        scope: &Scope,
        endpoint: &'static str,
        request: &Value,
    ) -> Begin {
        let entry = self.entries.entry(scope.clone()).or_insert_with(|| Entry {
            endpoint,
            request: request.clone(),
            attempts: 0,
            state: State::Idle,
        });
        // Checked before anything else, as Stripe does: even a stored
        // answer is not handed to a request it was not the answer to.
        if entry.endpoint != endpoint || entry.request != *request {
            return Begin::Reused;
        }
        match &entry.state {
            State::Done(reply) => Begin::Replay(reply.clone()),
            State::InFlight => Begin::InUse,
            State::Idle => {
                entry.attempts += 1;
                entry.state = State::InFlight;
                Begin::Execute {
                    attempt: entry.attempts,
                }
            }
        }
    }

    /// Ends the execution: `Some` stores the answer for replay, `None`
    /// forgets it so the next retry executes again.
    pub(crate) fn finish(&mut self, scope: &Scope, stored: Option<Reply>) {
        if let Some(entry) = self.entries.get_mut(scope) {
            entry.state = stored.map_or(State::Idle, State::Done);
        }
    }

    /// Keys whose request is executing right now.
    pub(crate) fn in_flight(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.state, State::InFlight))
            .count()
    }
}

/// How an execution ended.
pub(crate) enum Outcome {
    /// Something happened (success, decline, a rule said no): store the
    /// reply and answer with it.
    Final(Reply),
    /// Something happened but the caller is told otherwise: store
    /// `stored`, answer `answer` (the "lost response" fault).
    Lost { stored: Reply, answer: Reply },
    /// Nothing happened: answer without storing; a retry runs again.
    Transient(Reply),
}

/// Runs `execute` at most once per completed key, as the module docs say.
/// `execute` gets the attempt number (faults hit the first one only).
pub(crate) async fn run<F, Fut>(
    app: &AppState,
    idempotency_key: String,
    endpoint: &'static str,
    request: Value,
    execute: F,
) -> Response
where
    F: FnOnce(u32) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let scope = (app.api_key.clone(), idempotency_key);
    // Bound to a variable so the lock is released before any `.await`.
    let begin = app.books().idempotency.begin(&scope, endpoint, &request);
    let attempt = match begin {
        Begin::Execute { attempt } => attempt,
        Begin::Replay(reply) => return reply.replayed().into_response(),
        Begin::InUse => return ApiError::idempotency_key_in_use().into_response(),
        Begin::Reused => return ApiError::idempotency_key_reused().into_response(),
    };
    let guard = InFlight {
        app: app.clone(),
        scope: Some(scope),
    };
    let (stored, answer) = match execute(attempt).await {
        Outcome::Final(reply) => (Some(reply.clone()), reply),
        Outcome::Lost { stored, answer } => (Some(stored), answer),
        Outcome::Transient(reply) => (None, reply),
    };
    guard.finish(stored);
    answer.into_response()
}

/// Marks a key in flight; if the handler is dropped mid-way (the client
/// hung up during a `timeout` fault) the key goes back to idle instead of
/// answering 409 forever.
struct InFlight {
    app: AppState,
    scope: Option<Scope>,
}

impl InFlight {
    fn finish(mut self, stored: Option<Reply>) {
        if let Some(scope) = self.scope.take() {
            self.app.books().idempotency.finish(&scope, stored);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(scope) = self.scope.take() {
            self.app.books().idempotency.finish(&scope, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    fn scope(key: &str) -> Scope {
        ("sk".to_string(), key.to_string())
    }

    fn reply(status: StatusCode, body: &str) -> Reply {
        Reply::json(status, &json!({ "body": body }))
    }

    #[test]
    fn stores_and_replays_the_first_completed_answer() {
        let mut s = IdempotencyStore::default();
        let req = json!({"amount": 100});
        assert!(matches!(
            s.begin(&scope("k"), "intents", &req),
            Begin::Execute { attempt: 1 }
        ));
        assert!(matches!(
            s.begin(&scope("k"), "intents", &req),
            Begin::InUse
        ));
        assert_eq!(s.in_flight(), 1);
        s.finish(&scope("k"), Some(reply(StatusCode::OK, "first")));
        assert_eq!(s.in_flight(), 0);
        match s.begin(&scope("k"), "intents", &req) {
            Begin::Replay(r) => assert_eq!(r.body, reply(StatusCode::OK, "first").body),
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    #[test]
    fn unstored_answers_let_the_retry_run_again() {
        let mut s = IdempotencyStore::default();
        let req = json!({"amount": 100});
        assert!(matches!(
            s.begin(&scope("k"), "intents", &req),
            Begin::Execute { attempt: 1 }
        ));
        s.finish(&scope("k"), None);
        assert!(matches!(
            s.begin(&scope("k"), "intents", &req),
            Begin::Execute { attempt: 2 }
        ));
    }

    #[test]
    fn other_body_or_endpoint_is_reuse() {
        let mut s = IdempotencyStore::default();
        let req = json!({"amount": 100, "currency": "INR"});
        let _ = s.begin(&scope("k"), "intents", &req);
        s.finish(&scope("k"), Some(reply(StatusCode::OK, "x")));
        let reordered: Value =
            serde_json::from_str(r#"{ "currency": "INR", "amount": 100 }"#).unwrap();
        assert!(matches!(
            s.begin(&scope("k"), "intents", &reordered),
            Begin::Replay(_)
        ));
        assert!(matches!(
            s.begin(
                &scope("k"),
                "intents",
                &json!({"amount": 101, "currency": "INR"})
            ),
            Begin::Reused
        ));
        assert!(matches!(
            s.begin(&scope("k"), "refunds", &req),
            Begin::Reused
        ));
        // Another account's identical key is a different key.
        let other = ("sk_other".to_string(), "k".to_string());
        assert!(matches!(
            s.begin(&other, "refunds", &req),
            Begin::Execute { attempt: 1 }
        ));
    }
}
