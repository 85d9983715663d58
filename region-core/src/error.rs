//! The region core's one HTTP error type: every failure a handler can
//! return, its status code, and the JSON body `{"error":{code,message}}`.
//! Causes of 5xx errors are logged, never sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::ErrorBody;

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// 401: missing or invalid token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid token, wrong role.
    #[error("{0}")]
    Forbidden(String),
    /// 403 with a specific code (an admission pass missing or refused).
    #[error("{message}")]
    Denied {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// 404: no such resource (or not the caller's).
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// 405: the path exists, the method does not.
    #[error("this endpoint does not support that method")]
    MethodNotAllowed,
    /// 409: the request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
        /// Optional structured detail.
        details: Option<serde_json::Value>,
    },
    /// 410: the resource existed but its time ran out (an expired hold).
    #[error("{message}")]
    Gone {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// 415: the body is not declared as JSON.
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: well-formed but semantically invalid.
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// 429 with `Retry-After`: this client sent too many requests (or
    /// failed authentication too often).
    #[error("{message}")]
    TooManyRequests {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
        /// Seconds until a retry makes sense.
        retry_after_s: u32,
    },
    /// 503 with `Retry-After`: overloaded or a dependency is down.
    #[error("{message}")]
    Unavailable {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
        /// Seconds until a retry makes sense.
        retry_after_s: u32,
    },
    /// 500: a bug. The cause is logged.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// 400 helper.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
    /// 404 helper.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }
    /// 409 helper.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            details: None,
        }
    }
    /// 422 helper.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }
    /// 503 helper.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unavailable {
            code,
            message: message.into(),
            retry_after_s: 1,
        }
    }

    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone { .. } => StatusCode::GONE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Denied { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Gone { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Unavailable { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// Connection-level failures mean the database is unreachable or
    /// saturated: a 503 the client may retry. Anything else is a bug.
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                if matches!(e, sqlx::Error::PoolTimedOut) {
                    // Requests draw from the `main` pool (the writers'
                    // pools hold a connection per writer and do not wait).
                    metrics::counter!("db_pool_acquire_timeouts_total", "pool" => "main")
                        .increment(1);
                }
                tracing::warn!(error = %e, "database unavailable");
                Self::unavailable(
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                )
            }
            _ => Self::Internal(e.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    /// A database error carried in an `anyhow::Error` keeps its meaning
    /// (an exhausted pool is a 503, not a 500).
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<sqlx::Error>() {
            Ok(db) => db.into(),
            Err(e) => Self::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut body = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                ErrorBody::new("internal", "an internal error occurred")
            }
            other => ErrorBody::new(other.code(), other.to_string()),
        };
        if let Self::Conflict {
            details: Some(d), ..
        } = &self
        {
            body.error.details = Some(d.clone());
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if let Self::Unavailable { retry_after_s, .. }
        | Self::TooManyRequests { retry_after_s, .. } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(e) => Self::bad_request(
                "malformed_json",
                format!("request body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => Self::unprocessable("invalid_body", e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(_) => {
                Self::bad_request("body_too_large", "request body is too large or unreadable")
            }
            other => Self::bad_request("bad_request", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request("bad_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("bad_query", r.body_text())
    }
}

/// `Json` whose rejections are [`ApiError`]s (so malformed input gets our
/// JSON error body, not axum's plain text).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
