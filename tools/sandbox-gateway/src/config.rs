//! Start-up configuration: [`SandboxConfig`] for callers that embed the
//! gateway (tests), [`Args`] for the binary (flags or `SANDBOX_…`
//! environment variables). Both share one set of defaults and one
//! validation, whose messages name the environment variable.

use anyhow::bail;

/// Default listen address of the binary.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
/// Default API key callers send as `Authorization: Bearer …`.
pub const DEFAULT_API_KEY: &str = "sk_sandbox_local";
/// Default secret webhooks are signed with.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_sandbox_local";
/// Default hang of a `timeout` fault, in milliseconds (longer than any
/// sane client timeout, as a real hung gateway would be).
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Longest hang a `timeout` fault may be configured with (10 minutes).
const MAX_TIMEOUT_MS: u64 = 600_000;

/// How one sandbox gateway behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to listen on; `127.0.0.1:0` picks a free port.
    pub listen: String,
    /// The one API key accepted as `Authorization: Bearer <api_key>`.
    pub api_key: String,
    /// Where events are POSTed (`http://` only); `None` sends none. Can be
    /// changed at runtime with `PUT /sandbox/webhook`.
    pub webhook_url: Option<String>,
    /// HMAC secret of the `Sandbox-Signature` header.
    pub webhook_secret: String,
    /// Probability (0.0..=1.0) that a `pm_card_ok` payment gets a random
    /// fault instead of succeeding.
    pub fault_rate: f64,
    /// How long a `timeout` fault hangs before answering 504, in ms.
    pub timeout_ms: u64,
    /// Seed of the fault RNG; `None` seeds from the OS (not reproducible).
    pub seed: Option<u64>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            api_key: DEFAULT_API_KEY.to_string(),
            webhook_url: None,
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_string(),
            fault_rate: 0.0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            seed: None,
        }
    }
}

impl SandboxConfig {
    /// Checks what the field types cannot; messages name the variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.listen.trim().is_empty() {
            bail!("SANDBOX_LISTEN must not be empty");
        }
        if self.api_key.is_empty() || self.api_key.chars().any(char::is_whitespace) {
            bail!("SANDBOX_API_KEY must be non-empty and contain no whitespace");
        }
        if self.webhook_secret.is_empty() {
            bail!("SANDBOX_WEBHOOK_SECRET must not be empty");
        }
        if let Some(url) = &self.webhook_url {
            check_webhook_url(url).map_err(|e| anyhow::anyhow!("SANDBOX_WEBHOOK_URL {e}"))?;
        }
        check_fault_rate(self.fault_rate).map_err(|e| anyhow::anyhow!("SANDBOX_FAULT_RATE {e}"))?;
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            bail!(
                "SANDBOX_TIMEOUT_MS must be 1..={MAX_TIMEOUT_MS}, got {}",
                self.timeout_ms
            );
        }
        Ok(())
    }
}

/// Accepts `http://host…` URLs only: the webhook client is built without
/// TLS, so an `https://` URL could never be delivered to.
pub(crate) fn check_webhook_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("must be an http:// URL with a host, got {url:?}")),
        Err(e) => Err(format!("is not a URL ({e}): {url:?}")),
    }
}

/// A probability: finite and within 0.0..=1.0.
pub(crate) fn check_fault_rate(rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("must be between 0.0 and 1.0, got {rate}"))
    }
}

/// Command line of the `sandbox-gateway` binary; every flag can also be
/// set through the environment variable shown in `--help`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "sandbox-gateway",
    about = "A Stripe-like sandbox payment gateway for local runs and tests"
)]
pub struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "SANDBOX_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// API key callers must send as `Authorization: Bearer <key>`.
    #[arg(long, env = "SANDBOX_API_KEY", default_value = DEFAULT_API_KEY)]
    pub api_key: String,

    /// Where webhook events are POSTed (http:// only); unset sends none.
    #[arg(long, env = "SANDBOX_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Secret the `Sandbox-Signature` webhook header is computed with.
    #[arg(long, env = "SANDBOX_WEBHOOK_SECRET", default_value = DEFAULT_WEBHOOK_SECRET)]
    pub webhook_secret: String,

    /// Probability (0.0..=1.0) that a `pm_card_ok` payment gets a random fault.
    #[arg(long, env = "SANDBOX_FAULT_RATE", default_value_t = 0.0)]
    pub fault_rate: f64,

    /// How long a `timeout` fault hangs before answering 504, in ms.
    #[arg(long, env = "SANDBOX_TIMEOUT_MS", default_value_t = DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u64,

    /// Seed of the fault RNG, for reproducible runs.
    #[arg(long, env = "SANDBOX_SEED")]
    pub seed: Option<u64>,
}

impl Args {
    /// The validated configuration these arguments describe.
    pub fn into_config(self) -> anyhow::Result<SandboxConfig> {
        let config = SandboxConfig {
            listen: self.listen,
            api_key: self.api_key,
            // `SANDBOX_WEBHOOK_URL=` (set but empty) means "no webhooks".
            webhook_url: self.webhook_url.filter(|u| !u.is_empty()),
            webhook_secret: self.webhook_secret,
            fault_rate: self.fault_rate,
            timeout_ms: self.timeout_ms,
            seed: self.seed,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn error_of(config: SandboxConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_shared_with_the_binary() {
        SandboxConfig::default().validate().unwrap();
        let from_args = Args::try_parse_from(["sandbox-gateway"])
            .unwrap()
            .into_config()
            .unwrap();
        let default = SandboxConfig::default();
        assert_eq!(from_args.listen, default.listen);
        assert_eq!(from_args.api_key, default.api_key);
        assert_eq!(from_args.webhook_secret, default.webhook_secret);
        assert_eq!(from_args.timeout_ms, default.timeout_ms);
        assert_eq!(from_args.fault_rate, default.fault_rate);
    }

    #[test]
    fn messages_name_the_variable() {
        let bad_rate = SandboxConfig {
            fault_rate: 1.5,
            ..Default::default()
        };
        assert!(error_of(bad_rate).starts_with("SANDBOX_FAULT_RATE"));
        let nan_rate = SandboxConfig {
            fault_rate: f64::NAN,
            ..Default::default()
        };
        assert!(error_of(nan_rate).starts_with("SANDBOX_FAULT_RATE"));
        let https = SandboxConfig {
            webhook_url: Some("https://example.com/hook".into()),
            ..Default::default()
        };
        assert!(error_of(https).starts_with("SANDBOX_WEBHOOK_URL"));
        let zero_timeout = SandboxConfig {
            timeout_ms: 0,
            ..Default::default()
        };
        assert!(error_of(zero_timeout).starts_with("SANDBOX_TIMEOUT_MS"));
        let spaced_key = SandboxConfig {
            api_key: "sk live".into(),
            ..Default::default()
        };
        assert!(error_of(spaced_key).starts_with("SANDBOX_API_KEY"));
        let no_secret = SandboxConfig {
            webhook_secret: String::new(),
            ..Default::default()
        };
        assert!(error_of(no_secret).starts_with("SANDBOX_WEBHOOK_SECRET"));
    }

    #[test]
    fn empty_webhook_url_means_none() {
        let config = Args::try_parse_from(["sandbox-gateway", "--webhook-url", ""])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.webhook_url, None);
    }
}
