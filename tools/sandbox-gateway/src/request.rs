//! Turning request headers and bodies into checked values, once, at the
//! boundary: the `Idempotency-Key` header, JSON bodies, amounts,
//! currencies and references. Every failure is a 400 naming the problem.

use crate::error::ApiError;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Stripe's limit on Idempotency-Key length.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest caller reference accepted.
const MAX_REFERENCE_LEN: usize = 255;

/// The `Idempotency-Key` header, required on every `POST /v1/…`.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Err(ApiError::invalid_request(
            "idempotency_key_missing",
            "This request needs an Idempotency-Key header.",
        ));
    };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN => {
            Ok(key.to_string())
        }
        _ => Err(ApiError::invalid_request(
            "idempotency_key_invalid",
            format!(
                "The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters."
            ),
        )),
    }
}

/// Parses a JSON object body into `T`, also returning the parsed value
/// (the idempotency store compares it with a retry's).
pub(crate) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<(T, Value), ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request("invalid_json", format!("The body is not valid JSON: {e}."))
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid_request(
            "invalid_json",
            "The body must be a JSON object.",
        ));
    }
    // Deserializing from the `Value` keeps serde's message ("missing field
    // `amount`", "invalid type: …") without line/column noise.
    let parsed = T::deserialize(&value)
        .map_err(|e| ApiError::invalid_request("parameter_invalid", format!("{e}.")))?;
    Ok((parsed, value))
}

/// A positive amount in minor units.
pub(crate) fn positive_amount(amount: i64) -> Result<i64, ApiError> {
    if amount > 0 {
        Ok(amount)
    } else {
        Err(ApiError::invalid_request(
            "parameter_invalid",
            format!("amount must be a positive integer in minor units, got {amount}."),
        ))
    }
}

/// An ISO-4217-shaped currency code: three uppercase ASCII letters.
pub(crate) fn currency(code: &str) -> Result<String, ApiError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code.to_string())
    } else {
        Err(ApiError::invalid_request(
            "parameter_invalid",
            format!("currency must be three uppercase letters such as \"INR\", got {code:?}."),
        ))
    }
}

/// The caller's own id for the payment or refund (non-empty, bounded).
pub(crate) fn reference(reference: &str) -> Result<String, ApiError> {
    if !reference.is_empty() && reference.len() <= MAX_REFERENCE_LEN {
        Ok(reference.to_string())
    } else {
        Err(ApiError::invalid_request(
            "parameter_invalid",
            format!("reference must be 1 to {MAX_REFERENCE_LEN} bytes."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        amount: i64,
    }

    #[test]
    fn bodies() {
        assert!(json_body::<Body>(br#"{"amount": 5}"#).is_ok());
        for bad in [&b"{"[..], b"[1]", br#"{"amount": "5"}"#, b"{}"] {
            assert!(json_body::<Body>(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values() {
        assert!(positive_amount(1).is_ok());
        assert!(positive_amount(0).is_err());
        assert!(positive_amount(-5).is_err());
        assert!(currency("INR").is_ok());
        for bad in ["inr", "IN", "INRR", "I1R", ""] {
            assert!(currency(bad).is_err(), "{bad}");
        }
        assert!(reference("pay_1").is_ok());
        assert!(reference("").is_err());
        assert!(reference(&"x".repeat(256)).is_err());
    }

    #[test]
    fn idempotency_header() {
        let mut h = HeaderMap::new();
        assert!(idempotency_key(&h).is_err());
        h.insert("idempotency-key", "".parse().unwrap());
        assert!(idempotency_key(&h).is_err());
        h.insert("idempotency-key", "k-1".parse().unwrap());
        assert_eq!(idempotency_key(&h).unwrap(), "k-1");
    }
}
