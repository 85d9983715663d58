//! The sandbox's own controls, which a real gateway does not have:
//! `POST /sandbox/faults`, `PUT /sandbox/webhook` and `GET /sandbox/ledger`.

use crate::config::{check_fault_rate, check_webhook_url};
use crate::error::ApiError;
use crate::reply::Reply;
use crate::request;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::{Deserialize, Serialize};

/// The control routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sandbox/faults", get(faults).post(set_faults))
        .route("/sandbox/webhook", put(set_webhook))
        .route("/sandbox/ledger", get(ledger))
}

/// `POST /sandbox/faults` body; absent fields are left as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFaults {
    refunds_fail_next: Option<u32>,
    refunds_refuse_next: Option<u32>,
    fault_rate: Option<f64>,
}

async fn faults(State(app): State<AppState>) -> Response {
    let view = app.books().faults.view();
    Reply::json(StatusCode::OK, &view).into_response()
}

#[tracing::instrument(skip_all)]
async fn set_faults(State(app): State<AppState>, body: Bytes) -> Response {
    let set = match request::json_body::<SetFaults>(&body) {
        Ok((set, _)) => set,
        Err(e) => return e.into_response(),
    };
    if let Some(rate) = set.fault_rate {
        if let Err(e) = check_fault_rate(rate) {
            return ApiError::invalid_request("parameter_invalid", format!("fault_rate {e}."))
                .into_response();
        }
    }
    let view = {
        let mut books = app.books();
        if let Some(n) = set.refunds_fail_next {
            books.faults.set_refunds_fail_next(n);
        }
        if let Some(n) = set.refunds_refuse_next {
            books.faults.set_refunds_refuse_next(n);
        }
        if let Some(rate) = set.fault_rate {
            books.faults.set_fault_rate(rate);
        }
        books.faults.view()
    };
    tracing::info!(?view, "fault settings changed");
    Reply::json(StatusCode::OK, &view).into_response()
}

/// `PUT /sandbox/webhook` body and answer; `null` stops deliveries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Webhook {
    url: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn set_webhook(State(app): State<AppState>, body: Bytes) -> Response {
    let webhook = match request::json_body::<Webhook>(&body) {
        Ok((webhook, _)) => webhook,
        Err(e) => return e.into_response(),
    };
    if let Some(url) = &webhook.url {
        if let Err(e) = check_webhook_url(url) {
            return ApiError::invalid_request("parameter_invalid", format!("url {e}."))
                .into_response();
        }
    }
    app.books().webhook_url.clone_from(&webhook.url);
    tracing::info!(url = ?webhook.url, "webhook URL changed");
    Reply::json(StatusCode::OK, &webhook).into_response()
}

async fn ledger(State(app): State<AppState>) -> Response {
    let view = app.books().ledger.view();
    Reply::json(StatusCode::OK, &view).into_response()
}
