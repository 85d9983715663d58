//! `upstash-gateway` binary: read flags and `UPSTASH_GATEWAY_…` variables,
//! serve until Ctrl-C or SIGTERM.

use clap::Parser;
use upstash_gateway::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing("info,tower_http=warn");
    let config = Args::parse().into_config()?;
    let gateway = upstash_gateway::spawn(config).await?;
    tracing::info!(url = %gateway.url(), "upstash gateway ready");
    service_kit::shutdown_signal().await;
    gateway.stop().await;
    Ok(())
}
