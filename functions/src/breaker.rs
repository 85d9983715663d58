//! The per-region circuit breaker, kept in isolate memory. After
//! `failures` consecutive failures (no answer within the timeout, no
//! connection, 502 or 504) the region is "open" for `open_ms`: requests
//! for its cities get 503 `region_unavailable` at once instead of each
//! waiting for the timeout. Then one probe request goes through
//! ("half-open"); its success closes the breaker, its failure opens it
//! again. Other regions, and so other cities, are not affected.
//!
//! A 503 from the region core is *not* a failure: it is the region
//! shedding load with `Retry-After` on purpose, and it answered quickly.
//! The state machine is `shared::breaker` (the region core's Redis breaker
//! is the same one); this module says what counts as a failure here.

/// Whether a region's answer counts as a failure: no answer at all
/// (`None`: timeout or connection error), 502 or 504.
pub fn is_failure(status: Option<u16>) -> bool {
    matches!(status, None | Some(502) | Some(504))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_shedding_is_not_a_failure() {
        assert!(!is_failure(Some(503)));
        assert!(!is_failure(Some(500)));
        assert!(is_failure(Some(502)) && is_failure(Some(504)) && is_failure(None));
    }
}
