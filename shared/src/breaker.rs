//! The circuit breaker, one for the whole platform: the edge keeps one per
//! region core (requests to a dead region get 503 at once instead of each
//! waiting for the timeout), the region core one for its Redis fast path
//! (holds go to Postgres alone while it is open). Pure: callers pass
//! `now_ms` (any monotonic millisecond clock) and say what failed.
//!
//! Closed → (`failures` consecutive failures) → Open → (after `open_ms`)
//! one probe goes (HalfOpen) → its success closes the breaker, its failure
//! reopens it; a probe with no outcome after `probe_timeout_ms` is presumed
//! lost and another may go. A user that must repair state before trusting
//! the dependency again (the region core re-asserts live holds in Redis)
//! moves a successful probe to Recovering and closes it when done.
//!
//! Only a probe's success closes an open breaker: a late success of a
//! request sent before it opened proves nothing about now.

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker (at least 1).
    pub failures: u32,
    /// How long it stays open before a probe.
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
    /// A probe succeeded; the user is repairing state before closing.
    Recovering,
}

/// Whether a request may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go; `probe` if this request decides whether the breaker closes.
    Go {
        /// This is the half-open probe.
        probe: bool,
    },
    /// Refuse: the dependency is presumed down for this long still.
    Refuse {
        /// Milliseconds until a probe may go (0 while recovering).
        retry_after_ms: u64,
    },
}

/// One dependency's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings: BreakerSettings {
                failures: settings.failures.max(1),
                ..settings
            },
            state: State::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether calls may go without asking (closed).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// Asks to send a request at `now_ms`; may make it the probe.
    pub fn admit(&mut self, now_ms: i64) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Go { probe: false },
            State::Open { until_ms } if now_ms >= until_ms => {
                self.state = State::HalfOpen { since_ms: now_ms };
                Admission::Go { probe: true }
            }
            State::Open { until_ms } => Admission::Refuse {
                retry_after_ms: (until_ms - now_ms).unsigned_abs(),
            },
            State::HalfOpen { since_ms } => {
                let lost_at = since_ms.saturating_add(self.settings.probe_timeout_ms as i64);
                if now_ms >= lost_at {
                    self.state = State::HalfOpen { since_ms: now_ms };
                    Admission::Go { probe: true }
                } else {
                    Admission::Refuse {
                        retry_after_ms: (lost_at - now_ms).unsigned_abs(),
                    }
                }
            }
            State::Recovering => Admission::Refuse { retry_after_ms: 0 },
        }
    }

    /// Records the outcome of a request admitted earlier. Returns true if
    /// this failure opened a closed breaker.
    pub fn record(&mut self, failed: bool, now_ms: i64) -> bool {
        if !failed {
            self.state = match self.state {
                State::Closed { .. } | State::HalfOpen { .. } => State::Closed { failures: 0 },
                // Late successes prove nothing; recovery closes itself.
                other @ (State::Open { .. } | State::Recovering) => other,
            };
            return false;
        }
        let open = State::Open {
            until_ms: now_ms.saturating_add(self.settings.open_ms as i64),
        };
        match self.state {
            State::Closed { failures } if failures + 1 >= self.settings.failures => {
                self.state = open;
                true
            }
            State::Closed { failures } => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            // The probe failed, the repair failed, or a request sent
            // before the breaker opened failed late: (re)open.
            State::HalfOpen { .. } | State::Open { .. } | State::Recovering => {
                self.state = open;
                false
            }
        }
    }

    /// Opens the breaker at once (the dependency is known to be down).
    pub fn trip(&mut self, now_ms: i64) {
        self.state = State::Open {
            until_ms: now_ms.saturating_add(self.settings.open_ms as i64),
        };
    }

    /// A probe succeeded but state must be repaired before closing.
    pub fn begin_recovery(&mut self) {
        if matches!(self.state, State::Open { .. } | State::HalfOpen { .. }) {
            self.state = State::Recovering;
        }
    }

    /// The repair is done: close.
    pub fn finish_recovery(&mut self) {
        if self.state == State::Recovering {
            self.state = State::Closed { failures: 0 };
        }
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
            assert!(!b.record(true, t));
        }
        assert_eq!(b.state(), State::Closed { failures: 2 });
        b.record(false, 2);
        assert_eq!(b.state(), State::Closed { failures: 0 }, "a success resets");
        let opened: Vec<bool> = (0..3).map(|t| b.record(true, t)).collect();
        assert_eq!(opened, [false, false, true], "reports the opening once");
        assert_eq!(b.state(), State::Open { until_ms: 10_002 });
        assert_eq!(
            b.admit(5_002),
            Admission::Refuse {
                retry_after_ms: 5_000
            }
        );
        b.record(false, 5_003);
        assert!(!b.is_closed(), "a late success does not close it");
        assert_eq!(b.admit(10_002), Admission::Go { probe: true });
        // While the probe is out, others wait.
        assert!(matches!(b.admit(10_003), Admission::Refuse { .. }));
        b.record(false, 10_050);
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_reopens_and_a_lost_one_is_replaced() {
        let mut b = Breaker::new(S);
        for _ in 0..3 {
            b.record(true, 0);
        }
        assert_eq!(b.admit(10_000), Admission::Go { probe: true });
        b.record(true, 10_500);
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
    fn a_repair_holds_it_until_done_and_a_failure_during_it_reopens() {
        let mut b = Breaker::new(BreakerSettings { failures: 1, ..S });
        assert!(b.record(true, 0));
        b.begin_recovery(); // the probe answered
        assert_eq!(b.state(), State::Recovering);
        assert!(!b.is_closed(), "not before the repair is done");
        assert_eq!(b.admit(1), Admission::Refuse { retry_after_ms: 0 });
        b.record(false, 2);
        assert_eq!(b.state(), State::Recovering, "only the repair closes it");
        b.finish_recovery();
        assert!(b.is_closed());
        b.record(true, 100);
        b.begin_recovery();
        b.record(true, 3_000);
        assert_eq!(b.state(), State::Open { until_ms: 13_000 });
        b.finish_recovery(); // ignored: not recovering
        assert!(!b.is_closed());
    }

    #[test]
    fn trip_opens_at_once_whatever_the_threshold() {
        let mut b = Breaker::new(BreakerSettings { failures: 5, ..S });
        b.trip(0);
        assert!(!b.is_closed());
        assert!(matches!(b.admit(9_999), Admission::Refuse { .. }));
        assert_eq!(b.admit(10_000), Admission::Go { probe: true });
        // A threshold of 0 behaves as 1.
        let mut b = Breaker::new(BreakerSettings { failures: 0, ..S });
        assert!(b.record(true, 0));
    }
}
