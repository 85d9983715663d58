//! A live seat-map viewer (`GET …/live`, protocol `shared::live`): keeps
//! an exact copy with `shared::live::Replica`, records every frame it was
//! sent, and counts snapshots, deltas and gaps. Used by the tests, the
//! `seatmap` benchmark and the demo.

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use shared::live::{Frame, LiveError, Replica};
use shared::{SeatState, ShowId};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How a viewer's session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The server sent a close frame with this code.
    Code(u16),
    /// The connection ended without a close frame.
    Dropped,
}

/// One viewer of one show.
pub struct Viewer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The viewer's copy.
    pub replica: Replica,
    /// Snapshots received.
    pub snapshots: u64,
    /// Deltas received.
    pub deltas: u64,
    /// Gaps found (each means a snapshot is needed; the server sends one).
    pub gaps: u64,
    /// Whether the last snapshot said the server is degraded.
    pub degraded: bool,
    /// The session's end, once seen.
    pub closed: Option<Closed>,
}

impl Viewer {
    /// Opens `url` (`ws://…/v1/shows/{id}/live`, or through the edge).
    pub async fn connect(url: &str, show: ShowId) -> anyhow::Result<Self> {
        Self::connect_with(url, show, &[]).await
    }

    /// Opens `url` with extra request headers (e.g. `CF-Connecting-IP`,
    /// to come from another address through the edge).
    pub async fn connect_with(
        url: &str,
        show: ShowId,
        headers: &[(&'static str, &str)],
    ) -> anyhow::Result<Self> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url
            .into_client_request()
            .with_context(|| format!("a WebSocket request for {url}"))?;
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("connecting {url}"))?;
        Ok(Self {
            ws,
            replica: Replica::new(show),
            snapshots: 0,
            deltas: 0,
            gaps: 0,
            degraded: false,
            closed: None,
        })
    }

    /// Reads and applies one frame (None: timed out or closed).
    pub async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<Frame>> {
        let deadline = Instant::now() + wait;
        loop {
            if self.closed.is_some() {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) | Ok(Some(Err(_))) => {
                    self.closed.get_or_insert(Closed::Dropped);
                    return Ok(None);
                }
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    let frame: Frame = serde_json::from_str(t.as_str())
                        .with_context(|| format!("not a live frame: {}", t.as_str()))?;
                    self.take(&frame)?;
                    return Ok(Some(frame));
                }
                Message::Close(c) => {
                    let code = c.map_or(1005, |c| u16::from(c.code));
                    self.closed = Some(Closed::Code(code));
                    return Ok(None);
                }
                Message::Ping(p) => {
                    let _ = self.ws.send(Message::Pong(p)).await;
                }
                _ => {}
            }
        }
    }

    /// Applies a frame; a gap is counted (the copy is dropped until the
    /// next snapshot), anything else malformed is an error.
    pub fn take(&mut self, frame: &Frame) -> anyhow::Result<()> {
        match frame {
            Frame::Snapshot { degraded, .. } => {
                self.snapshots += 1;
                self.degraded = *degraded;
            }
            Frame::Delta { .. } => self.deltas += 1,
        }
        match self.replica.apply(frame) {
            Ok(()) => Ok(()),
            Err(LiveError::Gap { .. }) | Err(LiveError::NoSnapshot) => {
                self.gaps += 1;
                Ok(())
            }
            Err(e) => Err(anyhow!("frame refused: {e}")),
        }
    }

    /// Reads frames until `done` holds for the copy (Ok(false) on timeout).
    pub async fn until(
        &mut self,
        wait: Duration,
        mut done: impl FnMut(&Replica) -> bool,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + wait;
        loop {
            if done(&self.replica) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.closed.is_some() {
                return Ok(false);
            }
            self.next(left).await?;
        }
    }

    /// The state of seat `ordinal` in the copy.
    pub fn seat(&self, ordinal: u32) -> Option<SeatState> {
        self.replica.seat(ordinal)
    }

    /// Closes the socket politely.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await
            .or_else(|e| match e {
                tokio_tungstenite::tungstenite::Error::ConnectionClosed => Ok(()),
                e => bail!("close: {e}"),
            })
    }
}

/// `http://host…` → `ws://host…` (and https → wss).
pub fn ws_url(http_base: &str, path: &str) -> String {
    let base = http_base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{base}{path}")
}
