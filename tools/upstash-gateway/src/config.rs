//! Start-up configuration: [`GatewayConfig`] for callers that embed the
//! gateway (tests, the load generator), [`Args`] for the binary (flags or
//! `UPSTASH_GATEWAY_…` environment variables). Both share one set of
//! defaults and one validation, whose messages name the variable.

use anyhow::{anyhow, bail};
use std::net::SocketAddr;

/// Default listen address of the binary.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8079";
/// Default Redis the gateway forwards to (the one `scripts/services.sh`
/// starts).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default token callers send as `Authorization: Bearer …`; the Worker's
/// local `UPSTASH_REDIS_REST_TOKEN` uses the same value.
pub const DEFAULT_TOKEN: &str = "local-dev-token";

/// How one gateway is run.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `IP:port` to listen on; `127.0.0.1:0` picks a free port.
    pub listen: String,
    /// The Redis commands are forwarded to: `redis://[user:pass@]host:port[/db]`
    /// or `redis+unix:///path/to/socket`.
    pub redis_url: String,
    /// The one token accepted as `Authorization: Bearer <token>` or
    /// `?_token=<token>`.
    pub token: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            redis_url: DEFAULT_REDIS_URL.to_string(),
            token: DEFAULT_TOKEN.to_string(),
        }
    }
}

impl GatewayConfig {
    /// Checks what the field types cannot; messages name the variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        self.redis_client()?;
        // Visible ASCII only: anything else cannot travel in an HTTP header.
        if self.token.is_empty() || !self.token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("UPSTASH_GATEWAY_TOKEN must be non-empty printable ASCII without spaces");
        }
        Ok(())
    }

    /// The listen address, parsed.
    pub(crate) fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.trim().parse().map_err(|_| {
            anyhow!(
                "UPSTASH_GATEWAY_LISTEN must be IP:port such as 127.0.0.1:8079, got {:?}",
                self.listen
            )
        })
    }

    /// A Redis client for `redis_url`, always speaking RESP2: the REST
    /// replies Upstash documents are RESP2-shaped (maps as flat arrays,
    /// doubles as strings), so a `?protocol=resp3` in the URL is overridden.
    pub(crate) fn redis_client(&self) -> anyhow::Result<redis::Client> {
        use redis::IntoConnectionInfo;
        let mut info = self
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| {
                anyhow!(
                    "UPSTASH_GATEWAY_REDIS_URL is not a Redis URL ({e}): {:?}",
                    self.redis_url
                )
            })?;
        info.redis.protocol = redis::ProtocolVersion::RESP2;
        redis::Client::open(info)
            .map_err(|e| anyhow!("UPSTASH_GATEWAY_REDIS_URL is unusable ({e})"))
    }
}

/// Command line of the `upstash-gateway` binary; every flag can also be
/// set through the environment variable shown in `--help`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "upstash-gateway",
    about = "An Upstash-compatible REST gateway in front of a local Redis, for local runs and CI"
)]
pub struct Args {
    /// IP:port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "UPSTASH_GATEWAY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// The Redis commands are forwarded to.
    #[arg(long, env = "UPSTASH_GATEWAY_REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// Token callers must send as `Authorization: Bearer <token>`.
    #[arg(long, env = "UPSTASH_GATEWAY_TOKEN", default_value = DEFAULT_TOKEN)]
    pub token: String,
}

impl Args {
    /// The validated configuration these arguments describe.
    pub fn into_config(self) -> anyhow::Result<GatewayConfig> {
        let config = GatewayConfig {
            listen: self.listen,
            redis_url: self.redis_url,
            token: self.token,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn error_of(config: GatewayConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_shared_with_the_binary() {
        GatewayConfig::default().validate().unwrap();
        let from_args = Args::try_parse_from(["upstash-gateway"])
            .unwrap()
            .into_config()
            .unwrap();
        let default = GatewayConfig::default();
        assert_eq!(from_args.listen, default.listen);
        assert_eq!(from_args.redis_url, default.redis_url);
        assert_eq!(from_args.token, default.token);
    }

    #[test]
    fn messages_name_the_variable() {
        let bad_listen = GatewayConfig {
            listen: "localhost".into(),
            ..Default::default()
        };
        assert!(error_of(bad_listen).starts_with("UPSTASH_GATEWAY_LISTEN"));
        let bad_url = GatewayConfig {
            redis_url: "http://127.0.0.1:6379".into(),
            ..Default::default()
        };
        assert!(error_of(bad_url).starts_with("UPSTASH_GATEWAY_REDIS_URL"));
        for token in ["", "has space", "tab\there", "naïve"] {
            let bad_token = GatewayConfig {
                token: token.into(),
                ..Default::default()
            };
            assert!(
                error_of(bad_token).starts_with("UPSTASH_GATEWAY_TOKEN"),
                "{token:?}"
            );
        }
    }

    #[test]
    fn resp3_in_the_url_is_overridden() {
        let config = GatewayConfig {
            redis_url: "redis://127.0.0.1:6379/?protocol=resp3".into(),
            ..Default::default()
        };
        let client = config.redis_client().unwrap();
        assert_eq!(
            client.get_connection_info().redis.protocol,
            redis::ProtocolVersion::RESP2
        );
    }
}
