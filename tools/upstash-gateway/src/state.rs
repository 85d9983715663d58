//! What every handler shares: the token, the Redis backend and the
//! request counter.

use crate::backend::Backend;
use crate::config::GatewayConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub(crate) struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    token: String,
    backend: Backend,
    /// Authenticated HTTP requests to the command endpoints.
    requests_served: AtomicU64,
}

impl AppState {
    pub(crate) fn new(config: &GatewayConfig) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                token: config.token.clone(),
                backend: Backend::new(config.redis_client()?),
                requests_served: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Compares in time independent of where the first difference is, so
    /// the token cannot be guessed byte by byte from response times.
    pub(crate) fn token_matches(&self, presented: &str) -> bool {
        let expected = self.inner.token.as_bytes();
        let presented = presented.as_bytes();
        expected.len() == presented.len()
            && expected
                .iter()
                .zip(presented)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    pub(crate) fn count_request(&self) {
        self.inner.requests_served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn requests_served(&self) -> u64 {
        self.inner.requests_served.load(Ordering::Relaxed)
    }
}
