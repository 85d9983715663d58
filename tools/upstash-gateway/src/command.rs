//! A Redis command as the REST protocol carries it, parsed once at the
//! boundary: a JSON array (`["SET","k","v","EX",100]`), a JSON array of
//! them (pipelines, transactions), or a path (`/set/k/v/ex/100`, plus the
//! POST body and query parameters). Pure: no I/O.

use crate::error::GatewayError;
use serde_json::Value as Json;

/// A command name and its arguments, as bytes (Redis is binary-safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    /// Never empty: the name is `args[0]`.
    args: Vec<Vec<u8>>,
}

impl Command {
    /// From already split words; `None` when there are none.
    fn from_args(args: Vec<Vec<u8>>) -> Option<Self> {
        (!args.is_empty()).then_some(Self { args })
    }

    /// Name and arguments.
    pub(crate) fn args(&self) -> &[Vec<u8>] {
        &self.args
    }

    /// The command name in upper case, for policy checks and logs.
    pub(crate) fn name(&self) -> String {
        String::from_utf8_lossy(&self.args[0]).to_ascii_uppercase()
    }

    /// The `redis` crate's form of it.
    pub(crate) fn to_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::Cmd::new();
        for arg in &self.args {
            cmd.arg(arg.as_slice());
        }
        cmd
    }

    /// `["SET","k","v"]`: one command in a JSON body.
    pub(crate) fn parse_json(body: &[u8]) -> Result<Self, GatewayError> {
        let value: Json = serde_json::from_slice(body).map_err(malformed_json)?;
        Self::from_json(&value, None)
    }

    /// `[["SET","a","1"],["INCR","a"]]`: the body of `/pipeline` and
    /// `/multi-exec`. At least one command; every entry must parse, or the
    /// whole request is refused (nothing runs).
    pub(crate) fn parse_json_batch(body: &[u8]) -> Result<Vec<Self>, GatewayError> {
        let value: Json = serde_json::from_slice(body).map_err(malformed_json)?;
        let Json::Array(entries) = value else {
            return Err(GatewayError::BadRequest(
                "ERR the body must be a JSON array of commands, e.g. [[\"SET\",\"k\",\"v\"],[\"GET\",\"k\"]]"
                    .into(),
            ));
        };
        if entries.is_empty() {
            return Err(GatewayError::BadRequest(
                "ERR the body must hold at least one command".into(),
            ));
        }
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| Self::from_json(entry, Some(i)))
            .collect()
    }

    /// One JSON command; `index` names its place in a batch for messages.
    fn from_json(value: &Json, index: Option<usize>) -> Result<Self, GatewayError> {
        let at = index.map(|i| format!(" (command {i})")).unwrap_or_default();
        let Json::Array(items) = value else {
            return Err(GatewayError::BadRequest(format!(
                "ERR a command must be a JSON array such as [\"GET\",\"key\"]{at}"
            )));
        };
        let args = items
            .iter()
            .enumerate()
            .map(|(j, item)| {
                json_arg(item).ok_or_else(|| {
                    GatewayError::BadRequest(format!(
                        "ERR argument {j}{at} must be a string, number or boolean, got {item}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_args(args)
            .ok_or_else(|| GatewayError::BadRequest(format!("ERR empty command{at}")))
    }

    /// A path-style command: `/set/k/v/ex/100` (segments percent-decoded
    /// one by one, so `%2F` is a slash inside an argument), then the body
    /// if there is one (Upstash appends a POST body as the last argument,
    /// byte for byte), then each query parameter as `KEY value` (`?EX=100`;
    /// a parameter without a value, `?NX`, adds only its key). `_token` is
    /// authentication, never an argument.
    pub(crate) fn parse_path(
        path: &str,
        body: &[u8],
        query: &[(String, String)],
    ) -> Result<Self, GatewayError> {
        let mut args: Vec<Vec<u8>> = path
            .strip_prefix('/')
            .unwrap_or(path)
            .split('/')
            .map(percent_decode)
            .collect();
        if !body.is_empty() {
            args.push(body.to_vec());
        }
        for (key, value) in query.iter().filter(|(k, _)| k != crate::auth::TOKEN_PARAM) {
            args.push(key.as_bytes().to_vec());
            if !value.is_empty() {
                args.push(value.as_bytes().to_vec());
            }
        }
        match Self::from_args(args) {
            Some(command) if !command.args[0].is_empty() => Ok(command),
            _ => Err(GatewayError::BadRequest(
                "ERR no command in the path; send e.g. GET /get/<key>".into(),
            )),
        }
    }
}

fn malformed_json(e: serde_json::Error) -> GatewayError {
    GatewayError::BadRequest(format!("ERR the body is not valid JSON: {e}"))
}

/// Strings as they are; numbers and booleans in their JSON text form
/// (`100`, `1.5`, `true`), as Upstash's clients send them. `null`, arrays
/// and objects have no Redis form.
fn json_arg(value: &Json) -> Option<Vec<u8>> {
    match value {
        Json::String(s) => Some(s.as_bytes().to_vec()),
        Json::Number(n) => Some(n.to_string().into_bytes()),
        Json::Bool(b) => Some(b.to_string().into_bytes()),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// `%XX` to its byte; a `%` not followed by two hex digits stays as it is
/// (lenient, like browsers). `+` is a plus sign: in a path it never means
/// a space.
fn percent_decode(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(command: &Command) -> Vec<String> {
        command
            .args()
            .iter()
            .map(|a| String::from_utf8(a.clone()).unwrap())
            .collect()
    }

    fn bad_request(result: Result<impl std::fmt::Debug, GatewayError>) -> String {
        match result {
            Err(GatewayError::BadRequest(message)) => message,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn json_arguments_take_their_text_form() {
        let command = Command::parse_json(br#"["SET","k",1.5,"EX",100,"GET",true]"#).unwrap();
        assert_eq!(
            words(&command),
            ["SET", "k", "1.5", "EX", "100", "GET", "true"]
        );
        assert_eq!(command.name(), "SET");
    }

    #[test]
    fn unusable_json_is_refused_with_a_reason() {
        assert!(bad_request(Command::parse_json(b"[\"GET\"")).contains("not valid JSON"));
        assert!(bad_request(Command::parse_json(br#"{"cmd":"GET"}"#)).contains("JSON array"));
        assert!(bad_request(Command::parse_json(b"[]")).contains("empty command"));
        assert!(bad_request(Command::parse_json(br#"["SET","k",null]"#)).contains("argument 2"));
        assert!(bad_request(Command::parse_json(br#"["SET","k",["v"]]"#)).contains("argument 2"));
    }

    #[test]
    fn a_batch_needs_commands_and_every_one_must_parse() {
        let batch = Command::parse_json_batch(br#"[["SET","a",1],["INCR","a"]]"#).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(words(&batch[1]), ["INCR", "a"]);
        assert!(bad_request(Command::parse_json_batch(b"[]")).contains("at least one"));
        assert!(bad_request(Command::parse_json_batch(br#"["GET","a"]"#)).contains("(command 0)"));
        assert!(
            bad_request(Command::parse_json_batch(br#"[["GET","a"],[]]"#)).contains("(command 1)")
        );
    }

    #[test]
    fn path_segments_are_decoded_one_by_one() {
        let command = Command::parse_path("/set/a%2Fb/x+y%20z/ex/100", b"", &[]).unwrap();
        assert_eq!(words(&command), ["set", "a/b", "x+y z", "ex", "100"]);
        // A stray `%` stays; an empty segment is an empty argument.
        let command = Command::parse_path("/set/100%/", b"", &[]).unwrap();
        assert_eq!(words(&command), ["set", "100%", ""]);
        let binary = Command::parse_path("/set/k/%FF%00", b"", &[]).unwrap();
        assert_eq!(binary.args()[2], vec![0xFF, 0x00]);
    }

    #[test]
    fn body_then_query_parameters_follow_the_path() {
        let query = vec![
            ("_token".to_string(), "secret".to_string()),
            ("EX".to_string(), "100".to_string()),
            ("NX".to_string(), String::new()),
        ];
        let command = Command::parse_path("/set/k", b"{\"a\":1}", &query).unwrap();
        assert_eq!(
            words(&command),
            ["set", "k", "{\"a\":1}", "EX", "100", "NX"]
        );
    }

    #[test]
    fn a_path_needs_a_command_name() {
        assert!(bad_request(Command::parse_path("/", b"", &[])).contains("no command"));
        assert!(bad_request(Command::parse_path("//k", b"", &[])).contains("no command"));
    }
}
