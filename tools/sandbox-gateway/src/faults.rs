//! Fault injection: the payment-method tokens (like Stripe's test cards),
//! the random faults of `fault_rate`, and the `refunds_fail_next` and
//! `refunds_refuse_next` counters.
//! Pure decisions over the attempt number and a seeded RNG.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// A `payment_method` token the sandbox understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PaymentMethod {
    /// `pm_card_ok`: succeeds (unless `fault_rate` picks a fault).
    CardOk,
    /// `pm_card_declined`: always declined.
    CardDeclined,
    /// `pm_fault_5xx`: first attempt 500, nothing charged.
    Fault5xx,
    /// `pm_fault_timeout`: first attempt hangs, then 504, nothing charged.
    FaultTimeout,
    /// `pm_fault_lost_success`: first attempt charges but answers 502.
    FaultLostSuccess,
}

impl PaymentMethod {
    /// Every token, for error messages and docs.
    pub(crate) const TOKENS: [&'static str; 5] = [
        "pm_card_ok",
        "pm_card_declined",
        "pm_fault_5xx",
        "pm_fault_timeout",
        "pm_fault_lost_success",
    ];

    /// Parses a token; `None` if unknown.
    pub(crate) fn parse(token: &str) -> Option<Self> {
        Some(match token {
            "pm_card_ok" => Self::CardOk,
            "pm_card_declined" => Self::CardDeclined,
            "pm_fault_5xx" => Self::Fault5xx,
            "pm_fault_timeout" => Self::FaultTimeout,
            "pm_fault_lost_success" => Self::FaultLostSuccess,
            _ => return None,
        })
    }
}

/// What happens to one payment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Charge and answer 200.
    None,
    /// Record a failed intent and answer 402 (stored, replayed).
    Decline,
    /// Answer 500 without charging (not stored).
    Unavailable,
    /// Hang `timeout_ms`, then answer 504 without charging (not stored).
    Timeout,
    /// Charge, store the 200, but answer 502.
    LostSuccess,
}

/// What `fault_rate` picks from, uniformly.
const RANDOM_FAULTS: [Fault; 4] = [
    Fault::Decline,
    Fault::Unavailable,
    Fault::Timeout,
    Fault::LostSuccess,
];

/// Runtime fault settings (changeable through `POST /sandbox/faults`).
#[derive(Debug)]
pub(crate) struct FaultSettings {
    fault_rate: f64,
    refunds_fail_next: u32,
    refunds_refuse_next: u32,
    rng: StdRng,
}

/// `GET`/`POST /sandbox/faults` answer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultView {
    refunds_fail_next: u32,
    refunds_refuse_next: u32,
    fault_rate: f64,
}

impl FaultSettings {
    /// `fault_rate` must already be validated (0.0..=1.0).
    pub(crate) fn new(fault_rate: f64, seed: Option<u64>) -> Self {
        Self {
            fault_rate,
            refunds_fail_next: 0,
            refunds_refuse_next: 0,
            rng: seed.map_or_else(StdRng::from_entropy, StdRng::seed_from_u64),
        }
    }

    /// Decides attempt number `attempt` (1-based) of a payment under one
    /// Idempotency-Key.
    ///
    /// Only a first attempt can fault. A later attempt exists only because
    /// an earlier one stored nothing (a 5xx or a timeout, both of which
    /// charge nothing), and those faults are defined to hit the first
    /// attempt alone. Declines and lost successes are stored, so their key
    /// never runs again; the fault of a key is therefore fixed at its
    /// first attempt without remembering it here.
    pub(crate) fn for_attempt(&mut self, method: PaymentMethod, attempt: u32) -> Fault {
        match method {
            PaymentMethod::CardDeclined => Fault::Decline,
            _ if attempt > 1 => Fault::None,
            PaymentMethod::CardOk => self.roll(),
            PaymentMethod::Fault5xx => Fault::Unavailable,
            PaymentMethod::FaultTimeout => Fault::Timeout,
            PaymentMethod::FaultLostSuccess => Fault::LostSuccess,
        }
    }

    fn roll(&mut self) -> Fault {
        // No draw at rate 0, so a seeded run's sequence depends only on
        // the payments that could have faulted.
        if self.fault_rate > 0.0 && self.rng.gen_bool(self.fault_rate) {
            RANDOM_FAULTS[self.rng.gen_range(0..RANDOM_FAULTS.len())]
        } else {
            Fault::None
        }
    }

    /// True if this refund request must fail (and counts it down).
    pub(crate) fn take_refund_failure(&mut self) -> bool {
        if self.refunds_fail_next > 0 {
            self.refunds_fail_next -= 1;
            true
        } else {
            false
        }
    }

    /// True if this refund request must be refused for good (and counts
    /// it down).
    pub(crate) fn take_refund_refusal(&mut self) -> bool {
        if self.refunds_refuse_next > 0 {
            self.refunds_refuse_next -= 1;
            true
        } else {
            false
        }
    }

    /// Makes the next `n` refund requests be refused (a 400: the gateway
    /// will not refund this, as when the merchant's balance is short).
    pub(crate) fn set_refunds_refuse_next(&mut self, n: u32) {
        self.refunds_refuse_next = n;
    }

    /// Makes the next `n` refund requests fail.
    pub(crate) fn set_refunds_fail_next(&mut self, n: u32) {
        self.refunds_fail_next = n;
    }

    /// Changes `fault_rate` (validated by the caller).
    pub(crate) fn set_fault_rate(&mut self, rate: f64) {
        self.fault_rate = rate;
    }

    /// The current settings.
    pub(crate) fn view(&self) -> FaultView {
        FaultView {
            refunds_fail_next: self.refunds_fail_next,
            refunds_refuse_next: self.refunds_refuse_next,
            fault_rate: self.fault_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse() {
        for token in PaymentMethod::TOKENS {
            assert!(PaymentMethod::parse(token).is_some(), "{token}");
        }
        assert_eq!(PaymentMethod::parse("pm_card_visa"), None);
        assert_eq!(PaymentMethod::parse("PM_CARD_OK"), None);
    }

    #[test]
    fn transient_faults_hit_the_first_attempt_only() {
        let mut f = FaultSettings::new(0.0, Some(1));
        use PaymentMethod::*;
        assert_eq!(f.for_attempt(Fault5xx, 1), Fault::Unavailable);
        assert_eq!(f.for_attempt(Fault5xx, 2), Fault::None);
        assert_eq!(f.for_attempt(FaultTimeout, 1), Fault::Timeout);
        assert_eq!(f.for_attempt(FaultTimeout, 3), Fault::None);
        assert_eq!(f.for_attempt(FaultLostSuccess, 1), Fault::LostSuccess);
        assert_eq!(f.for_attempt(CardDeclined, 1), Fault::Decline);
        assert_eq!(f.for_attempt(CardDeclined, 2), Fault::Decline);
        assert_eq!(f.for_attempt(CardOk, 1), Fault::None);
    }

    #[test]
    fn fault_rate_is_seeded_and_spares_retries() {
        let draws = |seed| {
            let mut f = FaultSettings::new(0.5, Some(seed));
            (0..64)
                .map(|_| f.for_attempt(PaymentMethod::CardOk, 1))
                .collect::<Vec<_>>()
        };
        let a = draws(42);
        assert_eq!(a, draws(42));
        assert!(a.contains(&Fault::None));
        assert!(a.iter().any(|f| *f != Fault::None));

        let mut always = FaultSettings::new(1.0, Some(3));
        for _ in 0..32 {
            assert_ne!(always.for_attempt(PaymentMethod::CardOk, 1), Fault::None);
            assert_eq!(always.for_attempt(PaymentMethod::CardOk, 2), Fault::None);
        }
    }

    #[test]
    fn refund_failures_count_down() {
        let mut f = FaultSettings::new(0.0, None);
        assert!(!f.take_refund_failure());
        f.set_refunds_fail_next(2);
        assert!(f.take_refund_failure());
        assert!(f.take_refund_failure());
        assert!(!f.take_refund_failure());
    }
}
