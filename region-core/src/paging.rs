//! What every operator list reads the same way: the page size (`limit`,
//! 1-500, 100 when absent) and an id cursor (`after`, the previous page's
//! last id). One place, so every list refuses the same input with the
//! same error.

use crate::error::ApiError;
use uuid::Uuid;

/// Largest page.
pub const MAX_LIMIT: i64 = 500;
/// The page when none is asked for.
pub const DEFAULT_LIMIT: i64 = 100;

/// The page size `raw` asks for; 422 `invalid_limit` outside 1-500.
pub fn limit(raw: Option<i64>) -> Result<i64, ApiError> {
    let limit = raw.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::unprocessable(
            "invalid_limit",
            format!("limit must be 1..={MAX_LIMIT}"),
        ))
    }
}

/// The `after` cursor of a list keyed by id: 400 `invalid_cursor`, naming
/// `what` the id is, unless it is a UUID.
pub fn id_after(raw: Option<&str>, what: &str) -> Result<Option<Uuid>, ApiError> {
    raw.map(|a| {
        Uuid::parse_str(a).map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                format!("after must be the next_after of the previous page ({what})"),
            )
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(limit(None).unwrap(), 100);
        assert_eq!(limit(Some(500)).unwrap(), 500);
        assert!(limit(Some(0)).is_err() && limit(Some(501)).is_err());
        assert_eq!(id_after(None, "an id").unwrap(), None);
        assert!(id_after(Some("x"), "an id").is_err());
        let id = Uuid::now_v7();
        assert_eq!(id_after(Some(&id.to_string()), "an id").unwrap(), Some(id));
    }
}
