//! `region-core` binary: serve a city shard, migrate it, serve the global
//! catalog, or mint a development token.

use clap::{Parser, Subcommand};
use region_core::auth::{Role, TokenKeys};
use region_core::{Application, Settings};
use service_kit::SigningKey;

#[derive(Parser)]
#[command(name = "region-core", about = "One city shard's booking service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve {
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        settings: Settings,
    },
    /// Serve the global catalog (titles every city shares, search)
    /// from its own database instead of a city shard.
    Catalog {
        #[command(flatten)]
        settings: region_core::global_catalog::CatalogSettings,
    },
    /// Print a signed JWT for local development and tests.
    MintToken {
        /// The token's subject (user id).
        #[arg(long)]
        sub: String,
        /// `user`, `operator` or `staff`.
        #[arg(long, default_value = "user")]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
        #[command(flatten)]
        signing: SigningKey,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing("info,sqlx=warn,tower_http=warn");
    let cli = Cli::parse();
    match cli.command {
        None => serve(Settings::from_env()?).await,
        Some(Command::Serve { settings }) => serve(settings).await,
        Some(Command::Migrate { settings }) => {
            region_core::app::connect_db(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Some(Command::Catalog { settings }) => {
            region_core::global_catalog::run(settings, service_kit::shutdown_signal()).await
        }
        Some(Command::MintToken {
            sub,
            role,
            ttl_secs,
            signing,
        }) => {
            let Some(role) = Role::parse(&role) else {
                anyhow::bail!("--role must be user, operator or staff, got {role:?}");
            };
            let now = chrono::Utc::now().timestamp();
            println!(
                "{}",
                TokenKeys::new(&signing.jwt_secret).mint(&sub, role, now, ttl_secs)?
            );
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(service_kit::shutdown_signal()).await
}
