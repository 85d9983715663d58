//! The sandbox gateway over real HTTP on 127.0.0.1, port 0: auth,
//! idempotency, every fault's first attempt and retry, refunds, the
//! ledger, and signed webhook delivery to a receiver of our own.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use sandbox_gateway::{RunningSandbox, SandboxConfig, SIGNATURE_HEADER};
use serde_json::{json, Value};
use shared::webhook_sig::{self, SignatureError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEY: &str = "sk_test_gateway";
const SECRET: &str = "whsec_test_gateway";

fn config() -> SandboxConfig {
    SandboxConfig {
        listen: "127.0.0.1:0".into(),
        api_key: KEY.into(),
        webhook_secret: SECRET.into(),
        timeout_ms: 200,
        seed: Some(1),
        ..Default::default()
    }
}

/// A running gateway and a client for it.
struct Gateway {
    sandbox: RunningSandbox,
    http: reqwest::Client,
}

/// A response, body kept as bytes for byte-for-byte comparisons.
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// `(error.type, error.code)` of an error body.
    fn error(&self) -> (String, String) {
        let v = self.json();
        (
            v["error"]["type"].as_str().unwrap_or_default().to_string(),
            v["error"]["code"].as_str().unwrap_or_default().to_string(),
        )
    }
}

async fn start(config: SandboxConfig) -> Gateway {
    Gateway {
        sandbox: sandbox_gateway::spawn(config)
            .await
            .expect("sandbox starts"),
        http: reqwest::Client::new(),
    }
}

impl Gateway {
    async fn send(&self, request: reqwest::RequestBuilder) -> Resp {
        let response = request.send().await.expect("request sent");
        Resp {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body read"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.url())
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path)).bearer_auth(KEY))
            .await
    }

    /// POST with the API key and, if given, an Idempotency-Key.
    async fn post(&self, path: &str, idempotency_key: Option<&str>, body: &Value) -> Resp {
        let mut request = self.http.post(self.url(path)).bearer_auth(KEY).json(body);
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        self.send(request).await
    }

    async fn pay(&self, key: &str, method: &str, reference: &str, amount: i64) -> Resp {
        let body = json!({
            "amount": amount,
            "currency": "INR",
            "payment_method": method,
            "reference": reference,
            "metadata": {"booking": reference},
        });
        self.post("/v1/payment_intents", Some(key), &body).await
    }

    async fn refund(&self, key: &str, intent: &str, amount: i64, reference: &str) -> Resp {
        let body = json!({"payment_intent": intent, "amount": amount, "reference": reference});
        self.post("/v1/refunds", Some(key), &body).await
    }

    async fn by_reference(&self, reference: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/v1/payment_intents?reference={reference}"))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert_eq!(v["object"], "list");
        v["data"].as_array().expect("data").clone()
    }

    async fn totals(&self) -> Value {
        self.get("/sandbox/ledger").await.json()["totals"].clone()
    }

    async fn set_webhook(&self, url: Option<&str>) -> Resp {
        self.send(
            self.http
                .put(self.url("/sandbox/webhook"))
                .bearer_auth(KEY)
                .json(&json!({ "url": url })),
        )
        .await
    }
}

/// Polls `check` until it returns `Some`, failing after a deadline.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn now_unix() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

#[tokio::test]
async fn requests_without_the_api_key_get_401() {
    let gw = start(config()).await;
    let no_key = gw.send(gw.http.get(gw.url("/sandbox/ledger"))).await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        no_key.error(),
        ("authentication_error".into(), "invalid_api_key".into())
    );
    let wrong_key = gw
        .send(
            gw.http
                .post(gw.url("/v1/payment_intents"))
                .bearer_auth("sk_wrong")
                .header("Idempotency-Key", "k")
                .json(&json!({})),
        )
        .await;
    assert_eq!(wrong_key.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_key.error().1, "invalid_api_key");

    let health = gw.send(gw.http.get(gw.url("/healthz"))).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));

    let nowhere = gw.get("/v1/nowhere").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    gw.sandbox.stop().await;
}

#[tokio::test]
async fn a_retry_replays_the_first_answer_byte_for_byte() {
    let gw = start(config()).await;
    let first = gw.pay("key-1", "pm_card_ok", "pay_1", 25_000).await;
    assert_eq!(first.status, StatusCode::OK);
    let intent = first.json();
    assert!(intent["id"].as_str().unwrap().starts_with("pi_"));
    assert_eq!(intent["object"], "payment_intent");
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount"], 25_000);
    assert_eq!(intent["amount_refunded"], 0);
    assert_eq!(intent["currency"], "INR");
    assert_eq!(intent["reference"], "pay_1");
    assert_eq!(intent["failure_code"], Value::Null);
    assert_eq!(intent["metadata"], json!({"booking": "pay_1"}));
    assert!(first.headers.get("idempotent-replayed").is_none());

    let again = gw.pay("key-1", "pm_card_ok", "pay_1", 25_000).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");

    // The same parameters in another order are the same request.
    let reordered = gw
        .send(
            gw.http
                .post(gw.url("/v1/payment_intents"))
                .bearer_auth(KEY)
                .header("Idempotency-Key", "key-1")
                .header("Content-Type", "application/json")
                .body(r#"{"reference":"pay_1","metadata":{"booking":"pay_1"},"payment_method":"pm_card_ok","currency":"INR","amount":25000}"#),
        )
        .await;
    assert_eq!(reordered.body, first.body);

    assert_eq!(gw.totals().await["charges"], 1);
    assert_eq!(gw.by_reference("pay_1").await.len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_rejected() {
    let gw = start(config()).await;
    assert_eq!(
        gw.pay("key-1", "pm_card_ok", "pay_1", 100).await.status,
        StatusCode::OK
    );
    let other_amount = gw.pay("key-1", "pm_card_ok", "pay_1", 101).await;
    assert_eq!(other_amount.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        other_amount.error(),
        ("idempotency_error".into(), "idempotency_key_reused".into())
    );
    let other_endpoint = gw.refund("key-1", "pi_x", 1, "ref_1").await;
    assert_eq!(other_endpoint.error().1, "idempotency_key_reused");
    assert_eq!(gw.totals().await["charges"], 1);
}

// Long on purpose: one table of malformed requests, each with the 400 it
// must get and the proof nothing was stored, read top to bottom.
#[tokio::test]
async fn bad_requests_are_400_and_not_stored() {
    let gw = start(config()).await;
    let no_key = gw
        .post(
            "/v1/payment_intents",
            None,
            &json!({"amount": 1, "currency": "INR", "payment_method": "pm_card_ok", "reference": "p"}),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        no_key.error(),
        (
            "invalid_request_error".into(),
            "idempotency_key_missing".into()
        )
    );

    let not_json = gw
        .send(
            gw.http
                .post(gw.url("/v1/payment_intents"))
                .bearer_auth(KEY)
                .header("Idempotency-Key", "k")
                .body("{not json"),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        not_json.error(),
        ("invalid_request_error".into(), "invalid_json".into())
    );

    let cases = [
        (
            json!({"currency": "INR", "payment_method": "pm_card_ok", "reference": "p"}),
            "parameter_invalid",
        ),
        (
            json!({"amount": 0, "currency": "INR", "payment_method": "pm_card_ok", "reference": "p"}),
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "inr", "payment_method": "pm_card_ok", "reference": "p"}),
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "INR", "payment_method": "pm_card_ok", "reference": ""}),
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "INR", "payment_method": "pm_card_ok", "reference": "p", "tip": 1}),
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "INR", "payment_method": "pm_card_visa", "reference": "p"}),
            "unknown_payment_method",
        ),
    ];
    for (body, code) in cases {
        let r = gw.post("/v1/payment_intents", Some("k"), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            r.error(),
            ("invalid_request_error".into(), code.into()),
            "{body}"
        );
    }
    // None of those was stored under "k": a valid request with it runs.
    let ok = gw.pay("k", "pm_card_ok", "p", 5).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn a_decline_is_402_stored_and_listed() {
    let gw = start(config()).await;
    let first = gw.pay("key-d", "pm_card_declined", "pay_d", 700).await;
    assert_eq!(first.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(first.error(), ("card_error".into(), "card_declined".into()));
    let failed = first.json()["error"]["payment_intent"].clone();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure_code"], "card_declined");

    let id = failed["id"].as_str().unwrap();
    let fetched = gw.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.json(), failed);
    assert_eq!(gw.by_reference("pay_d").await, vec![failed.clone()]);

    let again = gw.pay("key-d", "pm_card_declined", "pay_d", 700).await;
    assert_eq!(again.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(again.body, first.body);
    assert_eq!(gw.by_reference("pay_d").await.len(), 1);
    assert_eq!(gw.totals().await["charges"], 0);

    let missing = gw.get("/v1/payment_intents/pi_nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.error(),
        ("invalid_request_error".into(), "resource_missing".into())
    );
}

#[tokio::test]
async fn fault_5xx_fails_the_first_attempt_only() {
    let gw = start(config()).await;
    let first = gw.pay("key-5", "pm_fault_5xx", "pay_5", 300).await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        first.error(),
        ("api_error".into(), "gateway_unavailable".into())
    );
    assert!(gw.by_reference("pay_5").await.is_empty(), "nothing charged");

    let retry = gw.pay("key-5", "pm_fault_5xx", "pay_5", 300).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.json()["status"], "succeeded");
    assert!(retry.headers.get("idempotent-replayed").is_none());
    let third = gw.pay("key-5", "pm_fault_5xx", "pay_5", 300).await;
    assert_eq!(third.body, retry.body);
    assert_eq!(gw.by_reference("pay_5").await.len(), 1);

    // Another key is another first attempt.
    let other = gw.pay("key-6", "pm_fault_5xx", "pay_6", 300).await;
    assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn fault_timeout_hangs_then_charges_nothing() {
    let gw = start(config()).await;
    let started = Instant::now();
    let first = gw.pay("key-t", "pm_fault_timeout", "pay_t", 300).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(first.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        first.error(),
        ("api_error".into(), "gateway_timeout".into())
    );
    assert!(gw.by_reference("pay_t").await.is_empty(), "nothing charged");

    let retry = gw.pay("key-t", "pm_fault_timeout", "pay_t", 300).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(gw.by_reference("pay_t").await.len(), 1);
}

#[tokio::test]
async fn a_lost_success_charged_and_the_retry_says_so() {
    let gw = start(config()).await;
    let first = gw
        .pay("key-l", "pm_fault_lost_success", "pay_l", 4_200)
        .await;
    assert_eq!(first.status, StatusCode::BAD_GATEWAY);
    assert_eq!(first.error(), ("api_error".into(), "response_lost".into()));

    // What a caller does when it does not know: look the reference up.
    let listed = gw.by_reference("pay_l").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "succeeded");

    let retry = gw
        .pay("key-l", "pm_fault_lost_success", "pay_l", 4_200)
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.json(), listed[0]);
    let totals = gw.totals().await;
    assert_eq!(totals["charges"], 1);
    assert_eq!(totals["charged_minor"], 4_200);
}

#[tokio::test]
async fn a_retry_while_the_first_runs_is_409() {
    let gw = Arc::new(
        start(SandboxConfig {
            timeout_ms: 1_000,
            ..config()
        })
        .await,
    );
    let first = tokio::spawn({
        let gw = gw.clone();
        async move { gw.pay("key-c", "pm_fault_timeout", "pay_c", 10).await }
    });
    eventually("the first request to be in flight", || {
        (gw.sandbox.in_flight_requests() == 1).then_some(())
    })
    .await;
    let concurrent = gw.pay("key-c", "pm_fault_timeout", "pay_c", 10).await;
    assert_eq!(concurrent.status, StatusCode::CONFLICT);
    assert_eq!(
        concurrent.error(),
        ("idempotency_error".into(), "idempotency_key_in_use".into())
    );

    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(gw.sandbox.in_flight_requests(), 0);
    let retry = gw.pay("key-c", "pm_fault_timeout", "pay_c", 10).await;
    assert_eq!(retry.status, StatusCode::OK);
}

#[tokio::test]
async fn refunds_follow_the_rules_and_are_idempotent() {
    let gw = start(config()).await;
    let intent = gw.pay("p1", "pm_card_ok", "pay_1", 1_000).await.json();
    let pi = intent["id"].as_str().unwrap();

    let first = gw.refund("r1", pi, 400, "refund_1").await;
    assert_eq!(first.status, StatusCode::OK);
    let refund = first.json();
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund["object"], "refund");
    assert_eq!(refund["payment_intent"], pi);
    assert_eq!(refund["amount"], 400);
    assert_eq!(refund["status"], "succeeded");
    assert_eq!(refund["reference"], "refund_1");
    let again = gw.refund("r1", pi, 400, "refund_1").await;
    assert_eq!(again.body, first.body);

    let fetched = gw.get(&format!("/v1/payment_intents/{pi}")).await.json();
    assert_eq!(fetched["amount_refunded"], 400);

    let too_much = gw.refund("r2", pi, 601, "refund_2").await;
    assert_eq!(too_much.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        too_much.error(),
        ("invalid_request_error".into(), "amount_too_large".into())
    );
    // A refusal is final for its key, like any completed answer.
    assert_eq!(
        gw.refund("r2", pi, 601, "refund_2").await.body,
        too_much.body
    );
    assert_eq!(
        gw.refund("r3", pi, 600, "refund_3").await.status,
        StatusCode::OK
    );
    assert_eq!(
        gw.refund("r4", pi, 1, "refund_4").await.error().1,
        "amount_too_large"
    );

    let unknown = gw.refund("r5", "pi_nope", 1, "refund_5").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error().1, "resource_missing");

    let declined = gw.pay("p2", "pm_card_declined", "pay_2", 500).await.json();
    let declined_id = declined["error"]["payment_intent"]["id"].as_str().unwrap();
    let not_succeeded = gw.refund("r6", declined_id, 1, "refund_6").await;
    assert_eq!(not_succeeded.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_succeeded.error().1, "charge_not_succeeded");

    let no_key = gw
        .post(
            "/v1/refunds",
            None,
            &json!({"payment_intent": pi, "amount": 1, "reference": "x"}),
        )
        .await;
    assert_eq!(no_key.error().1, "idempotency_key_missing");
    let zero = gw.refund("r7", pi, 0, "refund_7").await;
    assert_eq!(zero.error().1, "parameter_invalid");

    let totals = gw.totals().await;
    assert_eq!(totals["refunds"], 2);
    assert_eq!(totals["refunded_minor"], 1_000);
}

#[tokio::test]
async fn refunds_fail_next_makes_refunds_503_then_recover() {
    let gw = start(config()).await;
    let pi = gw.pay("p1", "pm_card_ok", "pay_1", 1_000).await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let set = gw
        .post("/sandbox/faults", None, &json!({"refunds_fail_next": 2}))
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json()["refunds_fail_next"], 2);

    for _ in 0..2 {
        let failed = gw.refund("r1", &pi, 300, "refund_1").await;
        assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            failed.error(),
            ("api_error".into(), "gateway_unavailable".into())
        );
        assert_eq!(gw.totals().await["refunds"], 0, "nothing refunded");
    }
    let ok = gw.refund("r1", &pi, 300, "refund_1").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        gw.get("/sandbox/faults").await.json()["refunds_fail_next"],
        0
    );
    let totals = gw.totals().await;
    assert_eq!(totals["refunds"], 1);
    assert_eq!(totals["refunded_minor"], 300);

    let bad = gw
        .post("/sandbox/faults", None, &json!({"fault_rate": 2.0}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_ledger_has_every_intent_with_its_refunds() {
    let gw = start(config()).await;
    let mut ids = Vec::new();
    for (n, amount) in [100, 200, 300].into_iter().enumerate() {
        let r = gw
            .pay(&format!("p{n}"), "pm_card_ok", &format!("pay_{n}"), amount)
            .await;
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    gw.pay("pd", "pm_card_declined", "pay_d", 999).await;
    gw.refund("r1", &ids[1], 50, "refund_1").await;

    let ledger = gw.get("/sandbox/ledger").await.json();
    assert_eq!(
        ledger["totals"],
        json!({"charges": 3, "charged_minor": 600, "refunds": 1, "refunded_minor": 50})
    );
    let intents = ledger["intents"].as_array().unwrap();
    assert_eq!(intents.len(), 4);
    assert_eq!(intents[1]["id"], ids[1].as_str());
    assert_eq!(intents[1]["amount_refunded"], 50);
    assert_eq!(intents[1]["refunds"][0]["amount"], 50);
    assert_eq!(intents[0]["refunds"], json!([]));
    assert_eq!(intents[3]["status"], "failed");

    let all = gw.get("/v1/payment_intents").await.json();
    assert_eq!(all["data"].as_array().unwrap().len(), 4);
}

/// A webhook receiver: records every delivery, answers 500 to the first
/// `fail_first` of them.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    fail_first: Arc<AtomicU32>,
}

impl Receiver {
    async fn start(fail_first: u32) -> (Self, String) {
        let receiver = Self {
            fail_first: Arc::new(AtomicU32::new(fail_first)),
            ..Default::default()
        };
        let app = Router::new()
            .route("/hook", post(Self::hook))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    async fn hook(State(r): State<Self>, headers: HeaderMap, body: Bytes) -> StatusCode {
        r.got.lock().unwrap().push((headers, body));
        let failing = r
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }

    /// Waits until at least `n` deliveries arrived and returns them.
    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        eventually(&format!("{n} webhook deliveries"), || {
            let got = self.got.lock().unwrap();
            (got.len() >= n).then(|| got.clone())
        })
        .await
    }
}

/// Checks the signature and returns the event.
fn verified(headers: &HeaderMap, body: &Bytes) -> Value {
    assert_eq!(headers["content-type"], "application/json");
    let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
    webhook_sig::verify(SECRET.as_bytes(), signature, body, now_unix(), 300)
        .expect("signature verifies");
    assert_eq!(
        webhook_sig::verify(b"another secret", signature, body, now_unix(), 300),
        Err(SignatureError::Mismatch)
    );
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn webhooks_are_signed_and_delivered() {
    let (receiver, url) = Receiver::start(0).await;
    // Started without a URL, as the e2e tests do; set at runtime.
    let gw = start(config()).await;
    let set = gw.set_webhook(Some(&url)).await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json(), json!({ "url": url }));

    let paid = gw.pay("p1", "pm_card_ok", "pay_1", 1_000).await.json();
    let events = receiver.wait_for(1).await;
    let succeeded = verified(&events[0].0, &events[0].1);
    assert!(succeeded["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(succeeded["type"], "payment_intent.succeeded");
    assert!(succeeded["created"].as_i64().unwrap() > 0);
    assert_eq!(succeeded["data"]["object"], paid);

    let declined = gw
        .pay("p2", "pm_card_declined", "pay_2", 1_000)
        .await
        .json();
    let events = receiver.wait_for(2).await;
    let failed = verified(&events[1].0, &events[1].1);
    assert_eq!(failed["type"], "payment_intent.payment_failed");
    assert_eq!(
        failed["data"]["object"],
        declined["error"]["payment_intent"]
    );

    let pi = paid["id"].as_str().unwrap();
    let refund = gw.refund("r1", pi, 250, "refund_1").await.json();
    let events = receiver.wait_for(3).await;
    let refunded = verified(&events[2].0, &events[2].1);
    assert_eq!(refunded["type"], "refund.succeeded");
    assert_eq!(refunded["data"]["object"], refund);

    // The lost-success fault charged, so its webhook goes out too.
    gw.pay("p3", "pm_fault_lost_success", "pay_3", 10).await;
    let events = receiver.wait_for(4).await;
    let lost = verified(&events[3].0, &events[3].1);
    assert_eq!(lost["type"], "payment_intent.succeeded");
    assert_eq!(lost["data"]["object"]["reference"], "pay_3");

    let https = gw.set_webhook(Some("https://example.com/hook")).await;
    assert_eq!(https.status, StatusCode::BAD_REQUEST);
    let cleared = gw.set_webhook(None).await;
    assert_eq!(cleared.json(), json!({ "url": null }));
    gw.sandbox.stop().await;
}

#[tokio::test]
async fn webhooks_are_retried_until_accepted() {
    let (receiver, url) = Receiver::start(2).await;
    let gw = start(SandboxConfig {
        webhook_url: Some(url),
        ..config()
    })
    .await;
    gw.pay("p1", "pm_card_ok", "pay_1", 1_000).await;
    let attempts = receiver.wait_for(3).await;
    let events: Vec<Value> = attempts.iter().map(|(h, b)| verified(h, b)).collect();
    assert!(events.iter().all(|e| e["id"] == events[0]["id"]));
    assert_eq!(events[0]["type"], "payment_intent.succeeded");
    gw.sandbox.stop().await;
}

#[tokio::test]
async fn random_faults_are_reproducible_with_a_seed() {
    let run = || async {
        let gw = start(SandboxConfig {
            fault_rate: 1.0,
            timeout_ms: 20,
            seed: Some(9),
            ..config()
        })
        .await;
        let mut statuses = Vec::new();
        for n in 0..8 {
            let key = format!("k{n}");
            let reference = format!("pay_{n}");
            let first = gw.pay(&key, "pm_card_ok", &reference, 100).await;
            let retry = gw.pay(&key, "pm_card_ok", &reference, 100).await;
            match first.status {
                StatusCode::PAYMENT_REQUIRED => {
                    assert_eq!(retry.body, first.body, "a decline is replayed")
                }
                StatusCode::INTERNAL_SERVER_ERROR
                | StatusCode::GATEWAY_TIMEOUT
                | StatusCode::BAD_GATEWAY => {
                    assert_eq!(
                        retry.status,
                        StatusCode::OK,
                        "the fault hit the first attempt only"
                    )
                }
                other => panic!("fault_rate 1.0 gave {other}"),
            }
            statuses.push(first.status);
        }
        gw.sandbox.stop().await;
        statuses
    };
    assert_eq!(run().await, run().await);
}

/// Voiding a reference closes it for good when nothing was charged: a
/// charge still on its way is refused without taking money. A charge in
/// flight makes the void answer 409 (ask again), a charge already made is
/// returned instead of voided.
#[tokio::test]
async fn a_void_closes_an_uncharged_reference_for_good() {
    let gw = Arc::new(
        start(SandboxConfig {
            timeout_ms: 1_000,
            ..config()
        })
        .await,
    );
    let void = |r: &'static str| {
        let gw = gw.clone();
        async move {
            gw.post("/v1/payment_intents/void", None, &json!({ "reference": r }))
                .await
        }
    };
    // Nothing charged: voided, and a late charge is refused, uncharged.
    let v = void("pay_v").await;
    assert_eq!(
        (v.status, v.json()["status"].clone()),
        (StatusCode::OK, json!("voided"))
    );
    let late = gw.pay("key-v", "pm_card_ok", "pay_v", 500).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.error().1, "reference_voided");
    assert!(gw.by_reference("pay_v").await.is_empty(), "no money taken");

    // Charged already: the intent comes back, nothing is voided.
    gw.pay("key-x", "pm_card_ok", "pay_x", 500).await;
    let v = void("pay_x").await;
    assert_eq!(v.json()["status"], "exists");
    assert_eq!(v.json()["payment_intent"]["status"], "succeeded");

    // A charge executing right now: 409, ask again.
    let first = tokio::spawn({
        let gw = gw.clone();
        async move { gw.pay("key-f", "pm_fault_timeout", "pay_f", 10).await }
    });
    eventually("the charge to be in flight", || {
        (gw.sandbox.in_flight_requests() == 1).then_some(())
    })
    .await;
    let v = void("pay_f").await;
    assert_eq!(v.status, StatusCode::CONFLICT);
    assert_eq!(v.error().1, "charge_in_progress");
    first.await.unwrap();
}
