//! `upstash-gateway` binary: read flags and `UPSTASH_GATEWAY_…` variables,
//! serve until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use upstash_gateway::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let config = Args::parse().into_config()?;
    let gateway = upstash_gateway::spawn(config).await?;
    tracing::info!(url = %gateway.url(), "upstash gateway ready");
    shutdown_signal()
        .await
        .context("waiting for a shutdown signal")?;
    gateway.stop().await;
    Ok(())
}

/// Ctrl-C or SIGTERM (what `kill` and process supervisors send).
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
