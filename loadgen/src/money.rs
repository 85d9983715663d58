//! The money audit after a checkout run: every charge the gateway took
//! (its ledger, the customer's bank statement) matched against what the
//! region core recorded (Postgres, the source of truth for bookings).
//!
//! The rule being checked (migration `…_checkout.sql`): a charge ends as
//! exactly one of a booking or a refund; a cancelled booking gets back
//! what its policy promised; a purchase (one hold) is charged at most once.

use crate::gateway::Ledger;
use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A `payments` row.
#[derive(Debug, Clone)]
pub struct PaymentRow {
    /// Payment id (the gateway reference and idempotency key).
    pub id: Uuid,
    /// The hold it pays for.
    pub hold_id: Uuid,
    /// CREATED, SUCCEEDED, FAILED or ABANDONED.
    pub status: String,
    /// BOOKED, REFUNDED or none.
    pub settled: Option<String>,
}

/// A `bookings` row.
#[derive(Debug, Clone)]
pub struct BookingRow {
    /// The payment behind it.
    pub payment_id: Uuid,
    /// CONFIRMED or CANCELLED.
    pub status: String,
    /// What a cancellation refunds (None while confirmed).
    pub refund_minor: Option<i64>,
}

/// A `refunds` row.
#[derive(Debug, Clone)]
pub struct RefundRow {
    /// PENDING, SUCCEEDED or FAILED.
    pub status: String,
}

/// What the region core recorded.
#[derive(Debug, Clone, Default)]
pub struct CoreRecords {
    /// Every payment.
    pub payments: Vec<PaymentRow>,
    /// Every booking.
    pub bookings: Vec<BookingRow>,
    /// Every refund.
    pub refunds: Vec<RefundRow>,
}

impl CoreRecords {
    /// Reads the tables of the run's own database (every row is the run's).
    pub async fn load(db_url: &str) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(db_url)
            .await
            .context("connecting to the database for the money audit")?;
        let payments: Vec<(Uuid, Uuid, String, Option<String>)> =
            sqlx::query_as("SELECT id, hold_id, status, settled FROM payments")
                .fetch_all(&mut conn)
                .await
                .context("reading payments")?;
        let bookings: Vec<(Uuid, String, Option<i64>)> =
            sqlx::query_as("SELECT payment_id, status, refund_minor FROM bookings")
                .fetch_all(&mut conn)
                .await
                .context("reading bookings")?;
        let refunds: Vec<(String,)> = sqlx::query_as("SELECT status FROM refunds")
            .fetch_all(&mut conn)
            .await
            .context("reading refunds")?;
        let _ = conn.close().await;
        Ok(Self {
            payments: payments
                .into_iter()
                .map(|(id, hold_id, status, settled)| PaymentRow {
                    id,
                    hold_id,
                    status,
                    settled,
                })
                .collect(),
            bookings: bookings
                .into_iter()
                .map(|(payment_id, status, refund_minor)| BookingRow {
                    payment_id,
                    status,
                    refund_minor,
                })
                .collect(),
            refunds: refunds
                .into_iter()
                .map(|(status,)| RefundRow { status })
                .collect(),
        })
    }
}

/// The outcome of the audit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MoneyAudit {
    /// Succeeded charges at the gateway.
    pub charges: u64,
    /// Their sum, minor units.
    pub charged_minor: i64,
    /// Refunds that landed at the gateway.
    pub refunds: u64,
    /// Their sum.
    pub refunded_minor: i64,
    /// Succeeded charges matched by neither a booking nor a refund: the
    /// customer paid and got nothing (must be 0).
    pub money_lost: u64,
    /// Their sum.
    pub money_lost_minor: i64,
    /// Charges refunded less than owed (a charge without a booking not
    /// refunded in full, or a cancellation refunded below its quote).
    pub refunds_short: u64,
    /// Charges refunded more than owed (e.g. a live booking refunded).
    pub over_refunded: u64,
    /// Purchases (holds) charged more than once with the money kept
    /// (must be 0).
    pub double_charged: u64,
    /// Succeeded charges whose reference is no payment of the core.
    pub unknown_charges: u64,
    /// Bookings whose payment has no succeeded charge at the gateway.
    pub bookings_unpaid: u64,
    /// Payments still CREATED, or SUCCEEDED and unsettled.
    pub payments_unsettled: u64,
    /// Refund rows still PENDING in Postgres.
    pub refunds_pending: u64,
    /// Refund rows FAILED (need an operator).
    pub refunds_failed: u64,
}

impl MoneyAudit {
    /// Matches the gateway's ledger against the core's records.
    pub fn of(ledger: &Ledger, core: &CoreRecords) -> Self {
        let payments: HashMap<Uuid, &PaymentRow> =
            core.payments.iter().map(|p| (p.id, p)).collect();
        let bookings: HashMap<Uuid, &BookingRow> =
            core.bookings.iter().map(|b| (b.payment_id, b)).collect();
        let mut a = MoneyAudit::default();
        // Charges kept (not refunded in full) per purchase.
        let mut kept_per_hold: HashMap<String, u64> = HashMap::new();
        let mut charged_payments: HashSet<Uuid> = HashSet::new();
        for i in &ledger.intents {
            for r in &i.refunds {
                a.refunds += 1;
                a.refunded_minor += r.amount;
            }
            if !i.succeeded() {
                continue;
            }
            a.charges += 1;
            a.charged_minor += i.amount;
            let payment_id = Uuid::parse_str(&i.reference).ok();
            if let Some(p) = payment_id {
                charged_payments.insert(p);
            }
            let payment = payment_id.and_then(|p| payments.get(&p));
            let booking = payment_id.and_then(|p| bookings.get(&p));
            let refunded = i.amount_refunded;
            let owed = match booking {
                Some(b) if b.status == "CANCELLED" => b.refund_minor.unwrap_or(0),
                Some(_) => 0,
                None => i.amount,
            };
            if booking.is_none() && refunded == 0 {
                a.money_lost += 1;
                a.money_lost_minor += i.amount;
            } else if refunded < owed {
                a.refunds_short += 1;
            }
            if refunded > owed {
                a.over_refunded += 1;
            }
            if payment.is_none() {
                a.unknown_charges += 1;
            }
            if refunded < i.amount {
                let purchase =
                    payment.map_or_else(|| i.reference.clone(), |p| p.hold_id.to_string());
                *kept_per_hold.entry(purchase).or_default() += 1;
            }
        }
        a.double_charged = kept_per_hold.values().map(|n| n.saturating_sub(1)).sum();
        a.bookings_unpaid = core
            .bookings
            .iter()
            .filter(|b| !charged_payments.contains(&b.payment_id))
            .count() as u64;
        a.payments_unsettled = core
            .payments
            .iter()
            .filter(|p| p.status == "CREATED" || (p.status == "SUCCEEDED" && p.settled.is_none()))
            .count() as u64;
        a.refunds_pending = core
            .refunds
            .iter()
            .filter(|r| r.status == "PENDING")
            .count() as u64;
        a.refunds_failed = core.refunds.iter().filter(|r| r.status == "FAILED").count() as u64;
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{GatewayRefund, Intent};

    fn intent(reference: Uuid, amount: i64, refunded: i64, status: &str) -> Intent {
        Intent {
            id: format!("pi_{reference}"),
            amount,
            amount_refunded: refunded,
            currency: "INR".into(),
            status: status.into(),
            reference: reference.to_string(),
            refunds: if refunded > 0 {
                vec![GatewayRefund {
                    id: "re_1".into(),
                    amount: refunded,
                    reference: "r".into(),
                }]
            } else {
                vec![]
            },
        }
    }

    fn ledger(intents: Vec<Intent>) -> Ledger {
        Ledger { intents }
    }

    fn payment(id: Uuid, hold: Uuid, status: &str, settled: Option<&str>) -> PaymentRow {
        PaymentRow {
            id,
            hold_id: hold,
            status: status.into(),
            settled: settled.map(str::to_owned),
        }
    }

    #[test]
    fn booked_cancelled_and_compensated_charges_all_balance() {
        let (p1, p2, p3, p4) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let (h1, h2, h3, h4) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let core = CoreRecords {
            payments: vec![
                payment(p1, h1, "SUCCEEDED", Some("BOOKED")),
                payment(p2, h2, "SUCCEEDED", Some("BOOKED")),
                payment(p3, h3, "SUCCEEDED", Some("REFUNDED")),
                payment(p4, h4, "FAILED", None),
            ],
            bookings: vec![
                BookingRow {
                    payment_id: p1,
                    status: "CONFIRMED".into(),
                    refund_minor: None,
                },
                BookingRow {
                    payment_id: p2,
                    status: "CANCELLED".into(),
                    refund_minor: Some(250),
                },
            ],
            refunds: vec![
                RefundRow {
                    status: "SUCCEEDED".into(),
                },
                RefundRow {
                    status: "SUCCEEDED".into(),
                },
            ],
        };
        let l = ledger(vec![
            intent(p1, 500, 0, "succeeded"),
            intent(p2, 500, 250, "succeeded"),
            intent(p3, 700, 700, "succeeded"),
            intent(p4, 900, 0, "failed"),
        ]);
        let a = MoneyAudit::of(&l, &core);
        assert_eq!(a.charges, 3);
        assert_eq!(a.charged_minor, 1700);
        assert_eq!(a.refunds, 2);
        assert_eq!(a.refunded_minor, 950);
        assert_eq!(
            (
                a.money_lost,
                a.refunds_short,
                a.over_refunded,
                a.double_charged
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(
            (a.unknown_charges, a.bookings_unpaid, a.payments_unsettled),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_charge_with_neither_booking_nor_refund_is_lost() {
        let (p1, h1) = (Uuid::now_v7(), Uuid::now_v7());
        let core = CoreRecords {
            payments: vec![payment(p1, h1, "SUCCEEDED", None)],
            ..CoreRecords::default()
        };
        let a = MoneyAudit::of(&ledger(vec![intent(p1, 500, 0, "succeeded")]), &core);
        assert_eq!((a.money_lost, a.money_lost_minor), (1, 500));
        assert_eq!(a.payments_unsettled, 1);
        // A charge the core has never heard of is lost too.
        let a = MoneyAudit::of(
            &ledger(vec![intent(Uuid::now_v7(), 300, 0, "succeeded")]),
            &CoreRecords::default(),
        );
        assert_eq!((a.money_lost, a.unknown_charges), (1, 1));
    }

    #[test]
    fn two_kept_charges_for_one_hold_are_a_double_charge() {
        let (p1, p2, hold) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let core = CoreRecords {
            payments: vec![
                payment(p1, hold, "SUCCEEDED", Some("BOOKED")),
                payment(p2, hold, "SUCCEEDED", Some("REFUNDED")),
            ],
            bookings: vec![BookingRow {
                payment_id: p1,
                status: "CONFIRMED".into(),
                refund_minor: None,
            }],
            ..CoreRecords::default()
        };
        // The second charge refunded in full: no double charge.
        let ok = ledger(vec![
            intent(p1, 500, 0, "succeeded"),
            intent(p2, 500, 500, "succeeded"),
        ]);
        assert_eq!(MoneyAudit::of(&ok, &core).double_charged, 0);
        // Kept: a double charge (and money lost: no booking, no refund).
        let bad = ledger(vec![
            intent(p1, 500, 0, "succeeded"),
            intent(p2, 500, 0, "succeeded"),
        ]);
        let a = MoneyAudit::of(&bad, &core);
        assert_eq!((a.double_charged, a.money_lost), (1, 1));
    }

    #[test]
    fn refund_amounts_are_checked_against_what_is_owed() {
        let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
        let core = CoreRecords {
            payments: vec![
                payment(p1, Uuid::now_v7(), "SUCCEEDED", Some("BOOKED")),
                payment(p2, Uuid::now_v7(), "SUCCEEDED", Some("BOOKED")),
            ],
            bookings: vec![
                BookingRow {
                    payment_id: p1,
                    status: "CANCELLED".into(),
                    refund_minor: Some(500),
                },
                BookingRow {
                    payment_id: p2,
                    status: "CONFIRMED".into(),
                    refund_minor: None,
                },
            ],
            ..CoreRecords::default()
        };
        let l = ledger(vec![
            intent(p1, 500, 0, "succeeded"),   // cancelled, refund not landed
            intent(p2, 500, 100, "succeeded"), // live booking refunded
        ]);
        let a = MoneyAudit::of(&l, &core);
        assert_eq!((a.refunds_short, a.over_refunded, a.money_lost), (1, 1, 0));
    }
}
