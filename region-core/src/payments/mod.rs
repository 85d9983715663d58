//! Payments: the [`PaymentGateway`] trait the checkout, refund worker and
//! reconciliation talk to, and its HTTP client (`http`). The signed
//! webhook the gateway calls back is an HTTP handler of its own
//! (`crate::webhook`): it calls the services, which call this adapter.
//!
//! Every call carries an idempotency key we own (the payment or refund
//! id), so any call whose outcome is unknown can simply be made again.

pub mod http;

use async_trait::async_trait;
use uuid::Uuid;

/// A charge to make: create and capture a payment intent.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// Our payment id: the gateway idempotency key and reference.
    pub payment_id: Uuid,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// The buyer's payment method token.
    pub payment_method: String,
}

/// A definite answer from the gateway about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money was taken.
    Succeeded {
        /// The gateway's id of the payment.
        gateway_id: String,
    },
    /// The gateway refused (card declined, …); nothing was taken.
    Declined {
        /// The gateway's id, if it created one.
        gateway_id: Option<String>,
        /// Its reason code, e.g. `card_declined`.
        code: String,
    },
}

/// What the gateway knows about a charge we may or may not have made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeLookup {
    /// It charged (possibly in a request whose response we never saw).
    Succeeded {
        /// The gateway's id of the payment.
        gateway_id: String,
    },
    /// It refused.
    Failed {
        /// The gateway's id.
        gateway_id: String,
        /// Its reason code.
        code: String,
    },
    /// It has no charge with this reference: it never took money (after a
    /// void: and it never will).
    NotFound,
}

/// A refund to make.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// Our refund id: the gateway idempotency key and reference.
    pub refund_id: Uuid,
    /// The gateway's id of the charge to refund.
    pub gateway_payment_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
}

/// Why a gateway call did not give a definite answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Timeout, connection failure, 5xx, or a concurrent request with the
    /// same key: the outcome is unknown and the same call may be retried.
    #[error("gateway outcome unknown: {0}")]
    Unavailable(String),
    /// A 4xx the same request will always get (bad amount, unknown
    /// payment method …): retrying cannot help.
    #[error("gateway refused the request (HTTP {status}): {code}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The gateway's error code.
        code: String,
    },
}

/// Why a checkout's charge took no money, as counted by
/// `payment_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeFailure {
    /// The gateway declined (card declined, insufficient funds, …): the
    /// buyer's answer is 402.
    Declined,
    /// No definite answer (timeout, connection failure, 5xx): the key
    /// stays resumable and the buyer gets 503 `payment_pending`.
    OutcomeUnknown,
    /// The gateway refused the request itself (a 4xx no retry fixes: an
    /// unknown payment method, a voided reference): answered as a decline.
    Rejected,
}

impl ChargeFailure {
    /// Every reason, for registering the counter's series at start-up.
    pub const ALL: [Self; 3] = [Self::Declined, Self::OutcomeUnknown, Self::Rejected];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Declined => "declined",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Rejected => "rejected",
        }
    }

    /// Of a charge attempt's result: `None` when money was taken.
    pub fn of(result: &Result<ChargeOutcome, GatewayError>) -> Option<Self> {
        match result {
            Ok(ChargeOutcome::Succeeded { .. }) => None,
            Ok(ChargeOutcome::Declined { .. }) => Some(Self::Declined),
            Err(GatewayError::Unavailable(_)) => Some(Self::OutcomeUnknown),
            Err(GatewayError::Rejected { .. }) => Some(Self::Rejected),
        }
    }
}

/// A payment gateway in the usual shape (payment intents with
/// idempotency keys, refunds, webhooks).
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Creates and captures a charge. Idempotent per `payment_id`.
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError>;
    /// Finds out whether a charge with this reference exists.
    async fn find_charge(&self, payment_id: Uuid) -> Result<ChargeLookup, GatewayError>;
    /// Like [`Self::find_charge`], but when no charge exists the gateway
    /// voids the reference first, so a charge request still on its way
    /// can never take money later: [`ChargeLookup::NotFound`] then means
    /// "never charged, and never will be". A charge executing right now is
    /// an error (ask again), not `NotFound`.
    async fn void_unless_charged(&self, payment_id: Uuid) -> Result<ChargeLookup, GatewayError>;
    /// Refunds (part of) a charge; returns the gateway's refund id.
    /// Idempotent per `refund_id`.
    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_charge_without_money_taken_has_a_reason() {
        let ok = Ok(ChargeOutcome::Succeeded {
            gateway_id: "pi_1".into(),
        });
        assert_eq!(ChargeFailure::of(&ok), None);
        let declined = Ok(ChargeOutcome::Declined {
            gateway_id: None,
            code: "card_declined".into(),
        });
        assert_eq!(ChargeFailure::of(&declined), Some(ChargeFailure::Declined));
        let unknown = Err(GatewayError::Unavailable("timeout".into()));
        assert_eq!(
            ChargeFailure::of(&unknown),
            Some(ChargeFailure::OutcomeUnknown)
        );
        let rejected = Err(GatewayError::Rejected {
            status: 400,
            code: "invalid_payment_method".into(),
        });
        assert_eq!(ChargeFailure::of(&rejected), Some(ChargeFailure::Rejected));
        let labels: Vec<_> = ChargeFailure::ALL.iter().map(|f| f.label()).collect();
        assert_eq!(labels, ["declined", "outcome_unknown", "rejected"]);
    }
}
