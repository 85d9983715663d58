//! A TCP proxy that can cut one client off from a server (a network
//! partition between one replica and its Redis) while others still reach
//! it directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

struct State {
    cut: AtomicBool,
    cut_now: Notify,
}

/// A running proxy to `127.0.0.1:<upstream>`.
pub struct TcpProxy {
    /// The port it listens on.
    pub port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port and forwards every connection upstream.
    pub async fn start(upstream: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            cut: AtomicBool::new(false),
            cut_now: Notify::new(),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if st.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = st.cut_now.notified() => {}
                    }
                });
            }
        });
        Ok(Self { port, state, task })
    }

    /// `redis://127.0.0.1:<port>`
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones until [`restore`].
    ///
    /// [`restore`]: TcpProxy::restore
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.cut_now.notify_waiters();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
