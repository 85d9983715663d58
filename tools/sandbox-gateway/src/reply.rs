//! A finished HTTP answer as a status and the exact body bytes: what the
//! idempotency store keeps and replays byte-for-byte.

use axum::body::Bytes;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Stripe's marker on a response served from the idempotency store.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A JSON response, kept as bytes so a replay is identical to the original.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    replayed: bool,
}

impl Reply {
    /// Serializes `value` as the body.
    pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self {
                status,
                body: body.into(),
                replayed: false,
            },
            // Only maps with non-string keys fail to serialize; none of
            // our types have one, so this is a bug worth a 500, not a panic.
            Err(e) => {
                tracing::error!(error = %e, "serializing a response body");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    body: Bytes::from_static(
                        br#"{"error":{"type":"api_error","code":"internal_error","message":"internal error"}}"#,
                    ),
                    replayed: false,
                }
            }
        }
    }

    /// The same reply, marked as served from the idempotency store.
    pub(crate) fn replayed(self) -> Self {
        Self {
            replayed: true,
            ..self
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response();
        if self.replayed {
            response
                .headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}
