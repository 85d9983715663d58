//! Payment intents: `POST /v1/payment_intents` (confirm and capture at
//! once, with the faults of the payment-method token),
//! `GET /v1/payment_intents/{id}`, `GET /v1/payment_intents?reference=`
//! and `POST /v1/payment_intents/void` (by reference).

use crate::error::ApiError;
use crate::faults::{Fault, PaymentMethod};
use crate::idempotency::{self, Outcome};
use crate::ledger::{IntentStatus, PaymentIntent};
use crate::reply::Reply;
use crate::request;
use crate::state::{now_unix, AppState};
use crate::webhooks::{self, EventType};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Idempotency scope of this endpoint.
const ENDPOINT: &str = "POST /v1/payment_intents";

/// The intent routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/payment_intents", get(list).post(create))
        .route("/v1/payment_intents/void", axum::routing::post(void))
        .route("/v1/payment_intents/{id}", get(fetch))
}

/// `POST /v1/payment_intents` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateIntent {
    amount: i64,
    currency: String,
    payment_method: String,
    reference: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// A checked payment request.
struct Charge {
    amount: i64,
    currency: String,
    method: PaymentMethod,
    method_token: String,
    reference: String,
    metadata: BTreeMap<String, String>,
}

impl Charge {
    fn parse(body: CreateIntent) -> Result<Self, ApiError> {
        let method = PaymentMethod::parse(&body.payment_method).ok_or_else(|| {
            ApiError::invalid_request(
                "unknown_payment_method",
                format!(
                    "Unknown payment_method {:?}; the sandbox knows {}.",
                    body.payment_method,
                    PaymentMethod::TOKENS.join(", ")
                ),
            )
        })?;
        Ok(Self {
            amount: request::positive_amount(body.amount)?,
            currency: request::currency(&body.currency)?,
            method,
            method_token: body.payment_method,
            reference: request::reference(&body.reference)?,
            metadata: body.metadata,
        })
    }
}

#[tracing::instrument(skip_all)]
async fn create(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let checked = request::idempotency_key(&headers).and_then(|key| {
        let (body, value) = request::json_body::<CreateIntent>(&body)?;
        Ok((key, Charge::parse(body)?, value))
    });
    let (key, charge, value) = match checked {
        Ok(checked) => checked,
        Err(e) => return e.into_response(),
    };
    idempotency::run(&app, key, ENDPOINT, value, |attempt| {
        execute(&app, charge, attempt)
    })
    .await
}

/// One execution of a payment under its key.
async fn execute(app: &AppState, charge: Charge, attempt: u32) -> Outcome {
    let fault = {
        // One lock for the void check, the in-flight mark and the fault
        // draw: a void and a charge of one reference never both win.
        let mut books = app.books();
        if books.voided.contains(&charge.reference) {
            return Outcome::Final(ApiError::reference_voided().into_reply());
        }
        books.charging.insert(charge.reference.clone());
        books.faults.for_attempt(charge.method, attempt)
    };
    let reference = charge.reference.clone();
    let outcome = execute_charge(app, charge, fault, attempt).await;
    app.books().charging.remove(&reference);
    outcome
}

/// The charge itself, with its injected fault.
async fn execute_charge(app: &AppState, charge: Charge, fault: Fault, attempt: u32) -> Outcome {
    if fault != Fault::None {
        tracing::info!(?fault, attempt, reference = %charge.reference, "injecting a payment fault");
    }
    match fault {
        Fault::None => {
            let intent = record(app, charge, IntentStatus::Succeeded);
            Outcome::Final(Reply::json(StatusCode::OK, &intent))
        }
        Fault::Decline => {
            let intent = record(app, charge, IntentStatus::Failed);
            Outcome::Final(ApiError::card_declined(intent).into_reply())
        }
        Fault::LostSuccess => {
            let intent = record(app, charge, IntentStatus::Succeeded);
            Outcome::Lost {
                stored: Reply::json(StatusCode::OK, &intent),
                answer: ApiError::response_lost().into_reply(),
            }
        }
        Fault::Unavailable => Outcome::Transient(
            ApiError::unavailable(StatusCode::INTERNAL_SERVER_ERROR).into_reply(),
        ),
        Fault::Timeout => {
            tokio::select! {
                () = tokio::time::sleep(app.timeout) => {}
                () = app.shutting_down() => {}
            }
            Outcome::Transient(ApiError::gateway_timeout().into_reply())
        }
    }
}

/// Records the intent in the ledger and sends its webhook.
fn record(app: &AppState, charge: Charge, status: IntentStatus) -> PaymentIntent {
    let intent = PaymentIntent {
        id: format!("pi_{}", uuid::Uuid::new_v4().simple()),
        object: "payment_intent",
        amount: charge.amount,
        amount_refunded: 0,
        currency: charge.currency,
        status,
        payment_method: charge.method_token,
        reference: charge.reference,
        failure_code: (status == IntentStatus::Failed).then_some("card_declined"),
        metadata: charge.metadata,
        created: now_unix(),
    };
    app.books().ledger.add_intent(intent.clone());
    let event = match status {
        IntentStatus::Succeeded => EventType::IntentSucceeded,
        IntentStatus::Failed => EventType::IntentFailed,
    };
    webhooks::dispatch(app, event, &intent);
    intent
}

/// `POST /v1/payment_intents/void` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoidRequest {
    reference: String,
}

/// The answer to a void: what happened to the reference.
#[derive(Serialize)]
struct VoidReply {
    object: &'static str,
    reference: String,
    /// `voided` (never charged, and now never will be), or `exists` (an
    /// intent was made: see `payment_intent`).
    status: &'static str,
    payment_intent: Option<PaymentIntent>,
}

/// Voids a reference unless a charge was made with it: how a caller whose
/// charge request got no answer closes it safely. If an intent exists, it
/// is returned (succeeded or failed); if a charge is executing right now,
/// 409 `charge_in_progress` (ask again); otherwise the reference is voided
/// and any later charge with it is refused (409 `reference_voided`)
/// without taking money, even one that was already on its way.
#[tracing::instrument(skip_all)]
async fn void(State(app): State<AppState>, body: Bytes) -> Response {
    let reference = match request::json_body::<VoidRequest>(&body)
        .and_then(|(b, _)| request::reference(&b.reference))
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut books = app.books();
    let existing = books.ledger.intents_by_reference(Some(&reference));
    let intent = existing
        .iter()
        .find(|i| i.status == IntentStatus::Succeeded)
        .or(existing.first())
        .cloned();
    if intent.is_none() && books.charging.contains(&reference) {
        return ApiError::charge_in_progress().into_response();
    }
    if intent.is_none() {
        books.voided.insert(reference.clone());
    }
    let status = if intent.is_some() { "exists" } else { "voided" };
    drop(books);
    Reply::json(
        StatusCode::OK,
        &VoidReply {
            object: "payment_void",
            reference,
            status,
            payment_intent: intent,
        },
    )
    .into_response()
}

#[tracing::instrument(skip(app))]
async fn fetch(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let intent = app.books().ledger.intent(&id).cloned();
    match intent {
        Some(intent) => Reply::json(StatusCode::OK, &intent).into_response(),
        None => ApiError::not_found(format!("No such payment_intent: {id:?}.")).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    reference: Option<String>,
}

#[derive(Serialize)]
struct List {
    object: &'static str,
    data: Vec<PaymentIntent>,
}

/// Lists intents by caller reference (all without one), oldest first: how
/// a caller whose request got no answer learns whether it charged.
#[tracing::instrument(skip_all)]
async fn list(
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return ApiError::invalid_request("parameter_invalid", e.body_text()).into_response()
        }
    };
    let data = app
        .books()
        .ledger
        .intents_by_reference(query.reference.as_deref());
    Reply::json(
        StatusCode::OK,
        &List {
            object: "list",
            data,
        },
    )
    .into_response()
}
