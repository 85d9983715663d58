//! The city → shard directory as data: an operator replaces it with
//! `PUT /v1/operator/directory` (kept in Upstash under `directory`), and
//! every isolate reads it at most every `DIRECTORY_REFRESH_MS` (5 s), so a new city
//! or a new replica is routed within seconds, without redeploying. While
//! nothing is stored, the deploy's `REGIONS` is the directory; if Upstash
//! cannot be read, the last directory read (or `REGIONS`) stays in use.

use std::rc::Rc;

use super::http::{self, OrInternal};
use super::state;
use super::upstash::Upstash;
use crate::catalog::version_key;
use crate::config::{EdgeConfig, Regions, DIRECTORY_KEY};
use crate::error::EdgeError;
use crate::upstash::Reply;

/// The configuration with the current directory in place of `REGIONS`.
pub async fn current(cfg: Rc<EdgeConfig>, now_ms: i64) -> Rc<EdgeConfig> {
    if let Some((known, at)) = state::with(|s| s.directory.clone()) {
        if now_ms - at < cfg.directory_refresh_ms {
            return known;
        }
    }
    let upstash = Upstash::new(&cfg.upstash);
    let next = match upstash
        .command(&["GET".to_owned(), upstash.key(DIRECTORY_KEY)])
        .await
    {
        Ok(Reply::Str(json)) => match Regions::parse(&json) {
            Ok(regions) => with_regions(&cfg, regions),
            Err(e) => {
                worker::console_error!("stored directory unreadable ({e}); using REGIONS");
                cfg
            }
        },
        Ok(_) => cfg,
        Err(e) => {
            worker::console_warn!("directory not read ({e}); keeping the last one");
            match state::with(|s| s.directory.clone()) {
                Some((known, _)) => known,
                None => cfg,
            }
        }
    };
    state::with(|s| s.directory = Some((next.clone(), now_ms)));
    next
}

fn with_regions(cfg: &EdgeConfig, regions: Regions) -> Rc<EdgeConfig> {
    let mut c = cfg.clone();
    c.regions = regions;
    Rc::new(c)
}

/// `PUT /v1/operator/directory`: checks and stores a new directory (the
/// `REGIONS` form: city → URL or list of replica URLs) and uses it in this
/// isolate at once. Returns it as stored.
pub async fn replace(
    cfg: &EdgeConfig,
    body: &[u8],
    who: &str,
    now_ms: i64,
) -> Result<serde_json::Value, EdgeError> {
    let text = std::str::from_utf8(body).map_err(|_| EdgeError::malformed_json())?;
    let regions = Regions::parse(text).map_err(EdgeError::invalid_body)?;
    let json = regions.to_json();
    let upstash = Upstash::new(&cfg.upstash);
    let entry = crate::edge_audit::Entry {
        actor: who.to_owned(),
        action: "edge.directory".to_owned(),
        at: crate::waiting_room::rfc3339(now_ms),
        before: cfg.regions.to_json(),
        after: json.clone(),
    };
    // The global catalog version goes up with it: the cached city list
    // (merged from every shard) is read again. The change and its audit
    // entry are stored together or not at all.
    let answers = upstash
        .transaction(&[
            vec![
                "SET".to_owned(),
                upstash.key(DIRECTORY_KEY),
                json.to_string(),
            ],
            vec!["INCR".to_owned(), upstash.key(&version_key(None))],
            crate::edge_audit::append_command(&upstash.key(crate::edge_audit::STREAM_KEY), &entry),
        ])
        .await
        .map_err(|e| {
            worker::console_error!("directory not stored: {e}");
            EdgeError::edge_state_unavailable()
        })?;
    if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
        worker::console_error!("directory not stored: {e}");
        return Err(EdgeError::edge_state_unavailable());
    }
    let next = with_regions(cfg, regions);
    state::with(|s| s.directory = Some((next, now_ms)));
    Ok(json)
}

/// The answer to `GET`/`PUT /v1/operator/directory`.
pub fn answer(
    regions: serde_json::Value,
    extra: &[(&str, String)],
) -> Result<worker::Response, EdgeError> {
    let body = serde_json::json!({ "regions": regions }).to_string();
    let mut headers: Vec<(&str, String)> = extra.to_vec();
    headers.push(("Cache-Control", "no-store".into()));
    http::json(200, body, &headers).or_internal("directory")
}
