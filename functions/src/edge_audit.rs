//! The edge's own audit log: every change to what the edge keeps for all
//! cities (the deny list, peak mode, the city → shard directory) appends
//! one entry (who, what, when, before and after) to the Upstash stream
//! `audit`, in the same MULTI/EXEC as the change itself, so a change and
//! its record are stored together or not at all. Operators read it at
//! `GET /v1/operator/edge/audit`, newest first.
//!
//! Append-only by construction: nothing in the Worker trims, edits or
//! deletes the stream, and entry ids are the store's clock, so an entry
//! cannot be slipped in before another. (Whoever holds the Upstash token
//! could `DEL` it, as a database owner could drop the shards' audit
//! trigger; that is outside the API.) Changes are rare, so the stream is
//! never trimmed. Shards keep their own log of their writes, in Postgres
//! (`GET /v1/operator/audit` on each shard).
//!
//! Pure: the commands to send and the reading of the answer; the I/O is
//! in `wasm::controls` and `wasm::directory`.

use crate::upstash::{Reply, UpstashError};
use serde::{Deserialize, Serialize};

/// The stream's key (before the configured prefix).
pub const STREAM_KEY: &str = "audit";
/// The stream entry's one field.
const FIELD: &str = "entry";
/// Largest page.
pub const MAX_LIMIT: u32 = 200;
/// The page when none is asked for.
pub const DEFAULT_LIMIT: u32 = 50;

/// One change, as stored and as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The operator token's subject.
    pub actor: String,
    /// `edge.deny`, `edge.peak`, `edge.directory`.
    pub action: String,
    /// When the edge made the change (RFC 3339).
    pub at: String,
    /// What was in force before.
    pub before: serde_json::Value,
    /// What is in force after.
    pub after: serde_json::Value,
}

/// The `XADD` that appends `entry` to `stream` (the prefixed key).
pub fn append_command(stream: &str, entry: &Entry) -> Vec<String> {
    vec![
        "XADD".to_owned(),
        stream.to_owned(),
        "*".to_owned(),
        FIELD.to_owned(),
        serde_json::to_string(entry).unwrap_or_default(),
    ]
}

/// A page request, checked: `before` is a stream id from a previous
/// page's `next`, `limit` 1..=[`MAX_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    /// Entries strictly older than this id.
    pub before: Option<String>,
    /// How many.
    pub limit: u32,
}

/// Parses `?before=&limit=`; the message says what is wrong.
pub fn parse_query(query: &str) -> Result<PageQuery, String> {
    let mut out = PageQuery {
        before: None,
        limit: DEFAULT_LIMIT,
    };
    let pairs = crate::pages::form::parse(query).ok_or("the query is not URL-encoded")?;
    for (k, v) in pairs {
        match k.as_str() {
            "before" => {
                if !is_stream_id(&v) {
                    return Err("before must be an entry id from a previous page's next".into());
                }
                out.before = Some(v);
            }
            "limit" => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => out.limit = n,
                _ => return Err(format!("limit must be 1..={MAX_LIMIT}")),
            },
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(out)
}

/// `<ms>-<seq>`, as Redis writes stream ids.
fn is_stream_id(s: &str) -> bool {
    match s.split_once('-') {
        Some((ms, seq)) => {
            !ms.is_empty()
                && !seq.is_empty()
                && ms.len() <= 20
                && seq.len() <= 20
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The `XREVRANGE` reading one page of `stream` (newest first; `(` makes
/// the cursor exclusive).
pub fn page_command(stream: &str, q: &PageQuery) -> Vec<String> {
    let end = match &q.before {
        Some(id) => format!("({id}"),
        None => "+".to_owned(),
    };
    vec![
        "XREVRANGE".to_owned(),
        stream.to_owned(),
        end,
        "-".to_owned(),
        "COUNT".to_owned(),
        q.limit.to_string(),
    ]
}

/// One entry as operators read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The stream id (the page cursor).
    pub id: String,
    /// The change.
    #[serde(flatten)]
    pub entry: Entry,
}

/// A page of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// Newest first.
    pub entries: Vec<Record>,
    /// Pass as `before` for the next (older) page; absent on the last.
    pub next: Option<String>,
}

/// Reads the `XREVRANGE` answer (`[[id, [field, value, …]], …]`).
pub fn parse_page(reply: &Reply, limit: u32) -> Result<Page, UpstashError> {
    let bad = |what: &str| UpstashError::Protocol(format!("audit stream: {what}"));
    let mut entries = Vec::new();
    for item in reply.array()? {
        let [id, fields] = item.array()? else {
            return Err(bad("an entry that is not [id, fields]"));
        };
        let id = id.opt_str()?.ok_or_else(|| bad("an entry without an id"))?;
        let fields = fields.array()?;
        let value = fields
            .chunks(2)
            .find_map(|kv| match kv {
                [Reply::Str(k), Reply::Str(v)] if k == FIELD => Some(v.as_str()),
                _ => None,
            })
            .ok_or_else(|| bad("an entry without its field"))?;
        let entry: Entry = serde_json::from_str(value).map_err(|e| bad(&e.to_string()))?;
        entries.push(Record {
            id: id.to_owned(),
            entry,
        });
    }
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Page { entries, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> Entry {
        Entry {
            actor: "ops-1".into(),
            action: action.into(),
            at: "2026-12-06T10:00:00Z".into(),
            before: serde_json::json!({ "enabled": false }),
            after: serde_json::json!({ "enabled": true }),
        }
    }

    #[test]
    fn an_entry_is_appended_with_a_store_assigned_id() {
        let c = append_command("demo:audit", &entry("edge.peak"));
        assert_eq!(&c[..4], ["XADD", "demo:audit", "*", "entry"]);
        let back: Entry = serde_json::from_str(&c[4]).unwrap();
        assert_eq!(back, entry("edge.peak"));
    }

    #[test]
    fn pages_go_back_from_an_exclusive_cursor() {
        let q = parse_query("").unwrap();
        assert_eq!(
            page_command("a", &q),
            ["XREVRANGE", "a", "+", "-", "COUNT", "50"]
        );
        let q = parse_query("before=1733480000000-3&limit=2").unwrap();
        assert_eq!(
            page_command("a", &q),
            ["XREVRANGE", "a", "(1733480000000-3", "-", "COUNT", "2"]
        );
    }

    #[test]
    fn bad_queries_are_refused() {
        for q in [
            "before=abc",
            "before=1-",
            "before=-1",
            "before=1-2-3",
            "limit=0",
            "limit=201",
            "limit=x",
            "from=1",
        ] {
            assert!(parse_query(q).is_err(), "{q} accepted");
        }
    }

    #[test]
    fn a_page_is_read_and_its_cursor_set_when_full() {
        let stored = |id: &str, action: &str| {
            Reply::Array(vec![
                Reply::Str(id.into()),
                Reply::Array(vec![
                    Reply::Str("entry".into()),
                    Reply::Str(serde_json::to_string(&entry(action)).unwrap()),
                ]),
            ])
        };
        let reply = Reply::Array(vec![stored("5-0", "edge.deny"), stored("4-1", "edge.peak")]);
        let page = parse_page(&reply, 2).unwrap();
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.entries[0].id, "5-0");
        assert_eq!(page.entries[1].entry.action, "edge.peak");
        assert_eq!(page.next.as_deref(), Some("4-1"));
        assert_eq!(parse_page(&reply, 3).unwrap().next, None);
        assert!(parse_page(&Reply::Array(vec![Reply::Str("x".into())]), 2).is_err());
    }
}
