//! [`PacingLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::adaptive::{AdaptiveRates, Aimd};
use super::queue::KeyedSemaphores;
use super::quota::{CompiledQuota, UsageQuota};
use super::service::Pacing;
use crate::engine::store::MemoryStore;
use crate::rate_limit::layer::Shared;
use crate::rate_limit::{BuildError, RateLimitHandle, RateLimitLayer};

/// State of a pacing layer shared by every clone and service.
pub(crate) struct PacingShared {
    pub(crate) rules: Arc<Shared>,
    pub(crate) max_queue_wait: Duration,
    pub(crate) turns: Arc<KeyedSemaphores>,
    pub(crate) permits: Arc<KeyedSemaphores>,
    pub(crate) quotas: Box<[CompiledQuota]>,
    pub(crate) adaptive: Option<AdaptiveRates>,
}

/// The client mode of [`RateLimitLayer`]: requests wait for their turn instead of being
/// refused. See the [module docs](super).
pub struct PacingLayer<St = MemoryStore> {
    pub(crate) shared: Arc<PacingShared>,
    pub(crate) store: St,
}

impl<St: Clone> Clone for PacingLayer<St> {
    fn clone(&self) -> Self {
        PacingLayer {
            shared: Arc::clone(&self.shared),
            store: self.store.clone(),
        }
    }
}

impl<St> fmt::Debug for PacingLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacingLayer")
            .field("max_queue_wait", &self.shared.max_queue_wait)
            .finish_non_exhaustive()
    }
}

impl<St> PacingLayer<St> {
    /// Per-rule counters: `admitted` requests, `limited` = requests that had to wait.
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle {
            stats: Arc::clone(&self.shared.rules.stats),
        }
    }

    /// Warnings logged so far by the quota called `name`.
    pub fn quota_warnings(&self, name: &str) -> Option<u64> {
        self.shared
            .quotas
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.warnings.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The adaptive rate of an endpoint (authority, or `Host`, + path), in requests per second, when
    /// adaptive pacing is on and the endpoint has been used.
    pub fn adaptive_rate(&self, endpoint: &str) -> Option<f64> {
        self.shared.adaptive.as_ref().and_then(|a| a.rate(endpoint))
    }

    /// The layer's store.
    pub fn store(&self) -> &St {
        &self.store
    }
}

impl<S, St: Clone> Layer<S> for PacingLayer<St> {
    type Service = Pacing<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Pacing {
            inner,
            shared: Arc::clone(&self.shared),
            store: self.store.clone(),
        }
    }
}

/// Configures a [`PacingLayer`]; made by [`RateLimitLayer::pacing`].
pub struct PacingLayerBuilder<St = MemoryStore> {
    layer: RateLimitLayer<St>,
    max_queue_wait: Duration,
    quotas: Vec<UsageQuota>,
    adaptive: Option<Aimd>,
}

impl<St> fmt::Debug for PacingLayerBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacingLayerBuilder")
            .field("max_queue_wait", &self.max_queue_wait)
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

impl<St> RateLimitLayer<St> {
    /// The client mode of these rules: wait instead of refusing.
    pub fn pacing(self) -> PacingLayerBuilder<St> {
        PacingLayerBuilder {
            layer: self,
            max_queue_wait: Duration::from_secs(60),
            quotas: Vec::new(),
            adaptive: None,
        }
    }
}

impl<St> PacingLayerBuilder<St> {
    /// The longest a request waits before it is sent (default 60 s); beyond it the request
    /// fails with [`PacingError`](super::PacingError) unsent.
    pub fn max_queue_wait(mut self, max: Duration) -> Self {
        self.max_queue_wait = max;
        self
    }

    /// Adds a usage quota.
    pub fn quota(mut self, quota: UsageQuota) -> Self {
        self.quotas.push(quota);
        self
    }

    /// Adaptive pacing per endpoint (authority, or `Host`, + path: the monitor's default
    /// key) on top of the rules: follows the
    /// server's rate-limit headers and backs off on 429 (see [`Aimd`]). Off by default.
    pub fn adaptive(mut self, aimd: Aimd) -> Self {
        self.adaptive = Some(aimd);
        self
    }

    /// Validates the quotas and builds the layer.
    pub fn build(self) -> Result<PacingLayer<St>, BuildError> {
        // The rules' key secret: with a shared store, every instance counts the same keys.
        let (k0, k1) = self.layer.shared.key_secret;
        let mut names: Vec<&str> = Vec::new();
        for q in &self.quotas {
            if names.contains(&q.name.as_str()) {
                return Err(BuildError::DuplicateRule(q.name.clone()));
            }
            names.push(&q.name);
        }
        let quotas = self
            .quotas
            .into_iter()
            .map(|q| {
                let name = q.name.clone();
                CompiledQuota::compile(q, k0, k1).map_err(|reason| BuildError::BadTemplate {
                    rule: name,
                    route: String::new(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PacingLayer {
            shared: Arc::new(PacingShared {
                rules: self.layer.shared,
                max_queue_wait: self.max_queue_wait,
                turns: Arc::default(),
                permits: Arc::default(),
                quotas: quotas.into_boxed_slice(),
                adaptive: self.adaptive.map(AdaptiveRates::new),
            }),
            store: self.layer.store,
        })
    }
}
