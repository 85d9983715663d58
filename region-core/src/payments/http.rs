//! The gateway's HTTP API (the shape of Stripe's payment intents, which
//! the project's sandbox gateway serves): bearer key, `Idempotency-Key`
//! on every write, JSON bodies, `{"error":{type,code,message}}` errors.

use super::{
    ChargeLookup, ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest,
};
use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use std::time::Duration;
use uuid::Uuid;

/// HTTP client of the gateway.
#[derive(Clone)]
pub struct HttpGateway {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

#[derive(Debug, Deserialize)]
struct Intent {
    id: String,
    status: String,
    #[serde(default)]
    failure_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IntentList {
    data: Vec<Intent>,
}

#[derive(Debug, Deserialize)]
struct VoidReply {
    status: String,
    payment_intent: Option<Intent>,
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    payment_intent: Option<Intent>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

impl HttpGateway {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8090`);
    /// a call slower than `timeout` is an unknown outcome.
    pub fn new(base: &str, api_key: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, axum::body::Bytes), GatewayError> {
        // Every request, whatever became of it (the checkout benchmark
        // reports gateway calls per booking from this).
        metrics::counter!("gateway_requests_total").increment(1);
        let resp = req
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        Ok((status, body))
    }
}

/// Sorts a non-success answer into "retry may help" or "never will".
fn failure(status: StatusCode, body: &[u8]) -> GatewayError {
    let code = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error.code)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).chars().take(200).collect());
    // 409: another request with this idempotency key is in flight; 429:
    // rate limited. Both mean "ask again later", like a 5xx.
    // A voided reference is final: the charge was refused, nothing taken.
    if code == "reference_voided" {
        return GatewayError::Rejected {
            status: status.as_u16(),
            code,
        };
    }
    if status.is_server_error()
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        GatewayError::Unavailable(format!("HTTP {status}: {code}"))
    } else {
        GatewayError::Rejected {
            status: status.as_u16(),
            code,
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, GatewayError> {
    // A 2xx we cannot read tells us nothing certain: treat as unknown.
    serde_json::from_slice(body)
        .map_err(|e| GatewayError::Unavailable(format!("unreadable gateway response: {e}")))
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let reference = req.payment_id.to_string();
        let (status, body) = self
            .send(
                self.client
                    .post(format!("{}/v1/payment_intents", self.base))
                    .header("Idempotency-Key", &reference)
                    .json(&serde_json::json!({
                        "amount": req.amount_minor,
                        "currency": req.currency,
                        "payment_method": req.payment_method,
                        "reference": reference,
                    })),
            )
            .await?;
        if status.is_success() {
            let intent: Intent = decode(&body)?;
            return Ok(match intent.status.as_str() {
                "succeeded" => ChargeOutcome::Succeeded {
                    gateway_id: intent.id,
                },
                _ => ChargeOutcome::Declined {
                    gateway_id: Some(intent.id),
                    code: intent.failure_code.unwrap_or_else(|| "failed".into()),
                },
            });
        }
        if status == StatusCode::PAYMENT_REQUIRED {
            let env: ErrorEnvelope = decode(&body)?;
            return Ok(ChargeOutcome::Declined {
                gateway_id: env.error.payment_intent.map(|i| i.id),
                code: env.error.code,
            });
        }
        Err(failure(status, &body))
    }

    async fn find_charge(&self, payment_id: Uuid) -> Result<ChargeLookup, GatewayError> {
        let (status, body) = self
            .send(
                self.client
                    .get(format!("{}/v1/payment_intents", self.base))
                    .query(&[("reference", payment_id.to_string())]),
            )
            .await?;
        if !status.is_success() {
            return Err(failure(status, &body));
        }
        let list: IntentList = decode(&body)?;
        // One idempotency key per payment: at most one intent. Should there
        // be several, a success anywhere means money was taken.
        if let Some(ok) = list.data.iter().find(|i| i.status == "succeeded") {
            return Ok(ChargeLookup::Succeeded {
                gateway_id: ok.id.clone(),
            });
        }
        Ok(match list.data.into_iter().next() {
            Some(i) => ChargeLookup::Failed {
                gateway_id: i.id,
                code: i.failure_code.unwrap_or_else(|| i.status.clone()),
            },
            None => ChargeLookup::NotFound,
        })
    }

    async fn void_unless_charged(&self, payment_id: Uuid) -> Result<ChargeLookup, GatewayError> {
        let (status, body) = self
            .send(
                self.client
                    .post(format!("{}/v1/payment_intents/void", self.base))
                    .json(&serde_json::json!({ "reference": payment_id.to_string() })),
            )
            .await?;
        if !status.is_success() {
            return Err(failure(status, &body));
        }
        let reply: VoidReply = decode(&body)?;
        Ok(match (reply.status.as_str(), reply.payment_intent) {
            ("voided", _) => ChargeLookup::NotFound,
            (_, Some(i)) if i.status == "succeeded" => ChargeLookup::Succeeded { gateway_id: i.id },
            (_, Some(i)) => ChargeLookup::Failed {
                gateway_id: i.id,
                code: i.failure_code.unwrap_or(i.status),
            },
            (other, None) => {
                return Err(GatewayError::Unavailable(format!(
                    "void answered {other:?} without an intent"
                )))
            }
        })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<String, GatewayError> {
        let reference = req.refund_id.to_string();
        let (status, body) = self
            .send(
                self.client
                    .post(format!("{}/v1/refunds", self.base))
                    .header("Idempotency-Key", &reference)
                    .json(&serde_json::json!({
                        "payment_intent": req.gateway_payment_id,
                        "amount": req.amount_minor,
                        "reference": reference,
                    })),
            )
            .await?;
        if status.is_success() {
            let refund: Refund = decode(&body)?;
            return Ok(refund.id);
        }
        Err(failure(status, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real gateway is an `https://` URL: the client must speak TLS
    /// (reqwest without a TLS feature gives up on the scheme before it
    /// connects). A listener reads what arrives: a TLS handshake starts
    /// with a handshake record, byte 0x16.
    #[tokio::test]
    async fn https_gateways_are_spoken_to_in_tls() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let first_byte = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.ok()?;
            let mut b = [0u8; 1];
            conn.read_exact(&mut b).await.ok()?;
            Some(b[0])
        });
        let gw = HttpGateway::new(
            &format!("https://127.0.0.1:{port}"),
            "sk",
            Duration::from_secs(2),
        )
        .expect("client");
        let _ = gw
            .client
            .get(format!("{}/v1/payment_intents", gw.base))
            .send()
            .await;
        let got = tokio::time::timeout(Duration::from_secs(2), first_byte)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        assert_eq!(got, Some(0x16), "a TLS ClientHello reached the gateway");
    }

    #[test]
    fn unknown_outcomes_are_retryable_and_4xx_are_not() {
        let body = br#"{"error":{"type":"api_error","code":"gateway_unavailable","message":"x"}}"#;
        assert!(matches!(
            failure(StatusCode::INTERNAL_SERVER_ERROR, body),
            GatewayError::Unavailable(_)
        ));
        assert!(matches!(
            failure(StatusCode::CONFLICT, body),
            GatewayError::Unavailable(_)
        ));
        let bad = br#"{"error":{"type":"invalid_request_error","code":"amount_too_large","message":"x"}}"#;
        match failure(StatusCode::BAD_REQUEST, bad) {
            GatewayError::Rejected { status, code } => {
                assert_eq!(status, 400);
                assert_eq!(code, "amount_too_large");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
    }
}
