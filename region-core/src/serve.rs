//! The HTTP server loop: HTTP/1.1 with upgrades (WebSockets), each
//! request tagged with its peer address (for per-client limits), and
//! read timeouts so a slow client cannot hold a connection forever: a
//! client that has not sent its whole header block within the header
//! timeout is disconnected (hyper's `header_read_timeout`), and a body
//! that has not arrived within the body timeout fails its request
//! (tower-http's `RequestBodyTimeoutLayer`, in the router). `axum::serve`
//! has neither timeout, hence this loop.
//!
//! On shutdown it stops accepting, lets requests in flight finish, and
//! gives up on connections still open after the drain timeout.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    // Each connection task holds a receiver: flipping it asks them to
    // finish; `closed()` resolves when the last one has.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let svc = TowerToHyperService::new(tower::service_fn(
            move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req)
            },
        ));
        let conn = http
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let mut drain = drain_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = drain.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            // A header timeout or a client that went away ends the
            // connection; neither is the server's failure.
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    drop(drain_rx);
    let _ = drain_tx.send(true);
    if tokio::time::timeout(DRAIN, drain_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}
