//! The money audit (invariant 5 in docs/architecture.md: *money is never
//! lost*): every charge the gateway took (its ledger, the customer's bank
//! statement) matched against what the region core recorded (Postgres,
//! the source of truth for bookings and refunds).
//!
//! The rule being checked (migration `…_checkout.sql`): a charge ends as
//! exactly one of a booking or a refund; a cancelled booking gets back
//! what its policy promised and nothing more; a purchase (one hold) is
//! charged at most once; no seat is booked twice; the gateway refunded,
//! payment by payment, exactly what our SUCCEEDED refund rows say.
//!
//! One audit for the end-to-end tests (which assert it is clean after
//! every money test) and the checkout benchmark (which reports it): the
//! reading ([`CoreRecords::load`], [`Gateway::ledger`](crate::gateway::Gateway::ledger))
//! is apart from the judging ([`MoneyAudit::of`]), which is pure and unit
//! tested here.

use crate::gateway::Ledger;
use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;
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
    /// The payment refunded.
    pub payment_id: Uuid,
    /// PENDING, SUCCEEDED, FAILED or SETTLED_MANUALLY (an operator paid
    /// it back outside the gateway).
    pub status: String,
    /// The amount to refund.
    pub amount_minor: i64,
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
    /// Seats sold twice, or whose seat row and booking disagree
    /// ([`BookingAudit::double_booked`](crate::invariants::BookingAudit::double_booked),
    /// counted by Postgres: the seat tables are too big to read whole
    /// after a benchmark).
    pub seats_double_booked: u64,
}

impl CoreRecords {
    /// Reads the tables of a database every row of which is the caller's
    /// (a test's or a benchmark run's own).
    pub async fn load(db: &PgPool) -> anyhow::Result<Self> {
        let payments: Vec<(Uuid, Uuid, String, Option<String>)> =
            sqlx::query_as("SELECT id, hold_id, status, settled FROM payments")
                .fetch_all(db)
                .await
                .context("reading payments")?;
        let bookings: Vec<(Uuid, String, Option<i64>)> =
            sqlx::query_as("SELECT payment_id, status, refund_minor FROM bookings")
                .fetch_all(db)
                .await
                .context("reading bookings")?;
        let refunds: Vec<(Uuid, String, i64)> =
            sqlx::query_as("SELECT payment_id, status, amount_minor FROM refunds")
                .fetch_all(db)
                .await
                .context("reading refunds")?;
        let seats = crate::invariants::audit_bookings(db, crate::invariants::Shows::All).await?;
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
                .map(|(payment_id, status, amount_minor)| RefundRow {
                    payment_id,
                    status,
                    amount_minor,
                })
                .collect(),
            seats_double_booked: u64::try_from(seats.double_booked())?,
        })
    }

    /// [`load`](Self::load) over a connection of its own to `db_url`.
    pub async fn load_url(db_url: &str) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(db_url)
            .await
            .context("connecting to the database for the money audit")?;
        let records = Self::load(&pool).await;
        pool.close().await;
        records
    }
}

/// The outcome of the audit. `charges` to `refund_rows` describe what
/// happened; every other field counts a violation (see
/// [`is_clean`](Self::is_clean)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MoneyAudit {
    /// Succeeded charges at the gateway.
    pub charges: u64,
    /// Their sum, minor units.
    pub charged_minor: i64,
    /// Refunds that landed at the gateway.
    pub gateway_refunds: u64,
    /// Their sum.
    pub refunded_minor: i64,
    /// Booking rows (any status).
    pub bookings: u64,
    /// Refund rows (any status).
    pub refunds: u64,
    /// Succeeded charges that are neither booked (a booking, its payment
    /// settled BOOKED) nor refunded (settled REFUNDED, or money back at
    /// the gateway): the customer paid and got nothing.
    pub money_lost: u64,
    /// Their sum.
    pub money_lost_minor: i64,
    /// Charges refunded less than owed (a charge without a booking not
    /// refunded in full, or a cancellation refunded below its quote).
    pub refunds_short: u64,
    /// Charges refunded more than owed (e.g. a live booking refunded).
    pub over_refunded: u64,
    /// Extra charges kept for one purchase (hold), plus extra charges
    /// under one payment reference.
    pub double_charged: u64,
    /// Seats sold twice (see [`CoreRecords::seats_double_booked`]).
    pub double_booked: u64,
    /// CONFIRMED bookings whose money went back (a refund row, or a
    /// gateway refund on their charge).
    pub booked_and_refunded: u64,
    /// Succeeded charges whose reference is no payment of the core.
    pub unknown_charges: u64,
    /// Bookings whose payment has no succeeded charge at the gateway.
    pub bookings_unpaid: u64,
    /// Payments still CREATED, or SUCCEEDED and unsettled (in flight; a
    /// violation only once reconciliation has run).
    pub payments_unsettled: u64,
    /// Refund rows still PENDING.
    pub refunds_pending: u64,
    /// Refund rows FAILED (need an operator).
    pub refunds_failed: u64,
    /// Payments for which the gateway refunded another amount than our
    /// SUCCEEDED refund rows say (see [`refund_mismatches`]).
    pub refund_mismatches: u64,
}

impl MoneyAudit {
    /// True when no violation was counted, pending refunds included.
    /// Payments in flight are not counted: see `payments_unsettled`.
    pub fn is_clean(&self) -> bool {
        self.money_lost == 0
            && self.refunds_short == 0
            && self.over_refunded == 0
            && self.double_charged == 0
            && self.double_booked == 0
            && self.booked_and_refunded == 0
            && self.unknown_charges == 0
            && self.bookings_unpaid == 0
            && self.refunds_pending == 0
            && self.refunds_failed == 0
            && self.refund_mismatches == 0
    }

    // About 90 lines: one pass over the ledger judging every charge;
    // each rule is a few lines next to the others it must agree with.
    /// Matches the gateway's ledger against the core's records.
    pub fn of(ledger: &Ledger, core: &CoreRecords) -> Self {
        let payments: HashMap<Uuid, &PaymentRow> =
            core.payments.iter().map(|p| (p.id, p)).collect();
        let bookings: HashMap<Uuid, &BookingRow> =
            core.bookings.iter().map(|b| (b.payment_id, b)).collect();
        let mut a = MoneyAudit {
            bookings: core.bookings.len() as u64,
            refunds: core.refunds.len() as u64,
            double_booked: core.seats_double_booked,
            refund_mismatches: refund_mismatches(ledger, core).len() as u64,
            ..MoneyAudit::default()
        };
        // Charges kept (not refunded in full) per purchase, and charges
        // per payment reference.
        let mut kept_per_hold: HashMap<String, u64> = HashMap::new();
        let mut per_reference: HashMap<&str, u64> = HashMap::new();
        let mut charged_payments: HashSet<Uuid> = HashSet::new();
        let mut refunded_at_gateway: HashSet<Uuid> = HashSet::new();
        // Money an operator paid back outside the gateway, per payment: it
        // counts as refunded, though no gateway ledger shows it.
        let mut by_hand: HashMap<Uuid, i64> = HashMap::new();
        for r in core
            .refunds
            .iter()
            .filter(|r| r.status == "SETTLED_MANUALLY")
        {
            *by_hand.entry(r.payment_id).or_default() += r.amount_minor;
        }
        for i in &ledger.intents {
            for r in &i.refunds {
                a.gateway_refunds += 1;
                a.refunded_minor += r.amount;
            }
            if !i.succeeded() {
                continue;
            }
            a.charges += 1;
            a.charged_minor += i.amount;
            *per_reference.entry(i.reference.as_str()).or_default() += 1;
            let payment_id = Uuid::parse_str(&i.reference).ok();
            if let Some(p) = payment_id {
                charged_payments.insert(p);
                if i.amount_refunded > 0 {
                    refunded_at_gateway.insert(p);
                }
            }
            let payment = payment_id.and_then(|p| payments.get(&p));
            let booking = payment_id.and_then(|p| bookings.get(&p));
            let refunded = i.amount_refunded
                + payment_id
                    .and_then(|p| by_hand.get(&p))
                    .copied()
                    .unwrap_or(0);
            let owed = match booking {
                Some(b) if b.status == "CANCELLED" => b.refund_minor.unwrap_or(0),
                Some(_) => 0,
                None => i.amount,
            };
            let settled = payment.and_then(|p| p.settled.as_deref());
            let booked = booking.is_some() && settled == Some("BOOKED");
            if !booked && settled != Some("REFUNDED") && refunded == 0 {
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
        let extra = |n: &u64| n.saturating_sub(1);
        a.double_charged = kept_per_hold.values().map(extra).sum::<u64>()
            + per_reference.values().map(extra).sum::<u64>();
        let refund_rows: HashSet<Uuid> = core.refunds.iter().map(|r| r.payment_id).collect();
        a.booked_and_refunded = core
            .bookings
            .iter()
            .filter(|b| b.status == "CONFIRMED")
            .filter(|b| {
                refund_rows.contains(&b.payment_id) || refunded_at_gateway.contains(&b.payment_id)
            })
            .count() as u64;
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

/// Payment by payment, where the gateway refunded another amount than our
/// SUCCEEDED refund rows add up to (zero when there is none), described
/// for a failure message.
pub fn refund_mismatches(ledger: &Ledger, core: &CoreRecords) -> Vec<String> {
    let mut ours: HashMap<String, i64> = HashMap::new();
    for r in core.refunds.iter().filter(|r| r.status == "SUCCEEDED") {
        *ours.entry(r.payment_id.to_string()).or_default() += r.amount_minor;
    }
    let mut theirs: HashMap<&str, (i64, Vec<&str>)> = HashMap::new();
    for i in &ledger.intents {
        let e = theirs.entry(i.reference.as_str()).or_default();
        e.0 += i.amount_refunded;
        e.1.push(i.id.as_str());
    }
    let references: HashSet<&str> = ours
        .keys()
        .map(String::as_str)
        .chain(theirs.keys().copied())
        .collect();
    let mut mismatches: Vec<String> = references
        .into_iter()
        .filter_map(|r| {
            let want = ours.get(r).copied().unwrap_or(0);
            let (got, ids) = theirs.get(r).cloned().unwrap_or_default();
            (want != got).then(|| {
                format!("payment {r}: we refunded {want}, the gateway {got} (intents {ids:?})")
            })
        })
        .collect();
    mismatches.sort();
    mismatches
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

    fn refund(payment_id: Uuid, amount_minor: i64) -> RefundRow {
        RefundRow {
            payment_id,
            status: "SUCCEEDED".into(),
            amount_minor,
        }
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
            refunds: vec![refund(p2, 250), refund(p3, 700)],
            ..CoreRecords::default()
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
        assert_eq!((a.gateway_refunds, a.refunds, a.bookings), (2, 2, 2));
        assert_eq!(a.refunded_minor, 950);
        assert!(a.is_clean(), "{a:?}");
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
        // Kept: a double charge (and a refund short: settled REFUNDED, yet
        // nothing went back).
        let bad = ledger(vec![
            intent(p1, 500, 0, "succeeded"),
            intent(p2, 500, 0, "succeeded"),
        ]);
        let a = MoneyAudit::of(&bad, &core);
        assert_eq!((a.double_charged, a.refunds_short), (1, 1));
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
        // The live booking's refund is also "booked and refunded", and the
        // gateway refunded what no refund row of ours says.
        assert_eq!((a.booked_and_refunded, a.refund_mismatches), (1, 1));
        assert!(!a.is_clean());
    }

    #[test]
    fn a_refund_settled_by_hand_is_not_short() {
        let (p1, h1) = (Uuid::now_v7(), Uuid::now_v7());
        let mut core = CoreRecords {
            payments: vec![payment(p1, h1, "SUCCEEDED", Some("BOOKED"))],
            bookings: vec![BookingRow {
                payment_id: p1,
                status: "CANCELLED".into(),
                refund_minor: Some(500),
            }],
            refunds: vec![RefundRow {
                payment_id: p1,
                status: "FAILED".into(),
                amount_minor: 500,
            }],
            ..CoreRecords::default()
        };
        let l = ledger(vec![intent(p1, 500, 0, "succeeded")]);
        let a = MoneyAudit::of(&l, &core);
        assert_eq!((a.refunds_short, a.refunds_failed), (1, 1));
        core.refunds[0].status = "SETTLED_MANUALLY".into();
        let a = MoneyAudit::of(&l, &core);
        assert_eq!(
            (a.refunds_short, a.over_refunded, a.refund_mismatches),
            (0, 0, 0)
        );
        assert!(a.is_clean(), "{a:?}");
    }

    #[test]
    fn a_refund_row_for_a_live_booking_or_a_seat_sold_twice_is_not_clean() {
        let (p1, h1) = (Uuid::now_v7(), Uuid::now_v7());
        let mut core = CoreRecords {
            payments: vec![payment(p1, h1, "SUCCEEDED", Some("BOOKED"))],
            bookings: vec![BookingRow {
                payment_id: p1,
                status: "CONFIRMED".into(),
                refund_minor: None,
            }],
            ..CoreRecords::default()
        };
        let l = ledger(vec![intent(p1, 500, 0, "succeeded")]);
        assert!(MoneyAudit::of(&l, &core).is_clean());
        core.seats_double_booked = 1;
        assert_eq!(MoneyAudit::of(&l, &core).double_booked, 1);
        assert!(!MoneyAudit::of(&l, &core).is_clean());
        core.seats_double_booked = 0;
        core.refunds.push(RefundRow {
            payment_id: p1,
            status: "PENDING".into(),
            amount_minor: 500,
        });
        let a = MoneyAudit::of(&l, &core);
        assert_eq!((a.booked_and_refunded, a.refunds_pending), (1, 1));
    }

    #[test]
    fn one_reference_charged_twice_is_a_double_charge() {
        let (p1, h1) = (Uuid::now_v7(), Uuid::now_v7());
        let core = CoreRecords {
            payments: vec![payment(p1, h1, "SUCCEEDED", Some("REFUNDED"))],
            refunds: vec![refund(p1, 1000)],
            ..CoreRecords::default()
        };
        // Both refunded in full, yet the gateway's idempotency failed.
        let l = ledger(vec![
            intent(p1, 500, 500, "succeeded"),
            intent(p1, 500, 500, "succeeded"),
        ]);
        let a = MoneyAudit::of(&l, &core);
        assert_eq!(
            (a.double_charged, a.money_lost, a.refund_mismatches),
            (1, 0, 0)
        );
    }
}
