//! Issue 9.6: a client that sends its request one byte a second is cut
//! off after the header (or body) read timeout, and other clients are
//! served meanwhile. Before, the region core waited forever.

use e2e::{test_settings, TestApp};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` one a second; returns how long the server let it go on
/// and what it answered (empty when it just closed the connection).
async fn drip(addr: std::net::SocketAddr, head: &[u8], bytes: &[u8]) -> (Duration, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head).await.expect("head");
    let started = Instant::now();
    let mut answer = Vec::new();
    for b in bytes {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        // Anything from the server (an answer or EOF) ends the drip.
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {} // nothing yet: next byte
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let mut settings = test_settings().await.expect("settings");
    settings.http_header_timeout_ms = 1_000;
    settings.http_body_timeout_ms = 1_000;
    let app = TestApp::spawn(settings).await.expect("app");
    let addr = app.app.addr;

    let slow_head = tokio::spawn(drip(
        addr,
        b"GET /healthz HTTP/1.1\r\n",
        b"Host: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
    ));
    let body = br#"{"code":"slo","name":"Slow City, sent one byte a second for a long time"}"#;
    let head = format!(
        "POST /v1/operator/cities HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let slow_body = tokio::spawn(drip(addr, head.as_bytes().to_vec().leak(), body));

    // Meanwhile everyone else is served.
    for _ in 0..10 {
        let (s, _) = app.get("/healthz").await.expect("healthz");
        assert_eq!(s, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (took, answer) = slow_head.await.expect("slow head");
    assert!(
        took < Duration::from_secs(10),
        "cut off after {took:?}, not after the whole drip"
    );
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (took, answer) = slow_body.await.expect("slow body");
    assert!(took < Duration::from_secs(10), "cut off after {took:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a slow body gets a 4xx or a closed connection: {answer}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM cities WHERE code = 'slo'")
            .await,
        0
    );
    app.stop().await;
}
