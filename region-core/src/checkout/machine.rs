//! The checkout's state machine, without I/O: from where a request finds
//! its idempotency key and its payment, what it does next. `flow`
//! performs the steps (a finished key replays; a new one creates the
//! payment; the gateway's answer is recorded); which step follows a
//! recovery point is decided here, and every transition is unit-tested
//! below.
//!
//! A key moves `started → payment_created → payment_succeeded → finished`
//! (`RecoveryPoint`); each arrow is a commit. The payment row moves
//! `CREATED → SUCCEEDED | FAILED | ABANDONED` (a refund is recorded in
//! `settled`, not here), and
//! may be moved by someone else (the gateway's webhook, reconciliation)
//! while a request is away at the gateway. The next step depends on both.

use crate::idempotency::RecoveryPoint;

/// A payment row's status (the `payments.status` column; the query
/// macros read and bind it as this type, spelled as the schema's CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Recorded; the gateway may or may not have charged.
    Created,
    /// The gateway charged.
    Succeeded,
    /// Declined or rejected: nothing charged.
    Failed,
    /// Never reached the gateway (closed by reconciliation).
    Abandoned,
}

/// The next step of a request holding its key at `point`, whose payment
/// row now says `payment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask the gateway to charge (phase 2).
    Charge,
    /// Book the seats or refund the charge (phase 3).
    Settle,
    /// Someone else closed the payment unpaid and finished the key:
    /// answer what they stored.
    AnswerClosed,
}

/// Decides the step after phase 1.
pub fn step(point: RecoveryPoint, payment: PaymentStatus) -> Step {
    match (point, payment) {
        // Past the charge: settlement decides booking or refund, and is
        // itself idempotent.
        (RecoveryPoint::PaymentSucceeded | RecoveryPoint::Finished, _) => Step::Settle,
        (_, PaymentStatus::Created) => Step::Charge,
        // A webhook or reconciliation recorded the charge while this
        // request was away: settle it.
        (_, PaymentStatus::Succeeded) => Step::Settle,
        (_, PaymentStatus::Failed | PaymentStatus::Abandoned) => Step::AnswerClosed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus as P;
    use RecoveryPoint as R;

    const ALL_PAYMENTS: [PaymentStatus; 4] = [P::Created, P::Succeeded, P::Failed, P::Abandoned];

    #[test]
    fn before_the_charge_the_payment_row_decides() {
        for point in [R::Started, R::PaymentCreated] {
            assert_eq!(step(point, P::Created), Step::Charge, "{point:?}");
            assert_eq!(step(point, P::Succeeded), Step::Settle, "{point:?}");
            assert_eq!(step(point, P::Failed), Step::AnswerClosed, "{point:?}");
            assert_eq!(step(point, P::Abandoned), Step::AnswerClosed, "{point:?}");
        }
    }

    #[test]
    fn payment_statuses_are_spelled_as_the_column_allows() {
        let spelled: Vec<String> = ALL_PAYMENTS.map(crate::db::spelling).into();
        assert_eq!(spelled, ["CREATED", "SUCCEEDED", "FAILED", "ABANDONED"]);
    }

    #[test]
    fn after_the_charge_only_settlement_remains() {
        // Never a second charge once the key has passed it, whatever the
        // payment row says.
        for p in ALL_PAYMENTS {
            assert_eq!(step(R::PaymentSucceeded, p), Step::Settle, "{p:?}");
            assert_eq!(step(R::Finished, p), Step::Settle, "{p:?}");
        }
    }
}
