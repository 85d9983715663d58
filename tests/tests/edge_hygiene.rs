//! Issue 9.6, 9.7 and 9.10 at the edge (the built Worker in workerd behind
//! `serve.mjs`'s front server): bad framing is refused with the project's
//! JSON error, unknown methods get 405 with `Allow`, a UUID has one
//! spelling, a slow client is cut off while others are served, and off
//! Cloudflare a forged `CF-Connecting-IP` does not choose the rate-limit
//! bucket.

use e2e::edge::{Client, EdgeOptions, EdgeStack};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes, returns the raw answer (until the server closes).
async fn raw(url: &str, request: &[u8]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_json_error(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON body: {answer}"));
    assert!(v["error"]["code"].is_string(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_bad_framing_odd_methods_and_other_spellings() {
    let stack = EdgeStack::start(
        EdgeOptions::cities(&["mum"])
            .var("EDGE_HEADERS_TIMEOUT_MS", "1000")
            .var("EDGE_REQUEST_TIMEOUT_MS", "2000"),
    )
    .await
    .expect("edge");
    let url = stack.url.clone();

    // Content-Length with Transfer-Encoding (request smuggling), bare CR.
    let both = raw(
        &url,
        b"POST /v1/c/mum/bookings HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_json_error(&both, 400);
    let bare_cr = raw(&url, b"GET /healthz HTTP/1.1\r\nHost: x\rX-Evil: 1\r\n\r\n").await;
    assert_json_error(&bare_cr, 400);
    // Oversized headers.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw(&url, big.as_bytes()).await;
    assert_json_error(&answer, 431);

    // An unknown method: 405 with Allow, JSON.
    let propfind = raw(
        &url,
        b"PROPFIND /v1/cities HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_json_error(&propfind, 405);
    assert!(
        propfind
            .to_ascii_lowercase()
            .contains("\r\nallow: get, head, post, put, delete"),
        "{propfind}"
    );

    // One spelling per id.
    let show = uuid::Uuid::now_v7().to_string();
    let anyone = Client::anonymous("10.60.0.1");
    for spelling in [
        show.to_uppercase(),
        format!("urn:uuid:{show}"),
        show.replace('-', ""),
    ] {
        let r = stack
            .get(&format!("/v1/c/mum/shows/{spelling}"), &anyone)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, Some("non_canonical_id")),
            "{spelling}"
        );
    }

    // A sale for a show its city does not have: 404, nothing stored.
    let sale = e2e::edge::SaleSettings {
        city: "mum".into(),
        opens_at_ms: e2e::edge::now_ms() + 60_000,
        rate_per_sec: 10.0,
        pass_ttl_s: 300,
        grace_s: 30,
    };
    let r = stack.put_sale(&show, &sale).await;
    assert_eq!((r.status, r.code()), (404, Some("unknown_show")), "{r}");
    let r = stack
        .get(&format!("/v1/operator/sales/{show}"), &Client::operator())
        .await;
    assert_eq!(r.status, 404, "{r}");

    // A client sending one byte a second is cut off; others are served.
    let addr = url.trim_start_matches("http://").to_owned();
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        let mut answer = Vec::new();
        for b in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(_) => {}
            }
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });
    for _ in 0..5 {
        let r = stack.get("/healthz", &anyone).await;
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (took, answer) = slow.await.expect("slow client");
    assert!(took < Duration::from_secs(20), "cut off after {took:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_cloudflare_a_forged_client_address_does_not_escape_the_ip_limit() {
    let stack = EdgeStack::start(
        EdgeOptions::cities(&["mum"])
            .var("TRUST_CF_CONNECTING_IP", "false")
            // The test connects from 127.0.0.1: not a trusted proxy here,
            // so the address the front server sees is the client's.
            .var("TRUSTED_PROXIES", "10.255.255.255")
            .var(
                "RATE_LIMITS",
                r#"{"catalog":{"limit":100,"period_ms":60000,"burst":100,"ip":{"limit":1,"period_ms":60000,"burst":3}}}"#,
            ),
    )
    .await
    .expect("edge");
    // Every request claims another address, in both headers.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let forged = format!("198.51.100.{i}");
        let req = stack
            .request(
                reqwest::Method::GET,
                "/v1/cities",
                &Client::anonymous(&forged),
            )
            .header("X-Forwarded-For", &forged);
        statuses.push(stack.send(req).await.status);
    }
    assert!(
        statuses.contains(&429),
        "the forged addresses all count as one client: {statuses:?}"
    );
}

/// Issue 9.8 at the edge: failed token checks are limited per client IP
/// (429 with Retry-After after the `auth_failure` budget), other clients
/// are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_token_checks_are_limited_per_ip() {
    let stack = EdgeStack::start(EdgeOptions::cities(&["mum"]).var(
        "RATE_LIMITS",
        r#"{"auth_failure":{"limit":3,"period_ms":60000,"burst":3,"ip":{"limit":3,"period_ms":60000,"burst":3}}}"#,
    ))
    .await
    .expect("edge");
    let guesser = Client {
        id: None,
        token: Some("not.a.token".into()),
        ip: "10.61.0.1".into(),
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = stack.get("/v1/c/mum/bookings", &guesser).await;
        if r.status == 429 {
            assert!(r.header_u64("Retry-After").is_some_and(|s| s >= 1), "{r}");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let other = Client {
        ip: "10.61.0.2".into(),
        ..guesser
    };
    assert_eq!(stack.get("/v1/c/mum/bookings", &other).await.status, 401);
}
