//! The money audit (invariant 5 in docs/architecture.md: *money is never lost*): every
//! charge the gateway made must end, once reconciliation has run, as
//! exactly one of a confirmed (or later cancelled) booking or a refund,
//! and a retried checkout never charges twice.
//!
//! The audit reads both sides: the sandbox gateway's ledger (what really
//! happened to the card) and the app's database (what we believe
//! happened), and counts every way they can disagree. Tests assert the
//! counts are zero; `settled_audit` first waits for pending refunds to
//! land and then checks that the gateway refunded exactly what our
//! `refunds` rows say, payment by payment.
//!
//! It also holds the few calls the money tests make to move money: a
//! checkout that keeps the exact answer bytes, reconciliation, and the
//! sandbox gateway's switches (webhooks, refund faults).

use crate::{eventually, TestApp, GATEWAY_KEY};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What the audit found. Every field except `charges`, `bookings` and
/// `refunds` counts a violation and must be zero after a test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoneyReport {
    /// Succeeded intents at the gateway.
    pub charges: u64,
    /// Booking rows (any status).
    pub bookings: u64,
    /// Refund rows (any status).
    pub refunds: u64,
    /// Succeeded intents whose payment is neither booked (settled BOOKED
    /// with a booking row) nor settled REFUNDED: a charge nobody owns.
    pub money_lost: u64,
    /// Holds paid by more than one succeeded, not fully refunded intent,
    /// plus payment references charged more than once.
    pub double_charged: u64,
    /// Seats with more than one active booking, plus BOOKED seats whose
    /// booking is not CONFIRMED.
    pub double_booked: u64,
    /// CONFIRMED bookings whose money went back (a refund row, or a
    /// gateway refund on their intent).
    pub booked_and_refunded: u64,
    /// Refund rows not (yet) SUCCEEDED.
    pub pending_refunds: u64,
}

impl MoneyReport {
    /// True when no violation was counted (pending refunds included).
    pub fn is_clean(&self) -> bool {
        self.money_lost == 0
            && self.double_charged == 0
            && self.double_booked == 0
            && self.booked_and_refunded == 0
            && self.pending_refunds == 0
    }
}

/// One intent of `GET /sandbox/ledger` (the fields the audit needs).
#[derive(Debug, Deserialize)]
struct Intent {
    id: String,
    status: String,
    amount: i64,
    amount_refunded: i64,
    reference: String,
}

#[derive(Debug, Deserialize)]
struct Ledger {
    intents: Vec<Intent>,
}

/// A payment row as the audit sees it.
struct Payment {
    hold_id: String,
    settled: Option<String>,
    has_booking: bool,
}

/// `GET /sandbox/ledger`, as sent.
async fn ledger_json(app: &TestApp) -> anyhow::Result<Value> {
    let resp = app
        .http
        .get(format!("{}/sandbox/ledger", app.gateway.url()))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .context("GET /sandbox/ledger")?;
    anyhow::ensure!(
        resp.status().is_success(),
        "GET /sandbox/ledger: {}",
        resp.status()
    );
    resp.json().await.context("parsing the ledger")
}

async fn ledger(app: &TestApp) -> anyhow::Result<Vec<Intent>> {
    let ledger: Ledger = serde_json::from_value(ledger_json(app).await?)?;
    Ok(ledger.intents)
}

async fn count(app: &TestApp, sql: &str) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&app.db)
        .await
        .with_context(|| sql.to_owned())?;
    Ok(u64::try_from(n)?)
}

/// Reads the gateway's ledger and the app's database and counts every
/// way invariant 5 (and the booking side of invariant 1) could be broken.
pub async fn audit(app: &TestApp) -> anyhow::Result<MoneyReport> {
    let intents = ledger(app).await?;
    let succeeded: Vec<&Intent> = intents.iter().filter(|i| i.status == "succeeded").collect();

    let rows: Vec<(String, String, Option<String>, bool)> = sqlx::query_as(
        "SELECT p.id::text, p.hold_id::text, p.settled,
                EXISTS (SELECT 1 FROM bookings b WHERE b.payment_id = p.id)
           FROM payments p",
    )
    .fetch_all(&app.db)
    .await
    .context("reading payments")?;
    let payments: HashMap<String, Payment> = rows
        .into_iter()
        .map(|(id, hold_id, settled, has_booking)| {
            (
                id,
                Payment {
                    hold_id,
                    settled,
                    has_booking,
                },
            )
        })
        .collect();

    let money_lost = succeeded
        .iter()
        .filter(|i| match payments.get(&i.reference) {
            Some(p) => {
                let booked = p.settled.as_deref() == Some("BOOKED") && p.has_booking;
                let refunded = p.settled.as_deref() == Some("REFUNDED");
                !(booked || refunded)
            }
            // Charged under a reference we never recorded.
            None => true,
        })
        .count() as u64;

    // Per hold (or per reference when the payment row is missing): the
    // charges still (partly) kept.
    let mut kept_per_hold: HashMap<&str, u64> = HashMap::new();
    let mut per_reference: HashMap<&str, u64> = HashMap::new();
    for i in &succeeded {
        *per_reference.entry(i.reference.as_str()).or_default() += 1;
        if i.amount_refunded < i.amount {
            let hold = payments
                .get(&i.reference)
                .map_or(i.reference.as_str(), |p| p.hold_id.as_str());
            *kept_per_hold.entry(hold).or_default() += 1;
        }
    }
    let double_charged = kept_per_hold.values().filter(|&&n| n > 1).count() as u64
        + per_reference.values().filter(|&&n| n > 1).count() as u64;

    let double_booked = count(
        app,
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM booking_seats WHERE active
                                        GROUP BY show_id, seat_id HAVING count(*) > 1) x)
              + (SELECT count(*) FROM show_seats ss LEFT JOIN bookings b ON b.id = ss.booking_id
                  WHERE ss.status = 'BOOKED' AND b.status IS DISTINCT FROM 'CONFIRMED')",
    )
    .await?;

    // CONFIRMED bookings whose payment has a refund row, or whose intent
    // the gateway refunded (even partly).
    let confirmed: Vec<(String, bool)> = sqlx::query_as(
        "SELECT b.payment_id::text, EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = b.payment_id)
           FROM bookings b WHERE b.status = 'CONFIRMED'",
    )
    .fetch_all(&app.db)
    .await
    .context("reading confirmed bookings")?;
    let refunded_at_gateway: HashSet<&str> = intents
        .iter()
        .filter(|i| i.amount_refunded > 0)
        .map(|i| i.reference.as_str())
        .collect();
    let booked_and_refunded = confirmed
        .iter()
        .filter(|(payment, has_refund_row)| {
            *has_refund_row || refunded_at_gateway.contains(payment.as_str())
        })
        .count() as u64;

    Ok(MoneyReport {
        charges: succeeded.len() as u64,
        bookings: count(app, "SELECT count(*) FROM bookings").await?,
        refunds: count(app, "SELECT count(*) FROM refunds").await?,
        money_lost,
        double_charged,
        double_booked,
        booked_and_refunded,
        pending_refunds: count(
            app,
            "SELECT count(*) FROM refunds WHERE status <> 'SUCCEEDED'",
        )
        .await?,
    })
}

/// Waits (up to `timeout`) until no refund is pending, then checks that
/// the gateway refunded, per payment, exactly the amount of our SUCCEEDED
/// refund (zero when there is none) and returns the audit. An error
/// means refunds never drained or the two sides disagree on refunds.
pub async fn settled_audit(app: &TestApp, timeout: Duration) -> anyhow::Result<MoneyReport> {
    let drained = eventually(timeout, || async {
        matches!(audit(app).await, Ok(r) if r.pending_refunds == 0)
    })
    .await;
    let report = audit(app).await?;
    anyhow::ensure!(
        drained && report.pending_refunds == 0,
        "refunds still pending after {timeout:?}: {report:?}"
    );

    let ours: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT payment_id::text, amount_minor FROM refunds WHERE status = 'SUCCEEDED'",
    )
    .fetch_all(&app.db)
    .await
    .context("reading refunds")?
    .into_iter()
    .collect();
    let mut theirs: HashMap<String, (i64, Vec<String>)> = HashMap::new();
    for i in ledger(app).await? {
        let e = theirs.entry(i.reference).or_default();
        e.0 += i.amount_refunded;
        e.1.push(i.id);
    }
    let mut mismatches = Vec::new();
    let references: HashSet<&String> = ours.keys().chain(theirs.keys()).collect();
    for r in references {
        let want = ours.get(r).copied().unwrap_or(0);
        let (got, ids) = theirs.get(r).cloned().unwrap_or_default();
        if want != got {
            mismatches.push(format!(
                "payment {r}: we refunded {want}, the gateway {got} (intents {ids:?})"
            ));
        }
    }
    anyhow::ensure!(
        mismatches.is_empty(),
        "refunds disagree with the gateway: {mismatches:?}; {report:?}"
    );
    Ok(report)
}

/// Everything a checkout can write, on both sides: a digest of each of
/// our money tables (row contents, not just counts, so an update shows
/// too) and the gateway's whole ledger. Invariant 9 tests take one before
/// and after a refused request and assert they are equal.
///
/// Columns that background workers change on their own (the outbox
/// relay's `published_at`, the refund worker's attempts and status) are
/// left out, so a footprint is stable while those workers run; take one
/// when no refund is pending, as the gateway's side is the whole ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Footprint {
    /// Table name → row count and digest of its rows.
    pub tables: Vec<(&'static str, String)>,
    /// `GET /sandbox/ledger` as JSON.
    pub ledger: Value,
}

/// Takes a [`Footprint`].
pub async fn footprint(app: &TestApp) -> anyhow::Result<Footprint> {
    let mut tables = Vec::new();
    for (table, columns) in [
        ("idempotency_keys", "t.*"),
        ("payments", "t.*"),
        ("bookings", "t.*"),
        ("booking_seats", "t.*"),
        (
            "refunds",
            "t.id, t.payment_id, t.booking_id, t.reason, t.amount_minor",
        ),
        (
            "outbox",
            "t.event_id, t.event_type, t.aggregate_id, t.payload",
        ),
    ] {
        let digest: String = sqlx::query_scalar(&format!(
            "SELECT count(*)::text || ':' || coalesce(md5(string_agg(r, '|' ORDER BY r)), '')
               FROM (SELECT row({columns})::text AS r FROM {table} t) x"
        ))
        .fetch_one(&app.db)
        .await
        .with_context(|| format!("digesting {table}"))?;
        tables.push((table, digest));
    }
    let ledger = ledger_json(app).await?;
    Ok(Footprint { tables, ledger })
}

/// `settled_audit` that panics unless every violation count is zero;
/// returns the report for further checks (charges, bookings, refunds).
pub async fn assert_money_safe(app: &TestApp, timeout: Duration) -> MoneyReport {
    let report = settled_audit(app, timeout)
        .await
        .unwrap_or_else(|e| panic!("money audit: {e:#}"));
    assert!(report.is_clean(), "money audit: {report:#?}");
    report
}

/// A checkout answer, exactly as sent.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `idempotent-replayed: true` was present.
    pub replayed: bool,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
    /// The body bytes.
    pub bytes: Vec<u8>,
    /// The body parsed (Null if not JSON).
    pub json: Value,
}

impl Answer {
    /// `error.code`, or "" for a success.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Asserts `replay` is this answer replayed: marked as a replay, same
    /// status, byte-identical body.
    pub fn assert_replayed_by(&self, replay: &Answer) {
        assert!(
            replay.replayed,
            "not marked idempotent-replayed: {}",
            replay.text()
        );
        assert!(
            replay.status == self.status && replay.bytes == self.bytes,
            "a replay must be the first answer byte for byte:\n first: {} {}\nreplay: {} {}",
            self.status,
            self.text(),
            replay.status,
            replay.text()
        );
    }

    /// Reads a response.
    pub async fn read(resp: reqwest::Response) -> reqwest::Result<Self> {
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let replayed = header("idempotent-replayed").as_deref() == Some("true");
        let retry_after = header("retry-after");
        let bytes = resp.bytes().await?.to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Self {
            status,
            replayed,
            retry_after,
            bytes,
            json,
        })
    }
}

/// `POST /v1/holds/{hold}/checkout` as `token` with `Idempotency-Key: key`.
/// A transport error is returned, not a panic (a crashing app may drop
/// the connection).
pub async fn checkout(
    app: &TestApp,
    token: &str,
    hold: &str,
    key: &str,
    payment_method: &str,
) -> reqwest::Result<Answer> {
    let resp = app
        .http
        .post(format!("{}/v1/holds/{hold}/checkout", app.url))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "payment_method": payment_method }))
        .send()
        .await?;
    Answer::read(resp).await
}

/// Points the gateway's webhooks at the app (`on`) or turns them off.
pub async fn set_webhooks(app: &TestApp, on: bool) -> anyhow::Result<()> {
    let url = on.then(|| format!("{}/v1/webhooks/payments", app.url));
    sandbox_control(app, reqwest::Method::PUT, "webhook", json!({ "url": url })).await?;
    Ok(())
}

/// `POST /sandbox/faults` with `body` (e.g. `{"refunds_fail_next": 3}`).
pub async fn set_gateway_faults(app: &TestApp, body: Value) -> anyhow::Result<Value> {
    sandbox_control(app, reqwest::Method::POST, "faults", body).await
}

async fn sandbox_control(
    app: &TestApp,
    method: reqwest::Method,
    what: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let resp = app
        .http
        .request(method, format!("{}/sandbox/{what}", app.gateway.url()))
        .bearer_auth(GATEWAY_KEY)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("/sandbox/{what}"))?;
    anyhow::ensure!(
        resp.status().is_success(),
        "/sandbox/{what}: {}",
        resp.status()
    );
    Ok(resp.json().await?)
}

/// `POST /v1/operator/reconcile`; returns the report.
pub async fn reconcile(app: &TestApp) -> anyhow::Result<Value> {
    let (status, report) = app
        .operator_post("/v1/operator/reconcile", json!({}))
        .await?;
    anyhow::ensure!(status == 200, "reconcile: {status} {report}");
    Ok(report)
}
