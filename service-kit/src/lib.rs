//! The one start-up and shutdown pattern of the platform's native
//! processes (the region core, the sandbox payment gateway, the Upstash
//! gateway): logs go to stderr, filtered by `RUST_LOG` or the process's
//! default; the process serves until Ctrl-C or SIGTERM (what `kill`,
//! systemd and Kubernetes send), then drains. Also the one definition of
//! the token-signing key argument, which the region core and the tools
//! that mint tokens for it read alike.

/// The `--jwt-secret` / `REGION_JWT_SECRET` argument of the tools that
/// mint tokens (`region-core mint-token`, `loadgen`).
#[derive(Debug, Clone, clap::Args)]
pub struct SigningKey {
    /// HS256 key tokens are signed with (the region core's REGION_JWT_SECRET).
    #[arg(
        long,
        env = "REGION_JWT_SECRET",
        default_value = "dev-only-secret-change-me",
        hide_env_values = true
    )]
    pub jwt_secret: String,
}

/// Installs the log subscriber: `RUST_LOG` if set, else `default_filter`
/// (for example `"info,tower_http=warn"`).
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
}

/// Resolves on Ctrl-C or SIGTERM. If a signal handler cannot be installed
/// that signal is simply never seen (the other still works).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    /// SIGTERM to ourselves resolves the future (the handler is installed
    /// before the signal is sent, as in a real process that is running).
    #[tokio::test]
    async fn sigterm_resolves_the_shutdown_signal() {
        let wait = tokio::spawn(super::shutdown_signal());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let me = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &me])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("resolved within 5 s")
            .expect("task");
    }
}
