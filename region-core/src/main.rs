//! `region-core` binary: serve a city shard, migrate it, serve the global
//! catalog, or mint a development token.

use clap::{Parser, Subcommand};
use region_core::auth::{Grant, Role, Scope, TokenKeys};
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
        /// An operator token's city (repeat for several; `*` for all).
        /// Without `--city`, an operator token reaches every city with
        /// every scope: the platform's own key.
        #[arg(long = "city")]
        cities: Vec<String>,
        /// An operator token's scope: catalog, sales, refunds or read
        /// (repeat for several; default read).
        #[arg(long = "scope")]
        scopes: Vec<String>,
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
            cities,
            scopes,
            signing,
        }) => {
            let Some(role) = Role::parse(&role) else {
                anyhow::bail!("--role must be user, operator or staff, got {role:?}");
            };
            let now = chrono::Utc::now().timestamp();
            let keys = TokenKeys::new(&signing.jwt_secret);
            let token = if cities.is_empty() && scopes.is_empty() {
                keys.mint(&sub, role, now, ttl_secs)?
            } else {
                if role != Role::Operator || cities.is_empty() {
                    anyhow::bail!("--city and --scope are for operator tokens, and need a --city");
                }
                let scopes = if scopes.is_empty() {
                    vec![Scope::Read]
                } else {
                    scopes
                        .iter()
                        .map(|s| {
                            Scope::parse(s).ok_or_else(|| {
                                anyhow::anyhow!(
                                    "--scope must be catalog, sales, refunds or read, got {s:?}"
                                )
                            })
                        })
                        .collect::<anyhow::Result<_>>()?
                };
                let grant = Grant::new(cities, scopes)
                    .map_err(|e| anyhow::anyhow!("{e}: city codes are lower-case, or *"))?;
                keys.mint_operator(&sub, &grant, now, ttl_secs)?
            };
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until(service_kit::shutdown_signal()).await
}
