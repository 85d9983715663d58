//! The edge controls' I/O (`crate::controls` decides): every isolate
//! reads the deny list and peak mode from Upstash at most every
//! `CONTROLS_REFRESH_MS` (2 s by default), so a change is in force everywhere within
//! seconds (and in the isolate that made it at once); the operator
//! endpoints `GET`/`PUT /v1/operator/edge/deny` and `…/edge/peak` read
//! and change them, logging who did and keeping the last change beside
//! each control. If Upstash cannot be read, the last controls read stay
//! in force.

use std::rc::Rc;

use worker::Request;

use super::handlers::{with_limits, Call, Handled};
use super::http::{self, OrInternal};
use super::state;
use super::upstash::Upstash;
use crate::auth::User;
use crate::config::EdgeConfig;
use crate::controls::{
    self, last_key, parse_deny_change, parse_peak, peak_from, Controls, DenyList, LastChange,
    DENY_KEY, PEAK_KEY,
};
use crate::edge_audit;
use crate::error::EdgeError;
use crate::routes::Control;
use crate::upstash::{Reply, UpstashError};
use crate::waiting_room::rfc3339;

fn unavailable(e: UpstashError) -> EdgeError {
    worker::console_error!("edge controls: {e}");
    EdgeError::edge_state_unavailable()
}

fn flat(reply: &Reply) -> Vec<Option<&str>> {
    reply
        .array()
        .map(|a| a.iter().map(|r| r.opt_str().ok().flatten()).collect())
        .unwrap_or_default()
}

/// The controls and their last changes, read now.
async fn read(
    cfg: &EdgeConfig,
) -> Result<(Controls, Option<String>, Option<String>), UpstashError> {
    let upstash = Upstash::new(&cfg.upstash);
    let answers = upstash
        .pipeline(&[
            vec!["HGETALL".to_owned(), upstash.key(DENY_KEY)],
            vec!["GET".to_owned(), upstash.key(PEAK_KEY)],
            vec!["GET".to_owned(), upstash.key(&last_key(DENY_KEY))],
            vec!["GET".to_owned(), upstash.key(&last_key(PEAK_KEY))],
        ])
        .await?;
    let mut it = answers.into_iter();
    let mut next = || it.next().unwrap_or(Ok(Reply::Nil));
    let deny = next()?;
    let (deny, bad) = DenyList::from_hash(&flat(&deny));
    if !bad.is_empty() {
        worker::console_error!("deny-list entries that do not parse: {bad:?}");
    }
    let peak = next()?;
    let peak = peak_from(peak.opt_str()?);
    let text = |r: Reply| r.opt_str().ok().flatten().map(str::to_owned);
    let deny_last = text(next()?);
    let peak_last = text(next()?);
    Ok((Controls { deny, peak }, deny_last, peak_last))
}

/// The controls in force (read again when older than the refresh time).
pub async fn current(cfg: &EdgeConfig, now_ms: i64) -> Rc<Controls> {
    if let Some((known, at)) = state::with(|s| s.controls.clone()) {
        if now_ms - at < cfg.controls_refresh_ms {
            return known;
        }
    }
    let next = match read(cfg).await {
        Ok((c, _, _)) => Rc::new(c),
        Err(e) => {
            worker::console_warn!("edge controls not read ({e}); keeping the last ones");
            state::with(|s| s.controls.clone())
                .map(|(c, _)| c)
                .unwrap_or_default()
        }
    };
    state::with(|s| s.controls = Some((next.clone(), now_ms)));
    next
}

fn last_view(stored: Option<&str>) -> serde_json::Value {
    stored
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn answer(call: &Call, control: Control, c: &Controls, last: Option<&str>) -> serde_json::Value {
    match control {
        Control::Deny => serde_json::json!({
            "entries": c.deny.view(call.now_ms),
            "last_change": last_view(last),
        }),
        Control::Peak => serde_json::json!({
            "peak": c.peak,
            "last_change": last_view(last),
        }),
    }
}

/// `GET`/`PUT /v1/operator/edge/{deny,peak}` (authorised by the caller).
pub async fn serve(
    req: &mut Request,
    call: &Call,
    user: &User,
    control: Control,
    write: bool,
    rl: &super::handlers::Hdrs,
) -> Handled {
    let done = async {
        let (before, deny_last, peak_last) = read(&call.cfg).await.map_err(unavailable)?;
        if !write {
            let last = match control {
                Control::Deny => deny_last,
                Control::Peak => peak_last,
            };
            return Ok(answer(call, control, &before, last.as_deref()));
        }
        let body = http::read_body(req, call.cfg.max_body_bytes).await?;
        let upstash = call.upstash();
        let mut after = before.clone();
        let mut commands: Vec<Vec<String>> = Vec::new();
        let (key, before_json, after_json) = match control {
            Control::Deny => {
                let change = parse_deny_change(&body, &user.id, call.now_ms)?;
                let mut remove = change.remove.clone();
                // Expired entries go with the next change.
                remove.extend(before.deny.expired(call.now_ms));
                let key = upstash.key(DENY_KEY);
                if !remove.is_empty() {
                    let mut c = vec!["HDEL".to_owned(), key.clone()];
                    c.extend(remove.iter().cloned());
                    commands.push(c);
                }
                for t in &remove {
                    after.deny.entries.remove(t);
                }
                if !change.add.is_empty() {
                    let mut c = vec!["HSET".to_owned(), key];
                    for e in &change.add {
                        c.push(e.target.clone());
                        c.push(serde_json::to_string(e).or_internal("deny entry")?);
                        after.deny.entries.insert(e.target.clone(), e.clone());
                    }
                    commands.push(c);
                }
                if after.deny.entries.len() > controls::MAX_DENY_ENTRIES {
                    return Err(EdgeError::new(
                        422,
                        "invalid_control",
                        format!(
                            "the deny list holds at most {} entries",
                            controls::MAX_DENY_ENTRIES
                        ),
                    ));
                }
                (
                    DENY_KEY,
                    serde_json::json!(before.deny.view(call.now_ms)),
                    serde_json::json!(after.deny.view(call.now_ms)),
                )
            }
            Control::Peak => {
                let peak = parse_peak(&body)?;
                after.peak = peak;
                commands.push(vec![
                    "SET".to_owned(),
                    upstash.key(PEAK_KEY),
                    serde_json::to_string(&peak).or_internal("peak")?,
                ]);
                (
                    PEAK_KEY,
                    serde_json::json!(before.peak),
                    serde_json::json!(peak),
                )
            }
        };
        let last = LastChange {
            by: user.id.clone(),
            at: rfc3339(call.now_ms),
            before: before_json,
            after: after_json,
        };
        let last_json = serde_json::to_string(&last).or_internal("last change")?;
        commands.push(vec![
            "SET".to_owned(),
            upstash.key(&last_key(key)),
            last_json.clone(),
        ]);
        // The change and its audit entry are stored together or not at all.
        commands.push(edge_audit::append_command(
            &upstash.key(edge_audit::STREAM_KEY),
            &edge_audit::Entry {
                actor: user.id.clone(),
                action: match control {
                    Control::Deny => "edge.deny",
                    Control::Peak => "edge.peak",
                }
                .to_owned(),
                at: last.at.clone(),
                before: last.before.clone(),
                after: last.after.clone(),
            },
        ));
        let answers = upstash.transaction(&commands).await.map_err(unavailable)?;
        for a in answers {
            a.map_err(unavailable)?;
        }
        worker::console_log!(
            "edge control {key} changed by {:?}: {} -> {}",
            user.id,
            last.before,
            last.after
        );
        // In force in this isolate at once; elsewhere within the refresh.
        let after = Rc::new(after);
        state::with(|s| s.controls = Some((after.clone(), call.now_ms)));
        Ok(answer(call, control, &after, Some(&last_json)))
    };
    match done.await {
        Ok(v) => {
            let mut h: Vec<(&str, String)> = rl.to_vec();
            h.push(("Cache-Control", "no-store".into()));
            http::json(200, v.to_string(), &h).or_internal("control response")
        }
        Err(e) => Err(with_limits(e, rl)),
    }
}

/// `GET /v1/operator/edge/audit`: a page of the edge's audit log (the
/// caller is authorised by the handler).
pub async fn audit(call: &Call, query: &str, rl: &super::handlers::Hdrs) -> Handled {
    let done = async {
        let q =
            edge_audit::parse_query(query).map_err(|m| EdgeError::new(422, "invalid_query", m))?;
        let upstash = call.upstash();
        let reply = upstash
            .command(&edge_audit::page_command(
                &upstash.key(edge_audit::STREAM_KEY),
                &q,
            ))
            .await
            .map_err(unavailable)?;
        let page = edge_audit::parse_page(&reply, q.limit).map_err(unavailable)?;
        serde_json::to_string(&page).or_internal("audit page")
    };
    match done.await {
        Ok(body) => {
            let mut h: Vec<(&str, String)> = rl.to_vec();
            h.push(("Cache-Control", "no-store".into()));
            http::json(200, body, &h).or_internal("audit response")
        }
        Err(e) => Err(with_limits(e, rl)),
    }
}
