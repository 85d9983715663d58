//! WebSocket upgrades pass through the edge (the built Worker in workerd)
//! to the city's region unchanged: the region's `101 Switching Protocols`
//! and its socket reach the client, and frames flow both ways.
//!
//! The "region" here is a small echo server (the region core has no socket
//! endpoint yet); the client speaks RFC 6455 by hand over a TCP stream, so
//! nothing between the test and the Worker upgrades on our behalf.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use axum::Router;
use e2e::edge::{Client, EdgeOptions, EdgeStack};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if let Message::Text(t) = msg {
            if socket
                .send(Message::Text(format!("echo:{}", t.as_str()).into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn spawn_echo_region() -> String {
    let app = Router::new().route(
        "/v1/live",
        get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(echo) }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// One masked client text frame (payload < 126 bytes).
fn text_frame(payload: &str) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one unmasked server text frame (payload < 126 bytes).
async fn read_text_frame(stream: &mut TcpStream) -> String {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x81, "a final text frame");
    let len = (head[1] & 0x7f) as usize;
    assert!(len < 126);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    String::from_utf8(payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through_to_the_region() {
    let region = spawn_echo_region().await;
    let stack = EdgeStack::start(
        EdgeOptions::cities(&["mum"]).var("REGIONS", json!({ "mum": region }).to_string()),
    )
    .await
    .expect("edge stack");
    let ann = Client::user("ann", "10.8.0.1");
    let host = stack.url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&host)
        .await
        .expect("connect to the edge");
    let request = format!(
        "GET /v1/c/mum/live HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\nCF-Connecting-IP: {}\r\n\r\n",
        ann.token.as_deref().unwrap(),
        ann.ip
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The response head, byte by byte up to the blank line (frames follow).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.expect("response head");
        head.push(b[0]);
        assert!(head.len() < 16 * 1024, "no end of headers");
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455's example key has this accept value: the region's answer.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for msg in ["hello", "through the edge"] {
        stream.write_all(&text_frame(msg)).await.unwrap();
        assert_eq!(read_text_frame(&mut stream).await, format!("echo:{msg}"));
    }
    stack.stop().await;
}
