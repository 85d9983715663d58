//! The money audit of a test app (invariant 5 in docs/architecture.md:
//! *money is never lost*), through the one audit the tests and the
//! benchmarks share (`testkit::money`): it reads both sides, the sandbox
//! gateway's ledger (what really happened to the card) and the app's
//! database (what we believe happened), and counts every way they can
//! disagree. Tests assert the counts are zero; `settled_audit` first
//! waits for pending refunds to land and then checks that the gateway
//! refunded exactly what our `refunds` rows say, payment by payment.
//!
//! It also holds the few calls the money tests make to move money: a
//! checkout that keeps the exact answer bytes, reconciliation, and the
//! sandbox gateway's switches (webhooks, refund faults).

use crate::{eventually, TestApp, GATEWAY_KEY};
use anyhow::Context;
use serde_json::{json, Value};
use std::time::Duration;
use testkit::gateway::{Gateway, Ledger};
use testkit::money::{refund_mismatches, CoreRecords, MoneyAudit};

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

/// Both sides, as they are now.
async fn read_both(app: &TestApp) -> anyhow::Result<(Ledger, CoreRecords)> {
    let ledger = Gateway::new(&app.gateway.url(), GATEWAY_KEY)?
        .ledger()
        .await?;
    Ok((ledger, CoreRecords::load(&app.db).await?))
}

/// Reads the gateway's ledger and the app's database and counts every
/// way invariant 5 (and the booking side of invariant 1) could be broken.
pub async fn audit(app: &TestApp) -> anyhow::Result<MoneyAudit> {
    let (ledger, core) = read_both(app).await?;
    Ok(MoneyAudit::of(&ledger, &core))
}

/// Waits (up to `timeout`) until no refund is pending, then checks that
/// the gateway refunded, per payment, exactly the amount of our SUCCEEDED
/// refund (zero when there is none) and returns the audit. An error
/// means refunds never drained or the two sides disagree on refunds.
pub async fn settled_audit(app: &TestApp, timeout: Duration) -> anyhow::Result<MoneyAudit> {
    let drained = eventually(timeout, || async {
        matches!(audit(app).await, Ok(r) if r.refunds_pending == 0)
    })
    .await;
    let (ledger, core) = read_both(app).await?;
    let report = MoneyAudit::of(&ledger, &core);
    anyhow::ensure!(
        drained && report.refunds_pending == 0,
        "refunds still pending after {timeout:?}: {report:?}"
    );
    let mismatches = refund_mismatches(&ledger, &core);
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
pub async fn assert_money_safe(app: &TestApp, timeout: Duration) -> MoneyAudit {
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
