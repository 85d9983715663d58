//! Issue 9.3: the edge and the region core judge a token by one function
//! (`shared::token::verify_hs256` with `check_claims`). One table of
//! tokens goes to both (the built Worker in workerd, the region core over
//! HTTP); they accept and refuse the same ones. Before, the edge admitted
//! a subject holding a NUL that the region core then choked on.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::edge::{Client, EdgeOptions, EdgeStack};
use e2e::SECRET;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::json;
use sha2::Sha256;

fn sign(secret: &[u8], header: &str, claims: &serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(header);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(format!("{h}.{c}").as_bytes());
    format!(
        "{h}.{c}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn claims(sub: &str, role: &str, exp_in: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": sub, "role": role, "exp": now + exp_in, "iat": now })
}

/// (name, token, accepted?)
fn table() -> Vec<(&'static str, String, bool)> {
    let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
    let ok = |sub: &str| sign(SECRET.as_bytes(), hs, &claims(sub, "user", 600));
    vec![
        ("plain", ok("alice"), true),
        ("200 chars", ok(&"u".repeat(200)), true),
        ("unicode", ok("amélie-東京"), true),
        ("empty subject", ok(""), false),
        ("201 chars", ok(&"u".repeat(201)), false),
        ("NUL in subject", ok("al\0ice"), false),
        ("newline in subject", ok("al\nice"), false),
        ("leading space", ok(" alice"), false),
        (
            "bad role",
            sign(SECRET.as_bytes(), hs, &claims("alice", "admin", 600)),
            false,
        ),
        (
            "alg none",
            sign(
                SECRET.as_bytes(),
                r#"{"alg":"none"}"#,
                &claims("alice", "user", 600),
            ),
            false,
        ),
        (
            "expired",
            sign(SECRET.as_bytes(), hs, &claims("alice", "user", -600)),
            false,
        ),
        (
            "forged",
            sign(b"not-the-secret-at-all", hs, &claims("alice", "user", 600)),
            false,
        ),
        (
            "operator with a grant",
            sign(SECRET.as_bytes(), hs, &{
                let mut c = claims("op", "operator", 600);
                c["grant"] = json!({"cities": ["mum"], "scopes": ["read"]});
                c
            }),
            true,
        ),
        (
            "operator with an empty grant",
            sign(SECRET.as_bytes(), hs, &{
                let mut c = claims("op", "operator", 600);
                c["grant"] = json!({"cities": [], "scopes": ["read"]});
                c
            }),
            false,
        ),
        ("garbage", "a.b.c".into(), false),
        (
            "very long",
            format!("{}.{}.x", "a".repeat(3000), "b".repeat(3000)),
            false,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_and_the_region_core_agree_on_every_token() {
    let stack = EdgeStack::start(EdgeOptions::cities(&["mum"]))
        .await
        .expect("edge stack");
    let region = stack.region("mum").app();
    for (i, (name, token, accepted)) in table().into_iter().enumerate() {
        // Each token from its own address, so no per-IP limit interferes.
        let client = Client {
            id: None,
            token: Some(token.clone()),
            ip: format!("10.77.0.{}", i + 1),
        };
        let at_edge = stack.get("/v1/c/mum/bookings", &client).await;
        let (at_region, body) = region
            .send(Method::GET, "/v1/bookings", Some(&token), None)
            .await
            .expect("region");
        assert_eq!(
            (at_edge.status == 200, at_region == 200),
            (accepted, accepted),
            "{name}: edge {} region {at_region} {body}",
            at_edge.status
        );
        if !accepted {
            assert_eq!((at_edge.status, at_region), (401, 401), "{name}");
        }
    }
}
