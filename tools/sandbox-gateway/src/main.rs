//! `sandbox-gateway` binary: read flags and `SANDBOX_…` variables, serve
//! until Ctrl-C or SIGTERM.

use clap::Parser;
use sandbox_gateway::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing("info,tower_http=warn");
    let config = Args::parse().into_config()?;
    let sandbox = sandbox_gateway::spawn(config).await?;
    tracing::info!(url = %sandbox.url(), "sandbox gateway ready");
    service_kit::shutdown_signal().await;
    sandbox.stop().await;
    Ok(())
}
