//! The money side of the gateway's memory: payment intents and refunds as
//! they appear on the wire, in creation order, and the totals that
//! `GET /sandbox/ledger` reports. Plain data; callers hold the lock.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Final state of an intent (the sandbox confirms and captures at once,
/// so there is no pending state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IntentStatus {
    Succeeded,
    Failed,
}

/// A payment intent, serialized exactly as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PaymentIntent {
    pub(crate) id: String,
    pub(crate) object: &'static str,
    pub(crate) amount: i64,
    pub(crate) amount_refunded: i64,
    pub(crate) currency: String,
    pub(crate) status: IntentStatus,
    pub(crate) payment_method: String,
    pub(crate) reference: String,
    pub(crate) failure_code: Option<&'static str>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) created: i64,
}

/// A refund, serialized exactly as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refund {
    pub(crate) id: String,
    pub(crate) object: &'static str,
    pub(crate) payment_intent: String,
    pub(crate) amount: i64,
    pub(crate) status: &'static str,
    pub(crate) reference: String,
    pub(crate) created: i64,
}

#[cfg(test)]
impl PaymentIntent {
    /// An intent for unit tests.
    pub(crate) fn sample(status: IntentStatus, amount: i64, amount_refunded: i64) -> Self {
        Self {
            id: "pi_1".into(),
            object: "payment_intent",
            amount,
            amount_refunded,
            currency: "INR".into(),
            status,
            payment_method: "pm_card_ok".into(),
            reference: "pay_1".into(),
            failure_code: None,
            metadata: BTreeMap::new(),
            created: 1,
        }
    }
}

/// Every intent and refund since start-up.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Oldest first, which is the order lists promise.
    intents: Vec<PaymentIntent>,
    /// Intent id → position in `intents`.
    by_id: HashMap<String, usize>,
    /// Oldest first.
    refunds: Vec<Refund>,
}

impl Ledger {
    /// Records a new intent.
    pub(crate) fn add_intent(&mut self, intent: PaymentIntent) {
        self.by_id.insert(intent.id.clone(), self.intents.len());
        self.intents.push(intent);
    }

    /// The intent with this id.
    pub(crate) fn intent(&self, id: &str) -> Option<&PaymentIntent> {
        self.by_id.get(id).map(|&i| &self.intents[i])
    }

    /// Intents carrying `reference` (all if `None`), oldest first.
    pub(crate) fn intents_by_reference(&self, reference: Option<&str>) -> Vec<PaymentIntent> {
        self.intents
            .iter()
            .filter(|i| reference.is_none_or(|r| i.reference == r))
            .cloned()
            .collect()
    }

    /// Records a refund and adds it to its intent's `amount_refunded`.
    /// The caller has checked it with `refunds::check`.
    pub(crate) fn add_refund(&mut self, refund: Refund) {
        if let Some(&i) = self.by_id.get(&refund.payment_intent) {
            let intent = &mut self.intents[i];
            intent.amount_refunded = intent.amount_refunded.saturating_add(refund.amount);
        }
        self.refunds.push(refund);
    }

    /// Everything, each intent with its refunds, plus totals.
    pub(crate) fn view(&self) -> LedgerView {
        let mut refunds_of: HashMap<&str, Vec<Refund>> = HashMap::new();
        for r in &self.refunds {
            refunds_of
                .entry(r.payment_intent.as_str())
                .or_default()
                .push(r.clone());
        }
        let intents = self
            .intents
            .iter()
            .map(|i| IntentWithRefunds {
                intent: i.clone(),
                refunds: refunds_of.remove(i.id.as_str()).unwrap_or_default(),
            })
            .collect();
        let succeeded = self
            .intents
            .iter()
            .filter(|i| i.status == IntentStatus::Succeeded);
        let totals = Totals {
            charges: succeeded.clone().count(),
            charged_minor: succeeded.fold(0, |sum, i| sum.saturating_add(i.amount)),
            refunds: self.refunds.len(),
            refunded_minor: self
                .refunds
                .iter()
                .fold(0, |sum, r| sum.saturating_add(r.amount)),
        };
        LedgerView { intents, totals }
    }
}

/// `GET /sandbox/ledger`
#[derive(Debug, Serialize)]
pub(crate) struct LedgerView {
    intents: Vec<IntentWithRefunds>,
    totals: Totals,
}

#[derive(Debug, Serialize)]
struct IntentWithRefunds {
    #[serde(flatten)]
    intent: PaymentIntent,
    refunds: Vec<Refund>,
}

#[derive(Debug, Serialize)]
struct Totals {
    /// Succeeded intents.
    charges: usize,
    /// Sum of their amounts.
    charged_minor: i64,
    /// Refunds (all refunds succeed in the sandbox).
    refunds: usize,
    /// Sum of their amounts.
    refunded_minor: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str, reference: &str, amount: i64, status: IntentStatus) -> PaymentIntent {
        PaymentIntent {
            id: id.into(),
            reference: reference.into(),
            ..PaymentIntent::sample(status, amount, 0)
        }
    }

    #[test]
    fn totals_count_succeeded_charges_and_refunds() {
        let mut ledger = Ledger::default();
        ledger.add_intent(intent("pi_1", "a", 1000, IntentStatus::Succeeded));
        ledger.add_intent(intent("pi_2", "b", 500, IntentStatus::Failed));
        ledger.add_intent(intent("pi_3", "a", 250, IntentStatus::Succeeded));
        ledger.add_refund(Refund {
            id: "re_1".into(),
            object: "refund",
            payment_intent: "pi_1".into(),
            amount: 300,
            status: "succeeded",
            reference: "r1".into(),
            created: 2,
        });
        assert_eq!(ledger.intent("pi_1").unwrap().amount_refunded, 300);
        let ids: Vec<_> = ledger
            .intents_by_reference(Some("a"))
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["pi_1", "pi_3"]);
        assert_eq!(ledger.intents_by_reference(None).len(), 3);

        let v = serde_json::to_value(ledger.view()).unwrap();
        assert_eq!(
            v["totals"],
            serde_json::json!({"charges": 2, "charged_minor": 1250, "refunds": 1, "refunded_minor": 300})
        );
        assert_eq!(v["intents"][0]["refunds"][0]["id"], "re_1");
        assert_eq!(v["intents"][0]["amount_refunded"], 300);
        assert_eq!(v["intents"][1]["refunds"], serde_json::json!([]));
    }
}
