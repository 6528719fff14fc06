//! Usage quotas for the client mode: what a key may use over its lifetime or per window.

use std::fmt;
use std::hash::Hasher;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use siphasher::sip::SipHasher13;

use crate::engine::store::UsageLimits;
use crate::rules::key::{Global, KeyBuilder, KeyExtractor, PathParams, RequestParts};
use crate::rules::{CompiledRoute, Route};

/// A usage quota: units a key may use over its lifetime and/or per window (Clay: 50,000
/// submissions per webhook, warning at 45,000). One request uses one unit. Usage lives in
/// the store, so a shared network store keeps it across restarts.
#[derive(Clone)]
pub struct UsageQuota {
    pub(crate) name: String,
    pub(crate) limits: UsageLimits,
    pub(crate) warn_at: Option<u64>,
    pub(crate) key: Arc<dyn KeyExtractor>,
    pub(crate) routes: Vec<Route>,
}

impl fmt::Debug for UsageQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageQuota")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("warn_at", &self.warn_at)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl UsageQuota {
    /// At most `limit` units over a key's lifetime.
    pub fn lifetime(name: impl Into<String>, limit: u64) -> Self {
        UsageQuota {
            name: name.into(),
            limits: UsageLimits {
                lifetime: Some(limit),
                window: None,
            },
            warn_at: None,
            key: Arc::new(Global),
            routes: Vec::new(),
        }
    }

    /// At most `limit` units per fixed `window` (which starts at the first use).
    pub fn per_window(name: impl Into<String>, limit: u64, window: Duration) -> Self {
        UsageQuota {
            limits: UsageLimits {
                lifetime: None,
                window: Some((limit, window)),
            },
            ..Self::lifetime(name, 0)
        }
    }

    /// Adds a window limit to a lifetime quota (or replaces the window).
    pub fn window(mut self, limit: u64, window: Duration) -> Self {
        self.limits.window = Some((limit, window));
        self
    }

    /// Logs a warning (and counts it) when a key's lifetime use reaches `used`.
    pub fn warn_at(mut self, used: u64) -> Self {
        self.warn_at = Some(used);
        self
    }

    /// Whose usage is counted (default: one global counter).
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Restricts the quota to `route` (default: every request).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }
}

/// A request's standing in one usage quota after it was counted. The response's extensions
/// hold a `Vec<UsageStatus>`, one per usage quota that applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageStatus {
    /// The usage quota's name.
    pub usage_quota: String,
    /// Units used over the key's lifetime (this request included).
    pub lifetime_used: u64,
    /// Units left over the lifetime, when limited.
    pub lifetime_remaining: Option<u64>,
    /// Units left in the current window, when limited.
    pub window_remaining: Option<u64>,
    /// Whether this request crossed the warning threshold.
    pub warned: bool,
}

pub(crate) struct CompiledUsageQuota {
    pub(crate) name: String,
    pub(crate) limits: UsageLimits,
    pub(crate) warn_at: Option<u64>,
    pub(crate) key: Arc<dyn KeyExtractor>,
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) seed: SipHasher13,
    pub(crate) warnings: AtomicU64,
}

impl CompiledUsageQuota {
    pub(crate) fn compile(q: UsageQuota, k0: u64, k1: u64) -> Result<Self, String> {
        let routes = q
            .routes
            .iter()
            .map(|r| {
                r.compile()
                    .map_err(|e| format!("quota {:?}: route `{r}`: {e}", q.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seed = SipHasher13::new_with_keys(k0, k1);
        seed.write(b"usage-quota\0");
        seed.write(q.name.as_bytes());
        seed.write_u8(0xff);
        Ok(CompiledUsageQuota {
            name: q.name,
            limits: q.limits,
            warn_at: q.warn_at,
            key: q.key,
            routes,
            seed,
            warnings: AtomicU64::new(0),
        })
    }

    /// The usage key of `req`, whose canonical path is `path`, when the usage quota
    /// applies to it (`Err` says which key is missing).
    pub(crate) fn key_of<'a, B>(
        &'a self,
        req: &'a http::Request<B>,
        path: &'a str,
    ) -> Option<Result<u64, &'static str>> {
        let mut params = PathParams::default();
        let applies = self.routes.is_empty()
            || self
                .routes
                .iter()
                .any(|r| r.method_is(req.method()) && r.matches_path(path, false, &mut params));
        if !applies {
            return None;
        }
        let parts = RequestParts {
            path_params: params,
            ..RequestParts::new(req)
        };
        let mut key = KeyBuilder::new(self.seed);
        Some(
            self.key
                .extract(&parts, &mut key)
                .map(|()| key.finish())
                .map_err(|m| m.what),
        )
    }
}
