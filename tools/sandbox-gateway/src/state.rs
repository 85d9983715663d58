//! What every handler shares: the configuration, the in-memory books behind
//! one lock, the webhook HTTP client and the shutdown signal; and the clock.

use crate::config::SandboxConfig;
use crate::faults::FaultSettings;
use crate::idempotency::IdempotencyStore;
use crate::ledger::Ledger;
use anyhow::Context;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How long one webhook delivery attempt may take.
const WEBHOOK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Cheap to clone; all clones share one gateway.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    /// The key `Authorization: Bearer` must carry.
    pub(crate) api_key: String,
    /// HMAC secret of the webhook signature.
    pub(crate) webhook_secret: String,
    /// How long a `timeout` fault hangs.
    pub(crate) timeout: Duration,
    /// Webhook delivery client (plain HTTP, no TLS).
    pub(crate) http: reqwest::Client,
    /// Everything mutable. A `std::sync::Mutex`, not a Tokio one: every
    /// critical section is a few map operations and no `.await` happens
    /// while it is held (handlers copy what they need out, then await).
    /// One lock for all of it keeps "charge, store the reply" atomic
    /// without any lock ordering to get wrong.
    books: Mutex<Books>,
    /// Turns `true` when the gateway stops; hung faults and webhook
    /// retries end early instead of outliving the server.
    shutdown: watch::Receiver<bool>,
}

/// The gateway's mutable memory.
pub(crate) struct Books {
    pub(crate) ledger: Ledger,
    pub(crate) idempotency: IdempotencyStore,
    pub(crate) faults: FaultSettings,
    /// Where events go; `None` sends none.
    pub(crate) webhook_url: Option<String>,
    /// References voided by the caller: a charge with one of them is
    /// refused without taking money (see `intents::void`).
    pub(crate) voided: std::collections::HashSet<String>,
    /// References whose charge is executing right now.
    pub(crate) charging: std::collections::HashSet<String>,
}

impl AppState {
    /// State for a validated `config`.
    pub(crate) fn new(
        config: &SandboxConfig,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(WEBHOOK_ATTEMPT_TIMEOUT)
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Self(Arc::new(Inner {
            api_key: config.api_key.clone(),
            webhook_secret: config.webhook_secret.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            http,
            books: Mutex::new(Books {
                ledger: Ledger::default(),
                idempotency: IdempotencyStore::default(),
                faults: FaultSettings::new(config.fault_rate, config.seed),
                webhook_url: config.webhook_url.clone(),
                voided: Default::default(),
                charging: Default::default(),
            }),
            shutdown,
        })))
    }

    /// Locks the books. Never hold the guard across an `.await`.
    pub(crate) fn books(&self) -> MutexGuard<'_, Books> {
        // A panic inside a critical section cannot leave the books half
        // written in a way that matters more than stopping the sandbox
        // would, so a poisoned lock is used as is.
        self.0.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes when the gateway is stopping (or its handle was dropped).
    pub(crate) async fn shutting_down(&self) {
        let mut rx = self.0.shutdown.clone();
        // An error means the sender is gone, which also means "stop".
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Seconds since the Unix epoch (the `created` fields, webhook `t=`).
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
