//! Payment intents: `POST /v1/payment_intents` (confirm and capture at
//! once, with the faults of the payment-method token),
//! `GET /v1/payment_intents/{id}` and `GET /v1/payment_intents?reference=`.

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
    let fault = app.books().faults.for_attempt(charge.method, attempt);
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
