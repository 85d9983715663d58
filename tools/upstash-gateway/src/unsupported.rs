//! Which commands the gateway refuses, and why. Pure: no I/O.
//!
//! Every request is served over one multiplexed connection that all callers
//! share, and HTTP has no session. So the gateway refuses commands that
//! would block that connection for everyone, turn it into a push stream,
//! change its state for the next caller, or take the shared Redis down.
//! Upstash refuses the same families. Inside `EVAL` Redis itself forbids
//! blocking, so scripts need no check here.

use crate::command::Command;

/// Why a command is refused (logged; the caller sees one fixed message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Waits for data: it would stall every caller behind it.
    Blocking,
    /// Turns the connection into a push stream (Pub/Sub, MONITOR).
    PushStream,
    /// Changes per-connection state the next caller would inherit
    /// (SELECT, MULTI/WATCH: use `/multi-exec`, AUTH, HELLO, CLIENT …).
    ConnectionState,
    /// Stops, re-roles or debugs the Redis other processes share.
    ServerAdmin,
}

/// `None` when `command` may be forwarded.
pub(crate) fn refusal(command: &Command) -> Option<Refusal> {
    let name = command.name();
    let refusal = match name.as_str() {
        "BLPOP" | "BRPOP" | "BRPOPLPUSH" | "BLMOVE" | "BLMPOP" | "BZPOPMIN" | "BZPOPMAX"
        | "BZMPOP" | "WAIT" | "WAITAOF" => Refusal::Blocking,
        "XREAD" | "XREADGROUP" if xread_blocks(command.args()) => Refusal::Blocking,
        "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
        | "SUNSUBSCRIBE" | "MONITOR" | "SYNC" | "PSYNC" => Refusal::PushStream,
        "SELECT" | "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" | "AUTH" | "HELLO"
        | "RESET" | "QUIT" | "CLIENT" => Refusal::ConnectionState,
        "SHUTDOWN" | "DEBUG" | "REPLICAOF" | "SLAVEOF" | "FAILOVER" => Refusal::ServerAdmin,
        _ => return None,
    };
    Some(refusal)
}

/// Whether an `XREAD`/`XREADGROUP` has a `BLOCK` option. Only the options
/// before `STREAMS` are looked at, skipping option values, so a stream,
/// group or consumer named "block" is not mistaken for one.
fn xread_blocks(args: &[Vec<u8>]) -> bool {
    let mut i = 1;
    while let Some(word) = args.get(i) {
        match word.to_ascii_uppercase().as_slice() {
            b"BLOCK" => return true,
            b"STREAMS" => return false,
            b"COUNT" => i += 2,
            b"GROUP" => i += 3,
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Option<Refusal> {
        refusal(&Command::parse_json(json.as_bytes()).unwrap())
    }

    #[test]
    fn ordinary_commands_and_scripts_pass() {
        for json in [
            r#"["GET","k"]"#,
            r#"["lpop","k"]"#,
            r#"["EVAL","return redis.call('TIME')","0"]"#,
            r#"["PUBLISH","ch","hello"]"#,
            r#"["XREAD","COUNT","1","STREAMS","s","0"]"#,
        ] {
            assert_eq!(check(json), None, "{json}");
        }
    }

    #[test]
    fn blocking_commands_are_refused_in_any_case() {
        assert_eq!(check(r#"["blpop","k","0"]"#), Some(Refusal::Blocking));
        assert_eq!(check(r#"["BZPOPMIN","k","1"]"#), Some(Refusal::Blocking));
        assert_eq!(
            check(r#"["XREAD","COUNT","1","block","0","STREAMS","s","$"]"#),
            Some(Refusal::Blocking)
        );
        assert_eq!(
            check(r#"["XREADGROUP","GROUP","g","c","BLOCK","10","STREAMS","s",">"]"#),
            Some(Refusal::Blocking)
        );
    }

    #[test]
    fn block_as_a_name_or_value_is_not_an_option() {
        assert_eq!(check(r#"["XREAD","STREAMS","block","0"]"#), None);
        assert_eq!(
            check(r#"["XREAD","COUNT","block","STREAMS","s","0"]"#),
            None
        );
        assert_eq!(
            check(r#"["XREADGROUP","GROUP","block","block","STREAMS","s",">"]"#),
            None
        );
    }

    #[test]
    fn push_streams_state_changes_and_admin_are_refused() {
        assert_eq!(check(r#"["SUBSCRIBE","ch"]"#), Some(Refusal::PushStream));
        assert_eq!(check(r#"["MONITOR"]"#), Some(Refusal::PushStream));
        assert_eq!(check(r#"["SELECT","1"]"#), Some(Refusal::ConnectionState));
        assert_eq!(check(r#"["MULTI"]"#), Some(Refusal::ConnectionState));
        assert_eq!(
            check(r#"["CLIENT","REPLY","OFF"]"#),
            Some(Refusal::ConnectionState)
        );
        assert_eq!(
            check(r#"["SHUTDOWN","NOSAVE"]"#),
            Some(Refusal::ServerAdmin)
        );
    }
}
