//! Exponential backoff with jitter, for the background workers that retry
//! against a failing dependency (refunds against the gateway, the outbox
//! relay against its sink). Pure: the caller passes the jitter.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt `attempts + 1`, given `attempts` failures so
    /// far: base·2^(attempts-1) capped at max, scaled by `jitter` in
    /// [0.5, 1.0] so workers failing together do not retry together.
    pub fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        raw.mul_f64(jitter.clamp(0.5, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_and_jitters_down_only() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(5, 1.0), Duration::from_secs(16));
        assert_eq!(b.delay(7, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(40, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(2, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.1), Duration::from_secs(1)); // clamped to 0.5
    }
}
