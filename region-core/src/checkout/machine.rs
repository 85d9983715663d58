//! The checkout's state machine, without I/O: from where a request finds
//! its idempotency key and its payment, what it does next, and where a
//! (simulated) crash may stop it. `flow` performs the steps; everything it
//! decides comes from here, so every transition is unit-tested below.
//!
//! A key moves `started → payment_created → payment_succeeded → finished`
//! (`RecoveryPoint`); each arrow is a commit. The payment row moves
//! `CREATED → SUCCEEDED | FAILED | ABANDONED` (a refund is recorded in
//! `settled`, not here), and
//! may be moved by someone else (the gateway's webhook, reconciliation)
//! while a request is away at the gateway. The next step depends on both.

use crate::config::CrashPoint;
use crate::idempotency::{KeyState, RecoveryPoint, StoredResponse};

/// A payment row's status (the `payments.status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl PaymentStatus {
    /// The column's value.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Abandoned => "ABANDONED",
        }
    }

    /// Parses the column's value (`None`: not a status the schema allows).
    pub fn from_db_str(s: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Succeeded,
            Self::Failed,
            Self::Abandoned,
        ]
        .into_iter()
        .find(|p| p.as_db_str() == s)
    }
}

/// What a request does when it first meets its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The key is finished: answer its stored response, marked replayed.
    Replay(StoredResponse),
    /// A new key: check the hold and record key + payment (phase 1).
    CreatePayment,
    /// An earlier request stopped at this point (crash, unknown outcome);
    /// this one holds the key's lock now and carries on.
    Resume(RecoveryPoint),
}

/// [`Start`] from what `idempotency::store::begin` found.
pub fn start(key: KeyState) -> Start {
    match key {
        KeyState::Replay(r) => Start::Replay(r),
        KeyState::New => Start::CreatePayment,
        KeyState::Resume(p) => Start::Resume(p),
    }
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

/// What the gateway said about a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeResult {
    /// Charged.
    Succeeded,
    /// The card was declined.
    Declined,
    /// The gateway refused the request itself (4xx): nothing charged.
    Rejected,
    /// No answer in time: the charge may or may not have happened.
    Unknown,
}

/// What the request does with the gateway's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCharge {
    /// Record the charge and advance the key to `payment_succeeded` in one
    /// transaction, then settle.
    RecordSuccessThenSettle,
    /// Close the payment as failed and finish the key with 402, in one
    /// transaction; if someone closed it first, answer what they stored.
    RecordFailureThenAnswer,
    /// Leave everything as it is, unlock the key and answer 503 with
    /// `Retry-After`: a retry with the same key resumes here, and the
    /// webhook or reconciliation learns the outcome meanwhile.
    UnlockAndRetryLater,
}

/// Decides what follows the charge.
pub fn after_charge(result: ChargeResult) -> AfterCharge {
    match result {
        ChargeResult::Succeeded => AfterCharge::RecordSuccessThenSettle,
        ChargeResult::Declined | ChargeResult::Rejected => AfterCharge::RecordFailureThenAnswer,
        ChargeResult::Unknown => AfterCharge::UnlockAndRetryLater,
    }
}

/// Whether a failed step leaves the key locked: only a (simulated) crash
/// does, as a dead process would; any other failure unlocks it so the
/// buyer's retry resumes at once instead of waiting for the lock to lapse.
pub fn unlock_on_failure(crashed: bool) -> bool {
    !crashed
}

/// The recovery points the test-only crash switch can stop at, in the
/// order a checkout passes them, with the key's point once each is passed.
pub const CRASH_POINTS: [(CrashPoint, RecoveryPoint); 4] = [
    (
        CrashPoint::AfterPaymentCreated,
        RecoveryPoint::PaymentCreated,
    ),
    (
        CrashPoint::AfterGatewayCharge,
        RecoveryPoint::PaymentCreated,
    ),
    (
        CrashPoint::AfterPaymentRecorded,
        RecoveryPoint::PaymentSucceeded,
    ),
    (CrashPoint::AfterSettle, RecoveryPoint::Finished),
];

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus as P;
    use RecoveryPoint as R;

    const ALL_PAYMENTS: [PaymentStatus; 4] = [P::Created, P::Succeeded, P::Failed, P::Abandoned];

    fn stored() -> StoredResponse {
        StoredResponse {
            status: 201,
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_finished_key_replays_a_new_one_creates_a_locked_one_resumes() {
        assert_eq!(start(KeyState::Replay(stored())), Start::Replay(stored()));
        assert_eq!(start(KeyState::New), Start::CreatePayment);
        for p in [R::Started, R::PaymentCreated, R::PaymentSucceeded] {
            assert_eq!(start(KeyState::Resume(p)), Start::Resume(p));
        }
    }

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
    fn after_the_charge_only_settlement_remains() {
        // Never a second charge once the key has passed it, whatever the
        // payment row says.
        for p in ALL_PAYMENTS {
            assert_eq!(step(R::PaymentSucceeded, p), Step::Settle, "{p:?}");
            assert_eq!(step(R::Finished, p), Step::Settle, "{p:?}");
        }
    }

    #[test]
    fn the_gateway_answer_decides_record_answer_or_retry() {
        assert_eq!(
            after_charge(ChargeResult::Succeeded),
            AfterCharge::RecordSuccessThenSettle
        );
        assert_eq!(
            after_charge(ChargeResult::Declined),
            AfterCharge::RecordFailureThenAnswer
        );
        assert_eq!(
            after_charge(ChargeResult::Rejected),
            AfterCharge::RecordFailureThenAnswer
        );
        assert_eq!(
            after_charge(ChargeResult::Unknown),
            AfterCharge::UnlockAndRetryLater
        );
    }

    #[test]
    fn only_a_crash_keeps_the_key_locked() {
        assert!(unlock_on_failure(false));
        assert!(!unlock_on_failure(true));
    }

    #[test]
    fn crash_points_follow_the_recovery_points_in_order() {
        let order = |p: R| {
            [
                R::Started,
                R::PaymentCreated,
                R::PaymentSucceeded,
                R::Finished,
            ]
            .iter()
            .position(|x| *x == p)
            .unwrap()
        };
        let points: Vec<usize> = CRASH_POINTS.iter().map(|(_, p)| order(*p)).collect();
        assert!(points.windows(2).all(|w| w[0] <= w[1]), "{points:?}");
        // A resume from each crash point takes the step the machine says:
        // before the charge is recorded it may charge (the gateway's
        // idempotency key is the payment id, so it charges once); after
        // it, it only settles.
        for (crash, point) in CRASH_POINTS {
            let next = step(point, P::Created);
            let want = if order(point) < order(R::PaymentSucceeded) {
                Step::Charge
            } else {
                Step::Settle
            };
            assert_eq!(next, want, "{crash:?}");
        }
    }

    #[test]
    fn payment_statuses_round_trip_through_the_column() {
        for p in ALL_PAYMENTS {
            assert_eq!(PaymentStatus::from_db_str(p.as_db_str()), Some(p));
        }
        assert_eq!(PaymentStatus::from_db_str("created"), None);
        assert_eq!(PaymentStatus::from_db_str(""), None);
    }
}
