//! The live seat map's fan-out: the Worker hands a viewer's upgrade to
//! the Durable Object of (city, show, bucket) ([`viewer`]), and that
//! object ([`LiveShow`]) keeps ONE socket to the city's region core,
//! relays every frame to its viewers, and gives a new viewer a snapshot
//! of its copy at once, so a viewer costs the region core nothing. The
//! decisions (bucket, what to relay, backoff) are `crate::live`'s.
//!
//! Viewer sockets use the WebSocket Hibernation API (`accept_web_socket`):
//! the runtime holds them, not this code. The upstream socket is an
//! ordinary outgoing WebSocket read by a local task; while it is open the
//! object stays in memory (docs/adr/0011 says why that is the choice).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, AbortController, DurableObject, Env, Fetch, Headers, Method, Request,
    RequestInit, Response, Result, State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
    WebSocketRequestResponsePair, WebsocketEvent,
};

// The `#[durable_object]` expansion names `wasm_bindgen` unqualified.
use worker::wasm_bindgen;

// One frame to every viewer in ONE call into JavaScript: the text crosses
// from WASM memory once, and the runtime's socket list is walked where it
// lives. Done from Rust, each frame cost, per viewer, a JS wrapper from
// `getWebSockets()`, a `readyState` call and a UTF-8 → UTF-16 copy of the
// same text: with 5,000 viewers the object could not keep up. A socket
// that is closing throws on send; its close event tidies up.
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "
export function broadcast_text(state, text) {
  let sent = 0;
  for (const ws of state.getWebSockets()) {
    if (ws.readyState !== 1) continue;
    try { ws.send(text); sent++; } catch (_) {}
  }
  return sent;
}")]
extern "C" {
    fn broadcast_text(state: &wasm_bindgen::JsValue, text: &str) -> u32;
}

use super::handlers::Call;
use super::http::{self, with_timeout, OrInternal};
use crate::error::EdgeError;
use crate::live::{self as pure, Backoff, Relay, Verdict};
use shared::ShowId;

/// Headers the Worker gives the object (never a client's: only the
/// Worker can reach an object).
const SHOW_HEADER: &str = "X-Live-Show";
const UPSTREAM_HEADER: &str = "X-Live-Upstream";

/// Reconnect waits: from a quarter second, doubling, to 10 s.
const BACKOFF_BASE_MS: u64 = 250;
const BACKOFF_MAX_MS: u64 = 10_000;

/// `readyState` of an open socket.
const OPEN: u16 = 1;

/// Serves `GET /v1/c/{city}/shows/{show}/live` with `Upgrade: websocket`:
/// the viewer's bucket picks the object, which answers the upgrade. The
/// region's breaker is not asked: an object serves its copy even while
/// the region is away.
pub async fn viewer(
    req: &Request,
    call: &Call,
    city: &str,
    show: &str,
) -> std::result::Result<Response, EdgeError> {
    let upgrade = http::header(req, "Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        // The region core's answer to the same request, so clients have
        // one code to handle whether or not the edge is in front.
        return Err(EdgeError::new(
            400,
            "websocket_required",
            "the live seat map is a WebSocket; without one, poll /seats?since=N",
        ));
    }
    let bases = call
        .cfg
        .regions
        .replicas(city)
        .ok_or_else(|| EdgeError::unknown_city(city))?;
    let bucket = pure::bucket(&call.ip, call.cfg.live_buckets);
    let name = pure::object_name(city, show, bucket);
    let stub = call
        .env
        .durable_object(pure::BINDING)
        .and_then(|ns| ns.get_by_name(&name))
        .or_internal("live object")?;
    let h = Headers::new();
    for (name, value) in [
        ("Upgrade", "websocket".to_owned()),
        (SHOW_HEADER, show.to_owned()),
        (UPSTREAM_HEADER, pure::upstream_urls(bases, show)),
    ] {
        h.set(name, &value).or_internal("live header")?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(h);
    let inner = Request::new_with_init("https://live.internal/viewer", &init)
        .or_internal("live request")?;
    stub.fetch_with_request(inner)
        .await
        .or_internal("live object fetch")
}

/// What each viewer socket carries through hibernation: enough for a
/// re-created object to find its region again.
#[derive(Serialize, Deserialize)]
struct Attachment {
    show: String,
    upstream: String,
}

/// What the object remembers while it is in memory.
#[derive(Default)]
struct Inner {
    relay: Option<Relay>,
    upstream_url: Option<String>,
    /// The open upstream socket, to close when the last viewer leaves.
    upstream: Option<WebSocket>,
    /// Whether the upstream task runs (at most one).
    running: bool,
}

struct Shared {
    state: State,
    inner: RefCell<Inner>,
}

/// One show's fan-out for one bucket of its viewers.
#[durable_object(websocket)]
pub struct LiveShow {
    shared: Rc<Shared>,
}

impl DurableObject for LiveShow {
    fn new(state: State, _env: Env) -> Self {
        // "ping" → "pong" by the runtime itself: a viewer checking its
        // socket never wakes the object.
        if let Ok(pair) = WebSocketRequestResponsePair::new("ping", "pong") {
            let _ = state.as_raw().set_websocket_auto_response(&pair);
        }
        let this = Self {
            shared: Rc::new(Shared {
                state,
                inner: RefCell::new(Inner::default()),
            }),
        };
        // Re-created with viewers still attached (the object was evicted
        // and an event woke it): take the show from their attachments
        // and reconnect upstream.
        this.shared.resume();
        this
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let (Some(show), Some(upstream)) = (
            http::header(&req, SHOW_HEADER),
            http::header(&req, UPSTREAM_HEADER),
        ) else {
            return Response::error("not a viewer", 400);
        };
        let Ok(show_id) = ShowId::parse(&show) else {
            return Response::error("not a show id", 400);
        };
        let pair = WebSocketPair::new()?;
        self.shared.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(Attachment {
            show,
            upstream: upstream.clone(),
        })?;
        let snapshot = {
            let mut inner = self.shared.inner.borrow_mut();
            inner.upstream_url = Some(upstream);
            inner
                .relay
                .get_or_insert_with(|| Relay::new(show_id))
                .snapshot()
        };
        // Sent before anything else can be broadcast (no await between
        // the accept and this), so the viewer's first frame is a snapshot.
        if let Some(text) = snapshot {
            let _ = pair.server.send_with_str(text);
        }
        self.shared.ensure_upstream();
        Response::from_websocket(pair.client)
    }

    async fn websocket_message(
        &self,
        _ws: WebSocket,
        _msg: WebSocketIncomingMessage,
    ) -> Result<()> {
        // Viewers have nothing to say ("ping" is answered by the runtime).
        // Being awake, make sure the upstream runs.
        self.shared.resume();
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        // Complete the closing handshake. 1005/1006/1015 describe a close
        // and may not be sent; answer those with a plain 1000.
        let sendable = |c: &u16| matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999);
        let code = u16::try_from(code).ok().filter(sendable).unwrap_or(1000);
        let _ = ws.close(Some(code), Some("bye"));
        self.shared.viewer_left();
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        worker::console_warn!("live viewer socket error: {error}");
        let _ = ws.close(Some(1011), Some("error"));
        self.shared.viewer_left();
        Ok(())
    }
}

/// How an upstream connection ended.
enum Ended {
    /// Lost (region restart, network): wait, then reconnect.
    Lost,
    /// The region asked for a resync, or the stream broke: reconnect now
    /// (unless it keeps happening).
    Resync,
    /// Closed by us: no viewers left.
    Idle,
}

impl Shared {
    /// Open viewer sockets.
    fn viewers(&self) -> Vec<WebSocket> {
        self.state
            .get_websockets()
            .into_iter()
            .filter(|ws| ws.as_ref().ready_state() == OPEN)
            .collect()
    }

    fn broadcast(&self, text: &str) {
        broadcast_text(self.state.as_raw().as_ref(), text);
    }

    /// Starts the upstream task after an eviction, from a viewer's
    /// attachment, if viewers are attached and nothing runs.
    fn resume(self: &Rc<Self>) {
        let known = self.inner.borrow().upstream_url.is_some();
        if !known {
            let Some(att) = self
                .viewers()
                .iter()
                .find_map(|ws| ws.deserialize_attachment::<Attachment>().ok().flatten())
            else {
                return;
            };
            let Ok(show) = ShowId::parse(&att.show) else {
                return;
            };
            let mut inner = self.inner.borrow_mut();
            inner.upstream_url = Some(att.upstream);
            inner.relay.get_or_insert_with(|| Relay::new(show));
        }
        self.ensure_upstream();
    }

    /// Starts the upstream task unless it runs.
    fn ensure_upstream(self: &Rc<Self>) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.running || inner.upstream_url.is_none() {
                return;
            }
            inner.running = true;
        }
        let this = self.clone();
        worker::wasm_bindgen_futures::spawn_local(async move { this.run_upstream().await });
    }

    /// A viewer left: with nobody left, close the upstream (the task
    /// then ends) so an idle show costs the region core nothing.
    fn viewer_left(&self) {
        if !self.viewers().is_empty() {
            return;
        }
        if let Some(up) = self.inner.borrow_mut().upstream.take() {
            let _ = up.close(Some(1000), Some("no viewers"));
        }
    }

    /// Connects, relays, reconnects with backoff; ends when no viewer is
    /// left. Never holds a `RefCell` borrow across an `.await`.
    async fn run_upstream(self: Rc<Self>) {
        let mut backoff = Backoff::new(BACKOFF_BASE_MS, BACKOFF_MAX_MS);
        // Which of the shard's replicas to connect to: the next one after
        // a replica is lost or refuses.
        let mut turn = 0usize;
        loop {
            if self.viewers().is_empty() {
                break;
            }
            let Some(urls) = self.inner.borrow().upstream_url.clone() else {
                break;
            };
            let url = pure::pick_upstream(&urls, turn).to_owned();
            let wait_ms = match open(&url).await {
                Ok(ws) => match self.pump(&ws, &mut backoff).await {
                    Ended::Lost => {
                        turn += 1;
                        backoff.after_failure(None, jitter())
                    }
                    Ended::Resync => backoff.after_resync(jitter()),
                    Ended::Idle => 0,
                },
                Err(retry_after_ms) => {
                    turn += 1;
                    backoff.after_failure(retry_after_ms, jitter())
                }
            };
            self.inner.borrow_mut().upstream = None;
            if self.viewers().is_empty() {
                break;
            }
            if wait_ms > 0 {
                worker::Delay::from(Duration::from_millis(wait_ms)).await;
            }
        }
        // Decided with no await since the last viewer check, so a viewer
        // arriving now finds `running == false` and starts a new task.
        let mut inner = self.inner.borrow_mut();
        inner.running = false;
        // Idle: the copy will be stale by the next viewer; it waits for
        // the fresh snapshot instead.
        if let Some(relay) = inner.relay.as_mut() {
            *relay = Relay::new(relay.show());
        }
    }

    /// Relays one upstream connection's frames until it ends.
    async fn pump(&self, ws: &WebSocket, backoff: &mut Backoff) -> Ended {
        let Ok(mut events) = ws.events() else {
            return Ended::Lost;
        };
        if ws.accept().is_err() {
            return Ended::Lost;
        }
        self.inner.borrow_mut().upstream = Some(ws.clone());
        // The last viewer may have left while we connected.
        if self.viewers().is_empty() {
            let _ = ws.close(Some(1000), Some("no viewers"));
            return Ended::Idle;
        }
        while let Some(event) = events.next().await {
            match event {
                Ok(WebsocketEvent::Message(msg)) => {
                    let Some(text) = msg.text() else { continue };
                    let verdict = match self.inner.borrow_mut().relay.as_mut() {
                        Some(relay) => relay.on_upstream(&text),
                        None => Verdict::Drop,
                    };
                    match verdict {
                        Verdict::Relay => {
                            backoff.reset();
                            self.broadcast(&text);
                        }
                        Verdict::Drop => {}
                        Verdict::Reconnect(e) => {
                            worker::console_warn!("live upstream {e}: reconnecting");
                            let _ = ws.close(Some(1000), Some("resync"));
                            return Ended::Resync;
                        }
                    }
                }
                Ok(WebsocketEvent::Close(close)) => {
                    return if self.inner.borrow().upstream.is_none() {
                        Ended::Idle
                    } else if pure::close_is_resync(close.code()) {
                        Ended::Resync
                    } else {
                        Ended::Lost
                    };
                }
                Err(e) => {
                    worker::console_warn!("live upstream error: {e}");
                    return Ended::Lost;
                }
            }
        }
        Ended::Lost
    }
}

/// Opens the upstream socket; on refusal, the region's `Retry-After`.
async fn open(url: &str) -> std::result::Result<WebSocket, Option<u64>> {
    let attempt = async {
        let h = Headers::new();
        h.set("Upgrade", "websocket").or_internal("upgrade")?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(h);
        let req = Request::new_with_init(url, &init).or_internal("live request")?;
        Fetch::Request(req)
            .send()
            .await
            .or_internal("live upstream")
    };
    match with_timeout(attempt, 10_000, AbortController::default()).await {
        Some(Ok(resp)) => {
            let retry_after = resp
                .headers()
                .get("Retry-After")
                .ok()
                .flatten()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| s * 1000);
            let status = resp.status_code();
            resp.websocket().ok_or_else(|| {
                worker::console_warn!("live upstream {url}: {status}, not a socket");
                retry_after
            })
        }
        _ => {
            worker::console_warn!("live upstream {url}: unreachable");
            Err(None)
        }
    }
}

/// 0..1 from `Math.random` (spreading reconnects needs no CSPRNG).
fn jitter() -> f64 {
    worker::js_sys::Math::random()
}
