//! Keyset pages of the operator's catalog lists: `limit` (1-500, default
//! 100) and `after`, the previous page's `next`. Venues, screens and
//! movies are ordered by id (UUIDv7: creation order), so their cursor is
//! the last id; shows by start then id, so theirs is both
//! (`<start in µs since the epoch>_<id>`). A page shorter than `limit`
//! is the last one (`next` is absent).

use crate::error::ApiError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A page of a list.
#[derive(Debug, Serialize)]
pub(super) struct Page<T> {
    pub(super) items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last.
    pub(super) next: Option<String>,
}

impl<T> Page<T> {
    /// The page of `items` read with `limit`, its cursor from the last.
    pub(super) fn new(items: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Self {
        let next = (items.len() as i64 == limit)
            .then(|| items.last().map(cursor))
            .flatten();
        Self { items, next }
    }
}

pub(super) use crate::paging::limit;

fn invalid_cursor() -> ApiError {
    ApiError::unprocessable(
        "invalid_cursor",
        "after must be the next of a previous page",
    )
}

/// An id cursor.
pub(super) fn id_cursor(raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    raw.map(|r| Uuid::parse_str(r).map_err(|_| invalid_cursor()))
        .transpose()
}

/// The cursor of a show at `starts_at` with `id`.
pub(super) fn show_cursor(starts_at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{id}", starts_at.timestamp_micros())
}

/// Parses a [`show_cursor`].
pub(super) fn parse_show_cursor(
    raw: Option<&str>,
) -> Result<Option<(DateTime<Utc>, Uuid)>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let (t, id) = raw.split_once('_').ok_or_else(invalid_cursor)?;
    let t = t
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid_cursor)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid_cursor())?;
    Ok(Some((t, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_cursors_round_trip_and_garbage_is_refused() {
        let t = DateTime::from_timestamp_micros(1_800_000_000_123_456).expect("time");
        let id = Uuid::now_v7();
        let c = show_cursor(t, id);
        assert_eq!(parse_show_cursor(Some(&c)).expect("parses"), Some((t, id)));
        for bad in [
            "",
            "x",
            "12_nope",
            "_",
            "abc_00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(
                parse_show_cursor(Some(bad)).expect_err(bad).code(),
                "invalid_cursor"
            );
        }
        assert_eq!(limit(Some(0)).expect_err("0").code(), "invalid_limit");
        assert_eq!(limit(None).expect("default"), crate::paging::DEFAULT_LIMIT);
    }
}
