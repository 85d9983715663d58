//! The one connection to Redis every request shares, and the three ways a
//! request uses it: one command, a pipeline, a MULTI/EXEC transaction.
//!
//! Replies come back raw: an error reply is a `Value::ServerError` to pass
//! on, while a `RedisError` here always means the connection failed
//! (refused, dropped, timed out), which callers answer with 503.

use crate::command::Command;
use crate::error::GatewayError;
use crate::reply;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Redis may take to answer. Generous, since Lua scripts run
/// here, but bounded so a wedged Redis turns into 503s, not hung callers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries inside one connection attempt: none. In redis 0.27 the backoff
/// between retries starts at one second whatever the factor (it counts in
/// `backon`'s units, not milliseconds), and up to a minute, which would
/// hold every request that long while Redis is down. With none, a request
/// makes one attempt and answers 503 at once; the next request tries
/// again, and the caller's own retry policy decides the pace.
const CONNECT_RETRIES: usize = 0;

/// Redis behind the gateway.
pub(crate) struct Backend {
    client: redis::Client,
    /// Connected on first use rather than at start-up, so the gateway can
    /// start before Redis does (compose files, CI services). Once made, the
    /// manager reconnects by itself after Redis restarts.
    manager: OnceCell<ConnectionManager>,
    /// Commands Redis answered (error replies included).
    commands_served: AtomicU64,
}

impl Backend {
    pub(crate) fn new(client: redis::Client) -> Self {
        Self {
            client,
            manager: OnceCell::new(),
            commands_served: AtomicU64::new(0),
        }
    }

    pub(crate) fn commands_served(&self) -> u64 {
        self.commands_served.load(Ordering::Relaxed)
    }

    /// A handle on the shared connection (a cheap clone).
    async fn connection(&self) -> Result<ConnectionManager, GatewayError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(CONNECT_RETRIES);
        self.manager
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(GatewayError::Unavailable)
    }

    fn answered(&self, commands: usize) {
        self.commands_served
            .fetch_add(commands as u64, Ordering::Relaxed);
    }

    /// Runs one command; its reply may be an error reply.
    pub(crate) async fn single(&self, command: &Command) -> Result<Value, GatewayError> {
        let mut connection = self.connection().await?;
        let reply = connection
            .send_packed_command(&command.to_cmd())
            .await
            .map_err(GatewayError::Unavailable)?;
        self.answered(1);
        Ok(reply)
    }

    /// Runs `commands` in order in one round trip, not atomically; one
    /// reply each, error replies in place. Written as one buffer on the
    /// shared connection, so other requests cannot split it.
    pub(crate) async fn pipeline(&self, commands: &[Command]) -> Result<Vec<Value>, GatewayError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for command in commands {
            pipe.add_command(command.to_cmd());
        }
        let replies = self.send(&pipe, commands.len()).await?;
        self.answered(commands.len());
        Ok(replies)
    }

    /// Runs `commands` atomically: MULTI, the commands, EXEC, sent as one
    /// buffer (EXEC always ends the transaction, so the shared connection
    /// never stays in MULTI). One reply per command; if any command could
    /// not be queued, nothing ran and the whole call is an error.
    pub(crate) async fn transaction(
        &self,
        commands: &[Command],
    ) -> Result<Vec<Value>, GatewayError> {
        let mut pipe = redis::pipe();
        pipe.cmd("MULTI");
        for command in commands {
            pipe.add_command(command.to_cmd());
        }
        pipe.cmd("EXEC");
        // Not `pipe.atomic()`: that hides the per-command queuing replies,
        // and the first queuing error is what tells the caller what failed.
        let replies = self.send(&pipe, commands.len() + 2).await?;
        self.answered(commands.len());
        exec_outcome(replies, commands)
    }

    async fn send(&self, pipe: &redis::Pipeline, count: usize) -> Result<Vec<Value>, GatewayError> {
        let mut connection = self.connection().await?;
        let replies = connection
            .send_packed_commands(pipe, 0, count)
            .await
            .map_err(GatewayError::Unavailable)?;
        if replies.len() != count {
            return Err(GatewayError::BadReply(format!(
                "{} replies to {count} commands",
                replies.len()
            )));
        }
        Ok(replies)
    }
}

/// Reads the replies to `MULTI, commands…, EXEC`.
fn exec_outcome(mut replies: Vec<Value>, commands: &[Command]) -> Result<Vec<Value>, GatewayError> {
    let exec = replies.pop();
    if let Some(error) = replies.first().and_then(reply::error_text) {
        return Err(GatewayError::Redis(error));
    }
    // A command Redis refused to queue (unknown, wrong arity, OOM) made it
    // discard the transaction: EXEC says EXECABORT. Say which one it was.
    let queue_error = replies.iter().skip(1).enumerate().find_map(|(i, r)| {
        reply::error_text(r).map(|e| format!("Command {i} ({}): {e}", commands[i].name()))
    });
    match (exec, queue_error) {
        (Some(exec), Some(queue_error)) => {
            let exec_error = reply::error_text(&exec).unwrap_or_else(|| "EXECABORT".into());
            Err(GatewayError::Redis(format!("{exec_error} {queue_error}")))
        }
        (Some(Value::Array(results)), None) if results.len() == commands.len() => Ok(results),
        (Some(exec), None) => match reply::error_text(&exec) {
            Some(error) => Err(GatewayError::Redis(error)),
            None => Err(GatewayError::BadReply(format!("EXEC answered {exec:?}"))),
        },
        (None, _) => Err(GatewayError::BadReply("no reply to EXEC".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: &str) -> Value {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
    }

    fn commands(json: &str) -> Vec<Command> {
        Command::parse_json_batch(json.as_bytes()).unwrap()
    }

    fn queued() -> Value {
        Value::SimpleString("QUEUED".into())
    }

    #[test]
    fn exec_results_are_returned_one_per_command() {
        let cmds = commands(r#"[["SET","a","1"],["INCR","b"]]"#);
        let results = Value::Array(vec![Value::Okay, error("ERR not an integer")]);
        let out = exec_outcome(vec![Value::Okay, queued(), queued(), results], &cmds).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Value::Okay);
    }

    #[test]
    fn a_queuing_error_aborts_and_is_named() {
        let cmds = commands(r#"[["SET","a","1"],["SET","b"]]"#);
        let replies = vec![
            Value::Okay,
            queued(),
            error("ERR wrong number of arguments for 'set' command"),
            error("EXECABORT Transaction discarded because of previous errors."),
        ];
        match exec_outcome(replies, &cmds) {
            Err(GatewayError::Redis(message)) => assert_eq!(
                message,
                "EXECABORT Transaction discarded because of previous errors. \
                 Command 1 (SET): ERR wrong number of arguments for 'set' command"
            ),
            other => panic!("expected an EXECABORT, got {other:?}"),
        }
    }

    #[test]
    fn a_short_exec_reply_is_a_bad_reply() {
        let cmds = commands(r#"[["GET","a"]]"#);
        let replies = vec![Value::Okay, queued(), Value::Nil];
        assert!(matches!(
            exec_outcome(replies, &cmds),
            Err(GatewayError::BadReply(_))
        ));
    }
}
