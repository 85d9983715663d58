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
//! Pure: the caller passes `now_ms`.

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open.
    pub open_ms: u64,
    /// A probe with no outcome after this long is presumed lost, and
    /// another may go.
    pub probe_timeout_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            open_ms: 10_000,
            probe_timeout_ms: 6_000,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests go through; `failures` in a row so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Refusing until `until_ms`.
    Open {
        /// When a probe may go.
        until_ms: i64,
    },
    /// One probe is out since `since_ms`.
    HalfOpen {
        /// When it went.
        since_ms: i64,
    },
}

/// Whether a request may go to the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go; `probe` if this request decides whether the breaker closes.
    Go {
        /// This is the half-open probe.
        probe: bool,
    },
    /// Refuse: the region is presumed down for this long still.
    Refuse {
        /// Milliseconds until a probe may go.
        retry_after_ms: u64,
    },
}

/// One region's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
}

/// Whether a region's answer counts as a failure: no answer at all
/// (`None`: timeout or connection error), 502 or 504.
pub fn is_failure(status: Option<u16>) -> bool {
    matches!(status, None | Some(502) | Some(504))
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: State::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Asks to send a request at `now_ms`.
    pub fn admit(&mut self, now_ms: i64) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Go { probe: false },
            State::Open { until_ms } if now_ms >= until_ms => {
                self.state = State::HalfOpen { since_ms: now_ms };
                Admission::Go { probe: true }
            }
            State::Open { until_ms } => Admission::Refuse {
                retry_after_ms: (until_ms - now_ms) as u64,
            },
            State::HalfOpen { since_ms } => {
                let lost_at = since_ms + self.settings.probe_timeout_ms as i64;
                if now_ms >= lost_at {
                    self.state = State::HalfOpen { since_ms: now_ms };
                    Admission::Go { probe: true }
                } else {
                    Admission::Refuse {
                        retry_after_ms: (lost_at - now_ms) as u64,
                    }
                }
            }
        }
    }

    /// Records the outcome of a request admitted earlier.
    pub fn record(&mut self, status: Option<u16>, now_ms: i64) {
        if !is_failure(status) {
            self.state = State::Closed { failures: 0 };
            return;
        }
        let open = State::Open {
            until_ms: now_ms + self.settings.open_ms as i64,
        };
        self.state = match self.state {
            State::Closed { failures } if failures + 1 >= self.settings.failures => open,
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            // The probe failed, or a request sent before the breaker
            // opened failed late: (re)open.
            State::HalfOpen { .. } | State::Open { .. } => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: BreakerSettings = BreakerSettings {
        failures: 3,
        open_ms: 10_000,
        probe_timeout_ms: 6_000,
    };

    #[test]
    fn consecutive_failures_open_it_and_a_probe_closes_it() {
        let mut b = Breaker::new(S);
        for t in 0..2 {
            assert_eq!(b.admit(t), Admission::Go { probe: false });
            b.record(None, t);
        }
        assert_eq!(b.state(), State::Closed { failures: 2 });
        b.record(Some(200), 2);
        assert_eq!(b.state(), State::Closed { failures: 0 }, "a success resets");
        for t in 0..3 {
            b.record(Some(502), t);
        }
        assert_eq!(b.state(), State::Open { until_ms: 10_002 });
        assert_eq!(
            b.admit(5_002),
            Admission::Refuse {
                retry_after_ms: 5_000
            }
        );
        assert_eq!(b.admit(10_002), Admission::Go { probe: true });
        // While the probe is out, others wait.
        assert!(matches!(b.admit(10_003), Admission::Refuse { .. }));
        b.record(Some(404), 10_050);
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_reopens_and_a_lost_one_is_replaced() {
        let mut b = Breaker::new(S);
        for _ in 0..3 {
            b.record(Some(504), 0);
        }
        assert_eq!(b.admit(10_000), Admission::Go { probe: true });
        b.record(None, 10_500);
        assert_eq!(b.state(), State::Open { until_ms: 20_500 });
        assert_eq!(b.admit(20_500), Admission::Go { probe: true });
        assert!(matches!(b.admit(26_499), Admission::Refuse { .. }));
        assert_eq!(
            b.admit(26_500),
            Admission::Go { probe: true },
            "probe presumed lost"
        );
    }

    #[test]
    fn load_shedding_is_not_a_failure() {
        assert!(!is_failure(Some(503)));
        assert!(!is_failure(Some(500)));
        assert!(is_failure(Some(502)) && is_failure(Some(504)) && is_failure(None));
    }
}
