//! The sandbox payment gateway's own API, as the load generator reads it:
//! its ledger (every intent with its refunds), intents by reference, and
//! the sandbox controls a run sets up (webhook URL, refund faults). The
//! region core is the gateway's client; this is the auditor's view.

use crate::api::{Api, Method};
use anyhow::Context;
use serde::Deserialize;
use uuid::Uuid;

/// `GET /sandbox/ledger` (its `totals` are recomputed by the audit from
/// the intents, so they are not read here).
#[derive(Debug, Clone, Deserialize)]
pub struct Ledger {
    /// Every intent, oldest first, each with its refunds.
    pub intents: Vec<Intent>,
}

/// A payment intent (in the ledger with its refunds; in lists without).
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    /// `pi_…`.
    pub id: String,
    /// Amount charged (minor units).
    pub amount: i64,
    /// Sum of its refunds.
    pub amount_refunded: i64,
    /// Currency.
    pub currency: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// The caller's reference: the region core's payment id.
    pub reference: String,
    /// Refunds of this intent (ledger only).
    #[serde(default)]
    pub refunds: Vec<GatewayRefund>,
}

impl Intent {
    /// Whether the card was charged.
    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }
}

/// A refund at the gateway.
#[derive(Debug, Clone, Deserialize)]
pub struct GatewayRefund {
    /// `re_…`.
    pub id: String,
    /// Amount refunded.
    pub amount: i64,
    /// The caller's reference: the region core's refund id.
    pub reference: String,
}

#[derive(Deserialize)]
struct IntentList {
    data: Vec<Intent>,
}

/// A sandbox gateway, with its API key.
#[derive(Clone)]
pub struct Gateway {
    api: Api,
    auth: String,
}

impl Gateway {
    /// A client for the gateway at `url`, authenticating with `api_key`.
    pub fn new(url: &str, api_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(url)?,
            auth: format!("Bearer {api_key}"),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.api.base()
    }

    /// `GET /healthz` (no key needed).
    pub async fn health(&self) -> anyhow::Result<()> {
        self.api
            .get::<serde_json::Value>("/healthz", None)
            .await
            .with_context(|| format!("the payment gateway at {} is not healthy", self.url()))?;
        Ok(())
    }

    /// Every intent and refund since the gateway started.
    pub async fn ledger(&self) -> anyhow::Result<Ledger> {
        self.api
            .get("/sandbox/ledger", Some(&self.auth))
            .await
            .context("reading the gateway ledger")
    }

    /// The intents charged for the region core's payment `payment_id`
    /// (its gateway reference), oldest first.
    pub async fn intents_for(&self, payment_id: Uuid) -> anyhow::Result<Vec<Intent>> {
        let list: IntentList = self
            .api
            .get(
                &format!("/v1/payment_intents?reference={payment_id}"),
                Some(&self.auth),
            )
            .await
            .with_context(|| format!("listing the gateway's intents of payment {payment_id}"))?;
        Ok(list.data)
    }

    /// Points the gateway's webhooks at `url`.
    pub async fn set_webhook(&self, url: &str) -> anyhow::Result<()> {
        let resp = self
            .api
            .send(
                Method::PUT,
                "/sandbox/webhook",
                Some(&self.auth),
                None,
                Some(&serde_json::json!({ "url": url })),
            )
            .await?;
        if !resp.status.is_success() {
            anyhow::bail!("setting the gateway's webhook URL: {}", resp.failure());
        }
        Ok(())
    }

    /// Sets the share of payments the gateway turns into faults.
    pub async fn set_fault_rate(&self, rate: f64) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .api
            .post(
                "/sandbox/faults",
                &self.auth,
                &serde_json::json!({ "fault_rate": rate }),
            )
            .await
            .context("setting the gateway's fault rate")?;
        Ok(())
    }

    /// Makes the gateway refuse the next `n` refund requests with 503 (the
    /// region core's refund worker must retry them until they land).
    pub async fn fail_next_refunds(&self, n: u32) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .api
            .post(
                "/sandbox/faults",
                &self.auth,
                &serde_json::json!({ "refunds_fail_next": n }),
            )
            .await
            .context("setting the gateway's refund faults")?;
        Ok(())
    }
}
