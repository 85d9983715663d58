//! Redis replies as Upstash's JSON: strings, numbers, `null`, nested
//! arrays; `{"result": …}` / `{"error": …}` entries; and the
//! `Upstash-Encoding: base64` variant. Pure: no I/O.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use redis::Value;
use serde_json::{json, Value as Json};

/// Request header asking for base64-encoded strings in the result.
pub(crate) const ENCODING_HEADER: &str = "upstash-encoding";

/// How strings in a result are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// As text; bulk strings that are not valid UTF-8 are base64 (JSON
    /// strings cannot hold arbitrary bytes). Callers storing binary values
    /// should ask for [`Encoding::Base64`] to tell the two apart.
    Plain,
    /// Every string base64 (standard alphabet, padded) except the status
    /// reply `OK`, as Upstash documents.
    Base64,
}

impl Encoding {
    /// `Upstash-Encoding: base64` (any case) selects base64.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        match headers.get(ENCODING_HEADER) {
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"base64") => Self::Base64,
            _ => Self::Plain,
        }
    }

    fn bytes(self, bytes: Vec<u8>) -> Json {
        match self {
            Self::Plain => match String::from_utf8(bytes) {
                Ok(text) => Json::String(text),
                Err(not_utf8) => Json::String(BASE64.encode(not_utf8.into_bytes())),
            },
            Self::Base64 => Json::String(BASE64.encode(bytes)),
        }
    }
}

/// The error line Redis sent, e.g. `WRONGTYPE Operation against a key…`,
/// when `value` is an error reply.
pub(crate) fn error_text(value: &Value) -> Option<String> {
    match value {
        Value::ServerError(e) => Some(match e.details() {
            Some(detail) => format!("{} {detail}", e.code()),
            None => e.code().to_string(),
        }),
        _ => None,
    }
}

/// A pipeline or transaction entry: `{"result": …}` or `{"error": "…"}`.
pub(crate) fn entry(value: Value, encoding: Encoding) -> Json {
    match error_text(&value) {
        Some(error) => json!({ "error": error }),
        None => json!({ "result": to_json(value, encoding) }),
    }
}

/// One reply as JSON. The connection speaks RESP2, so only the first
/// group of variants occurs; the RESP3 ones are mapped as RESP2 would
/// carry them (maps as flat arrays, doubles and big numbers as strings,
/// booleans as 1/0) should a module or future server send them anyway.
/// An error nested in an array (EXEC, or a script returning
/// `redis.pcall` results) becomes `{"error": "…"}` in place.
pub(crate) fn to_json(value: Value, encoding: Encoding) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Int(n) => json!(n),
        Value::BulkString(bytes) => encoding.bytes(bytes),
        Value::Okay => Json::String("OK".into()),
        Value::SimpleString(text) => encoding.bytes(text.into_bytes()),
        Value::Array(items) | Value::Set(items) => array(items, encoding),
        Value::ServerError(_) => entry(value, encoding),
        Value::Map(pairs) => array(pairs.into_iter().flat_map(|(k, v)| [k, v]), encoding),
        Value::Attribute { data, .. } => to_json(*data, encoding),
        Value::Push { data, .. } => array(data, encoding),
        Value::Double(d) => encoding.bytes(d.to_string().into_bytes()),
        Value::Boolean(b) => json!(i64::from(b)),
        Value::VerbatimString { text, .. } => encoding.bytes(text.into_bytes()),
        Value::BigNumber(n) => encoding.bytes(n.to_string().into_bytes()),
    }
}

fn array(items: impl IntoIterator<Item = Value>, encoding: Encoding) -> Json {
    Json::Array(items.into_iter().map(|v| to_json(v, encoding)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_value(line: &str) -> Value {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn plain_replies() {
        let reply = Value::Array(vec![
            Value::Nil,
            Value::Int(-3),
            Value::BulkString(b"caf\xc3\xa9".to_vec()),
            Value::Okay,
            Value::SimpleString("PONG".into()),
            Value::Array(vec![Value::BulkString(b"x".to_vec()), Value::Array(vec![])]),
        ]);
        assert_eq!(
            to_json(reply, Encoding::Plain),
            json!([null, -3, "café", "OK", "PONG", ["x", []]])
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_come_back_as_base64() {
        let reply = Value::BulkString(vec![0xff, 0x00, 0x61]);
        assert_eq!(to_json(reply, Encoding::Plain), json!("/wBh"));
    }

    #[test]
    fn base64_encodes_every_string_but_the_ok_status() {
        let reply = Value::Array(vec![
            Value::Okay,
            Value::BulkString(b"OK".to_vec()),
            Value::SimpleString("PONG".into()),
            Value::Int(7),
            Value::Nil,
            Value::Array(vec![Value::BulkString(b"v".to_vec())]),
        ]);
        assert_eq!(
            to_json(reply, Encoding::Base64),
            json!(["OK", "T0s=", "UE9ORw==", 7, null, ["dg=="]])
        );
    }

    #[test]
    fn errors_keep_redis_text_verbatim() {
        let wrongtype =
            error_value("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(
            error_text(&wrongtype).as_deref(),
            Some("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        let err = error_value("ERR value is not an integer or out of range");
        assert_eq!(
            entry(err, Encoding::Base64),
            json!({"error": "ERR value is not an integer or out of range"})
        );
        assert_eq!(entry(Value::Int(2), Encoding::Plain), json!({"result": 2}));
        let nested = Value::Array(vec![Value::Int(1), error_value("ERR boom")]);
        assert_eq!(
            to_json(nested, Encoding::Plain),
            json!([1, {"error": "ERR boom"}])
        );
    }

    #[test]
    fn the_encoding_header_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        assert_eq!(Encoding::from_headers(&headers), Encoding::Plain);
        headers.insert("Upstash-Encoding", "Base64".parse().unwrap());
        assert_eq!(Encoding::from_headers(&headers), Encoding::Base64);
    }
}
