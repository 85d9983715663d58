//! The Upstash Redis REST protocol, as data: what to POST and what the
//! answer means. A command is a JSON array of strings POSTed to the base
//! URL with `Authorization: Bearer <token>`; the answer is
//! `{"result": …}` or `{"error": "…"}`. `/pipeline` takes an array of
//! commands and answers an array of those objects. Replies are strings,
//! integers, `null` and nested arrays (Redis RESP2 as JSON).
//!
//! Pure: the `Fetch` that carries these bodies is in `wasm::upstash`. We
//! speak the protocol ourselves instead of using `upstash-redis-rs`; see
//! `docs/adr/0007-upstash-over-rest.md`.

use serde_json::Value;
use sha1::{Digest, Sha1};

/// A Redis reply as Upstash's JSON carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `null` (a missing key, a Lua `false`).
    Nil,
    /// An integer reply (Lua numbers are truncated to integers by Redis).
    Int(i64),
    /// A bulk or status string.
    Str(String),
    /// A (possibly nested) array.
    Array(Vec<Reply>),
    /// An error nested in an array (e.g. a failed `redis.pcall`).
    Error(String),
}

/// Why a call to the state store did not give a usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstashError {
    /// Transport failure, timeout, 5xx or 429: the store is unreachable
    /// for now. Routes fail open or closed on this.
    #[error("the state store is unreachable: {0}")]
    Unavailable(String),
    /// 401/403: the token is wrong (a configuration error).
    #[error("the state store refused the token")]
    Unauthorized,
    /// `EVALSHA` of a script the server does not have yet.
    #[error("NOSCRIPT")]
    NoScript,
    /// Redis answered with an error (wrong type, script error, …).
    #[error("redis error: {0}")]
    Redis(String),
    /// The answer was not what the protocol (or our script) promises.
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

impl UpstashError {
    /// Whether this is the store being unreachable (as opposed to a bug
    /// or a misconfiguration).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

fn protocol(what: impl Into<String>) -> UpstashError {
    UpstashError::Protocol(what.into())
}

impl Reply {
    /// Converts Upstash's JSON for one reply.
    pub fn from_json(v: Value) -> Result<Self, UpstashError> {
        Ok(match v {
            Value::Null => Self::Nil,
            Value::Bool(b) => Self::Int(i64::from(b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => return Err(protocol(format!("non-integer number {n}"))),
            },
            Value::String(s) => Self::Str(s),
            Value::Array(items) => Self::Array(
                items
                    .into_iter()
                    .map(Self::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(mut o) => match (o.remove("error"), o.remove("result")) {
                (Some(Value::String(e)), _) => Self::Error(e),
                (None, Some(r)) => Self::from_json(r)?,
                _ => return Err(protocol("an object that is neither result nor error")),
            },
        })
    }

    /// An integer reply (numeric strings are accepted: `GET` of a counter).
    pub fn int(&self) -> Result<i64, UpstashError> {
        match self {
            Self::Int(i) => Ok(*i),
            Self::Str(s) => s
                .parse()
                .map_err(|_| protocol(format!("expected an integer, got {s:?}"))),
            other => Err(protocol(format!("expected an integer, got {other:?}"))),
        }
    }

    /// A string or nil.
    pub fn opt_str(&self) -> Result<Option<&str>, UpstashError> {
        match self {
            Self::Nil => Ok(None),
            Self::Str(s) => Ok(Some(s)),
            other => Err(protocol(format!("expected a string, got {other:?}"))),
        }
    }

    /// An array reply.
    pub fn array(&self) -> Result<&[Reply], UpstashError> {
        match self {
            Self::Array(items) => Ok(items),
            other => Err(protocol(format!("expected an array, got {other:?}"))),
        }
    }
}

/// The body of `POST /`: one command as a JSON array of strings.
pub fn command_body<S: AsRef<str>>(args: &[S]) -> String {
    let items: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

/// The body of `POST /pipeline`: an array of commands.
pub fn pipeline_body<S: AsRef<str>>(commands: &[Vec<S>]) -> String {
    let items: Vec<Vec<&str>> = commands
        .iter()
        .map(|c| c.iter().map(AsRef::as_ref).collect())
        .collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

fn error_of(message: String) -> UpstashError {
    if message.starts_with("NOSCRIPT") {
        UpstashError::NoScript
    } else {
        UpstashError::Redis(message)
    }
}

fn status_error(status: u16) -> Option<UpstashError> {
    match status {
        401 | 403 => Some(UpstashError::Unauthorized),
        429 | 500..=599 => Some(UpstashError::Unavailable(format!("HTTP {status}"))),
        _ => None,
    }
}

/// Decodes the answer to `POST /`.
pub fn decode_command(status: u16, body: &[u8]) -> Result<Reply, UpstashError> {
    if let Some(e) = status_error(status) {
        return Err(e);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| protocol(format!("HTTP {status} with a body that is not JSON")))?;
    match Reply::from_json(v)? {
        Reply::Error(message) => Err(error_of(message)),
        reply if status == 200 => Ok(reply),
        _ => Err(protocol(format!("HTTP {status} without an error"))),
    }
}

/// Decodes the answer to `POST /pipeline` of `n` commands: one result per
/// command, each a reply or that command's error.
pub fn decode_pipeline(
    status: u16,
    body: &[u8],
    n: usize,
) -> Result<Vec<Result<Reply, UpstashError>>, UpstashError> {
    if let Some(e) = status_error(status) {
        return Err(e);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| protocol(format!("HTTP {status} with a body that is not JSON")))?;
    let Value::Array(entries) = v else {
        return match Reply::from_json(v)? {
            Reply::Error(message) => Err(error_of(message)),
            _ => Err(protocol("a pipeline answer that is not an array")),
        };
    };
    if entries.len() != n {
        return Err(protocol(format!(
            "{} answers to {n} commands",
            entries.len()
        )));
    }
    entries
        .into_iter()
        .map(|e| {
            if !e.is_object() {
                return Err(protocol("a pipeline entry that is not an object"));
            }
            Ok(match Reply::from_json(e)? {
                Reply::Error(message) => Err(error_of(message)),
                reply => Ok(reply),
            })
        })
        .collect()
}

/// `keys` with `prefix` in front of each (see `KEY_PREFIX`).
pub fn prefixed<S: AsRef<str>>(prefix: &str, keys: &[S]) -> Vec<String> {
    keys.iter()
        .map(|k| format!("{prefix}{}", k.as_ref()))
        .collect()
}

/// A Lua script, sent by `EVALSHA` (its SHA-1) and, when the server does
/// not have it yet, by `EVAL` (which also caches it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// Name for logs.
    pub name: &'static str,
    /// Lua source.
    pub source: &'static str,
}

impl Script {
    /// Lowercase hex SHA-1 of the source, as `SCRIPT LOAD` returns it.
    pub fn sha1(&self) -> String {
        hex::encode(Sha1::digest(self.source.as_bytes()))
    }

    /// `EVALSHA sha numkeys keys… args…`.
    pub fn evalsha<S: AsRef<str>>(&self, keys: &[S], args: &[S]) -> Vec<String> {
        self.command("EVALSHA", self.sha1(), keys, args)
    }

    /// `EVAL source numkeys keys… args…`.
    pub fn eval<S: AsRef<str>>(&self, keys: &[S], args: &[S]) -> Vec<String> {
        self.command("EVAL", self.source.to_owned(), keys, args)
    }

    fn command<S: AsRef<str>>(
        &self,
        verb: &str,
        body: String,
        keys: &[S],
        args: &[S],
    ) -> Vec<String> {
        let mut out = Vec::with_capacity(3 + keys.len() + args.len());
        out.push(verb.to_owned());
        out.push(body);
        out.push(keys.len().to_string());
        out.extend(keys.iter().map(|k| k.as_ref().to_owned()));
        out.extend(args.iter().map(|a| a.as_ref().to_owned()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_json_arrays_of_strings() {
        assert_eq!(
            command_body(&["SET", "k", "v \"q\""]),
            r#"["SET","k","v \"q\""]"#
        );
        assert_eq!(
            pipeline_body(&[vec!["INCR", "a"], vec!["GET", "b"]]),
            r#"[["INCR","a"],["GET","b"]]"#
        );
    }

    #[test]
    fn replies_decode_into_typed_values() {
        let r = decode_command(200, br#"{"result":[1,"x",null,[2,"3"]]}"#).unwrap();
        let a = r.array().unwrap();
        assert_eq!(a[0].int().unwrap(), 1);
        assert_eq!(a[1].opt_str().unwrap(), Some("x"));
        assert_eq!(a[2].opt_str().unwrap(), None);
        assert_eq!(
            a[3].array().unwrap()[1].int().unwrap(),
            3,
            "numeric strings"
        );
        assert!(a[1].int().is_err());
        assert!(a[0].array().is_err());
        assert_eq!(
            decode_command(200, br#"{"result":"OK"}"#).unwrap(),
            Reply::Str("OK".into())
        );
        assert_eq!(
            decode_command(200, br#"{"result":null}"#).unwrap(),
            Reply::Nil
        );
    }

    #[test]
    fn errors_map_to_what_the_caller_must_do() {
        assert_eq!(
            decode_command(400, br#"{"error":"NOSCRIPT No matching script."}"#),
            Err(UpstashError::NoScript)
        );
        assert_eq!(
            decode_command(400, br#"{"error":"WRONGTYPE Operation against a key"}"#),
            Err(UpstashError::Redis(
                "WRONGTYPE Operation against a key".into()
            ))
        );
        assert_eq!(decode_command(401, b"{}"), Err(UpstashError::Unauthorized));
        assert!(decode_command(502, b"bad gateway")
            .unwrap_err()
            .is_unavailable());
        assert!(decode_command(429, b"").unwrap_err().is_unavailable());
        assert!(matches!(
            decode_command(200, b"<html>"),
            Err(UpstashError::Protocol(_))
        ));
        assert!(matches!(
            decode_command(200, br#"{"result":1.5}"#),
            Err(UpstashError::Protocol(_))
        ));
        assert!(matches!(
            decode_command(404, br#"{"result":1}"#),
            Err(UpstashError::Protocol(_))
        ));
    }

    #[test]
    fn pipelines_give_one_result_per_command() {
        let out = decode_pipeline(
            200,
            br#"[{"result":1},{"error":"ERR no"},{"result":null}]"#,
            3,
        )
        .unwrap();
        assert_eq!(out[0], Ok(Reply::Int(1)));
        assert_eq!(out[1], Err(UpstashError::Redis("ERR no".into())));
        assert_eq!(out[2], Ok(Reply::Nil));
        assert!(decode_pipeline(200, br#"[{"result":1}]"#, 2).is_err());
        assert_eq!(
            decode_pipeline(400, br#"{"error":"ERR bad"}"#, 1),
            Err(UpstashError::Redis("ERR bad".into()))
        );
    }

    #[test]
    fn keys_can_share_a_database_under_a_prefix() {
        assert_eq!(
            prefixed("t1:", &["wr:{s}:q", "edge:deny"]),
            ["t1:wr:{s}:q", "t1:edge:deny"]
        );
        assert_eq!(prefixed("", &["k"]), ["k"]);
    }

    #[test]
    fn scripts_go_by_sha_then_by_source() {
        let s = Script {
            name: "t",
            source: "return 1",
        };
        // SHA-1("return 1"), as SCRIPT LOAD reports it.
        assert_eq!(s.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_eq!(
            s.evalsha(&["k"], &["a", "b"]),
            vec!["EVALSHA", &s.sha1(), "1", "k", "a", "b"]
        );
        assert_eq!(s.eval::<&str>(&[], &[]), vec!["EVAL", "return 1", "0"]);
    }
}
