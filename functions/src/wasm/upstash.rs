//! The Upstash REST client: POSTs the bodies `crate::upstash` shapes with
//! `worker::Fetch`, with a timeout, and decodes the answers there. Scripts
//! go by `EVALSHA`, falling back to `EVAL` (which caches them) once per
//! script per server.

use worker::wasm_bindgen::JsValue;
use worker::{AbortController, Fetch, Headers, Method, Request, RequestInit};

use super::http::with_timeout;
use crate::config::UpstashSettings;
use crate::upstash::{
    command_body, decode_command, decode_pipeline, prefixed, Reply, Script, UpstashError,
};

/// A client for one Upstash database.
pub struct Upstash<'a> {
    settings: &'a UpstashSettings,
}

fn unavailable(what: impl std::fmt::Display) -> UpstashError {
    UpstashError::Unavailable(what.to_string())
}

impl<'a> Upstash<'a> {
    /// A client over `settings`.
    pub fn new(settings: &'a UpstashSettings) -> Self {
        Self { settings }
    }

    async fn post(&self, path: &str, body: String) -> Result<(u16, Vec<u8>), UpstashError> {
        let headers = Headers::new();
        let auth = format!("Bearer {}", self.settings.token);
        headers.set("Authorization", &auth).map_err(unavailable)?;
        headers
            .set("Content-Type", "application/json")
            .map_err(unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(JsValue::from_str(&body)));
        let url = format!("{}{path}", self.settings.url);
        let req = Request::new_with_init(&url, &init).map_err(unavailable)?;
        let abort = AbortController::default();
        let signal = abort.signal();
        let call = async {
            let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
            let bytes = resp.bytes().await?;
            Ok::<_, worker::Error>((resp.status_code(), bytes))
        };
        match with_timeout(call, self.settings.timeout_ms, abort).await {
            None => Err(unavailable(format!(
                "no answer within {} ms",
                self.settings.timeout_ms
            ))),
            Some(Err(e)) => Err(unavailable(e)),
            Some(Ok(answer)) => Ok(answer),
        }
    }

    /// One command.
    pub async fn command<S: AsRef<str>>(&self, args: &[S]) -> Result<Reply, UpstashError> {
        let (status, body) = self.post("/", command_body(args)).await?;
        decode_command(status, &body)
    }

    /// Several commands in one round trip (not atomic).
    pub async fn pipeline<S: AsRef<str>>(
        &self,
        commands: &[Vec<S>],
    ) -> Result<Vec<Result<Reply, UpstashError>>, UpstashError> {
        let (status, body) = self
            .post("/pipeline", crate::upstash::pipeline_body(commands))
            .await?;
        decode_pipeline(status, &body, commands.len())
    }

    /// Several commands as one MULTI/EXEC (`/multi-exec`): all of them
    /// or none, and no other client's command in between.
    pub async fn transaction<S: AsRef<str>>(
        &self,
        commands: &[Vec<S>],
    ) -> Result<Vec<Result<Reply, UpstashError>>, UpstashError> {
        let (status, body) = self
            .post("/multi-exec", crate::upstash::pipeline_body(commands))
            .await?;
        decode_pipeline(status, &body, commands.len())
    }

    /// A key as stored: with the configured prefix (`KEY_PREFIX`).
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.key_prefix)
    }

    /// Runs a script on `keys` (prefixed here; scripts touch only the keys
    /// they are given).
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Reply, UpstashError> {
        let keys = prefixed(&self.settings.key_prefix, keys);
        match self.command(&script.evalsha(&keys, args)).await {
            Err(UpstashError::NoScript) => self.command(&script.eval(&keys, args)).await,
            other => other,
        }
    }
}
