//! [`PacingLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::adaptive::{AdaptiveRates, Aimd};
use super::pacer::Pacer;
use super::service::Pacing;
use super::usage::{CompiledUsageQuota, UsageQuota};
use crate::engine::store::MemoryStore;
use crate::rate_limit::{BuildError, RateLimitHandle, RateLimitLayer};

/// The client mode of [`RateLimitLayer`]: requests wait for their turn instead of being
/// refused. See the [module docs](super).
pub struct PacingLayer<St = MemoryStore> {
    pub(crate) pacer: Arc<Pacer>,
    pub(crate) store: St,
}

impl<St: Clone> Clone for PacingLayer<St> {
    fn clone(&self) -> Self {
        PacingLayer {
            pacer: Arc::clone(&self.pacer),
            store: self.store.clone(),
        }
    }
}

impl<St> fmt::Debug for PacingLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacingLayer")
            .field("max_queue_wait", &self.pacer.max_queue_wait)
            .finish_non_exhaustive()
    }
}

impl<St> PacingLayer<St> {
    /// Per-rule counters: `admitted` requests, `limited` = requests that had to wait.
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::fixed(Arc::clone(&self.pacer.rules.stats))
    }

    /// Warnings logged so far by the usage quota called `name`.
    pub fn usage_warnings(&self, name: &str) -> Option<u64> {
        self.pacer
            .usage_quotas
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.warnings.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The adaptive rate of an endpoint (authority, or `Host`, + path), in requests per second, when
    /// adaptive pacing is on and the endpoint has been used.
    pub fn adaptive_rate(&self, endpoint: &str) -> Option<f64> {
        self.pacer.adaptive.as_ref().and_then(|a| a.rate(endpoint))
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
            pacer: Arc::clone(&self.pacer),
            store: self.store.clone(),
        }
    }
}

/// Configures a [`PacingLayer`]; made by [`RateLimitLayer::pacing`].
pub struct PacingLayerBuilder<St = MemoryStore> {
    layer: RateLimitLayer<St>,
    max_queue_wait: Duration,
    usage_quotas: Vec<UsageQuota>,
    adaptive: Option<Aimd>,
}

impl<St> fmt::Debug for PacingLayerBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacingLayerBuilder")
            .field("max_queue_wait", &self.max_queue_wait)
            .field("usage_quotas", &self.usage_quotas)
            .finish_non_exhaustive()
    }
}

impl<St> RateLimitLayer<St> {
    /// The client mode of these rules: wait instead of refusing.
    pub fn pacing(self) -> PacingLayerBuilder<St> {
        PacingLayerBuilder {
            layer: self,
            max_queue_wait: Duration::from_secs(60),
            usage_quotas: Vec::new(),
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
    pub fn usage_quota(mut self, quota: UsageQuota) -> Self {
        self.usage_quotas.push(quota);
        self
    }

    /// Adaptive pacing per endpoint (authority, or `Host`, + path: the monitor's default
    /// key) on top of the rules: follows the
    /// server's rate-limit headers and backs off on a refusal (a 429, or a gRPC
    /// `RESOURCE_EXHAUSTED` in the headers: see [`Aimd`]). Off by default.
    pub fn adaptive(mut self, aimd: Aimd) -> Self {
        self.adaptive = Some(aimd);
        self
    }

    /// Validates the usage quotas and builds the layer.
    pub fn build(self) -> Result<PacingLayer<St>, BuildError> {
        let mut names: Vec<&str> = Vec::new();
        for q in &self.usage_quotas {
            if names.contains(&q.name.as_str()) {
                return Err(BuildError::DuplicateRule(q.name.clone()));
            }
            names.push(&q.name);
        }
        let RateLimitLayer { limiter, store, .. } = self.layer;
        // The rules' key secret: with a shared store, every instance counts the same keys.
        let (k0, k1) = limiter.rules.key_secret;
        let usage_quotas = self
            .usage_quotas
            .into_iter()
            .map(|q| {
                let name = q.name.clone();
                CompiledUsageQuota::compile(q, k0, k1).map_err(|reason| BuildError::BadTemplate {
                    rule: name,
                    route: String::new(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PacingLayer {
            pacer: Arc::new(Pacer {
                rules: limiter.rules.clone(),
                max_queue_wait: self.max_queue_wait,
                turns: Arc::default(),
                permits: Arc::default(),
                usage_quotas: usage_quotas.into_boxed_slice(),
                adaptive: self.adaptive.map(AdaptiveRates::new),
            }),
            store,
        })
    }
}
