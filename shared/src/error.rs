//! The JSON error body every HTTP boundary of the system returns.

use serde::{Deserialize, Serialize};

/// `{"error": {"code": "...", "message": "..."}}`: the one error shape of
/// every 4xx and 5xx response, so clients need one parser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// A machine-readable `code` (stable, snake_case) and a human `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable identifier clients may branch on, e.g. `seats_unavailable`.
    pub code: String,
    /// Explanation for a human; never contains internal error text.
    pub message: String,
    /// Optional structured detail (e.g. the seats that were taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ErrorBody {
    /// Builds an error body without details.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                details: None,
            },
        }
    }
}
