//! Circuit breaker for the Redis fast path (seed Q6). Pure state machine:
//! the caller passes `now`, so tests drive it without sleeping.
//!
//! Closed → (threshold consecutive failures) → Open → (after `open_for`,
//! a probe succeeds) → Recovering (live holds are re-asserted in Redis
//! from Postgres) → Closed. Holds use the Postgres-only path whenever the
//! state is not Closed.

use std::time::{Duration, Instant};

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Redis is healthy: holds take the fast path.
    Closed,
    /// Redis failed: holds use Postgres alone until `until`, then probe.
    Open {
        /// When a probe may be tried.
        until: Instant,
    },
    /// Redis answered a probe; live holds are being re-asserted.
    Recovering,
}

/// Consecutive-failure circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    threshold: u32,
    open_for: Duration,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures
    /// and stays open for `open_for` before probing.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            threshold: threshold.max(1),
            open_for,
        }
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether the Redis fast path may be used.
    pub fn allows_fast_path(&self) -> bool {
        self.state == BreakerState::Closed
    }

    /// A Redis call succeeded.
    pub fn on_success(&mut self) {
        if self.state == BreakerState::Closed {
            self.consecutive_failures = 0;
        }
    }

    /// A Redis call failed or timed out. Returns true if this opened the breaker.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures += 1;
                if self.consecutive_failures >= self.threshold {
                    self.state = BreakerState::Open {
                        until: now + self.open_for,
                    };
                    return true;
                }
                false
            }
            // A failure while re-asserting sends us back to waiting.
            BreakerState::Recovering | BreakerState::Open { .. } => {
                self.state = BreakerState::Open {
                    until: now + self.open_for,
                };
                false
            }
        }
    }

    /// Opens the breaker at once (Redis unreachable at start-up).
    pub fn trip(&mut self, now: Instant) {
        self.state = BreakerState::Open {
            until: now + self.open_for,
        };
    }

    /// Whether it is time to probe Redis.
    pub fn should_probe(&self, now: Instant) -> bool {
        matches!(self.state, BreakerState::Open { until } if now >= until)
    }

    /// A probe answered: start re-asserting.
    pub fn begin_recovery(&mut self) {
        if matches!(self.state, BreakerState::Open { .. }) {
            self.state = BreakerState::Recovering;
        }
    }

    /// Live holds are back in Redis: use the fast path again.
    pub fn finish_recovery(&mut self) {
        if self.state == BreakerState::Recovering {
            self.state = BreakerState::Closed;
            self.consecutive_failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_through_reassertion() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(1));
        assert!(b.allows_fast_path());
        assert!(!b.on_failure(t0));
        b.on_success(); // resets the count
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert!(b.on_failure(t0));
        assert!(!b.allows_fast_path());
        assert!(!b.should_probe(t0 + Duration::from_millis(999)));
        assert!(b.should_probe(t0 + Duration::from_secs(1)));
        b.begin_recovery();
        assert_eq!(b.state(), BreakerState::Recovering);
        assert!(
            !b.allows_fast_path(),
            "no fast path until holds are re-asserted"
        );
        b.finish_recovery();
        assert!(b.allows_fast_path());
    }

    #[test]
    fn trip_opens_at_once_whatever_the_threshold() {
        let t0 = Instant::now();
        let mut b = Breaker::new(5, Duration::from_secs(1));
        b.trip(t0);
        assert!(!b.allows_fast_path());
        assert!(b.should_probe(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn failure_during_recovery_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(2));
        b.on_failure(t0);
        b.begin_recovery();
        b.on_failure(t0 + Duration::from_secs(3));
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + Duration::from_secs(5)
            }
        );
        b.finish_recovery(); // ignored: not recovering
        assert!(!b.allows_fast_path());
    }
}
