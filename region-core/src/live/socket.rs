//! One viewer's WebSocket: the snapshot, then every frame of the show's
//! feed. A viewer that falls `live_buffer_frames` behind (its sends
//! blocked by a slow network) is closed with [`RESYNC`] rather than slow
//! anyone else; pings find dead peers.

use super::feed::{Feed, Text};
use super::hub::{Hub, SocketSlot};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// Close code for "you fell behind: reconnect and take a new snapshot"
/// (4000-4999 are the application's own).
pub const RESYNC: u16 = 4000;

/// Close code when the feed has no snapshot to give yet (RFC 6455's "try
/// again later").
const TRY_AGAIN_LATER: u16 = 1013;

/// A send that waits this long means the viewer is not reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Detaches the socket from its feed however the session ends.
struct Attached {
    hub: Arc<Hub>,
    feed: Arc<Feed>,
    _slot: SocketSlot,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.hub.detach(&self.feed);
    }
}

/// Serves one viewer until either side goes away.
pub async fn serve(
    socket: WebSocket,
    feed: Arc<Feed>,
    hub: Arc<Hub>,
    slot: SocketSlot,
    ping_every: Duration,
) {
    let attached = Attached {
        hub,
        feed,
        _slot: slot,
    };
    let (mut out, mut inbound) = socket.split();
    if !attached.feed.ready(Duration::from_secs(5)).await {
        close(&mut out, TRY_AGAIN_LATER, "no snapshot yet").await;
        return;
    }
    let (snapshot, mut frames) = attached.feed.join();
    if !send(&mut out, snapshot).await {
        return;
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(text) => {
                    if !send(&mut out, text).await {
                        close(&mut out, RESYNC, "resync").await;
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    metrics::counter!("live_slow_closes_total").increment(1);
                    close(&mut out, RESYNC, "resync").await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            msg = inbound.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Viewers have nothing to say; any frame (a pong) shows
                // they are alive.
                Some(Ok(_)) => heard = Instant::now(),
            },
            _ = ping.tick() => {
                if heard.elapsed() > ping_every * 2 {
                    return; // a dead peer: no answer to two pings
                }
                let sent = tokio::time::timeout(SEND_TIMEOUT, out.send(Message::Ping(Default::default()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;

async fn send(out: &mut Sink, text: Text) -> bool {
    let msg = Message::Text(Utf8Bytes::from(&*text));
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, out.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn close(out: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        out.send(Message::Close(Some(frame))),
    )
    .await;
}
