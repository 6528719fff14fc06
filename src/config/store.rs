//! [`ConfiguredStore`]: the store a config file chose, as one type.

use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::spec::StoreConfig;
use super::ConfigError;
use crate::engine::clock::Timestamp;
use crate::engine::gcra::{Check, Decision};
use crate::engine::store::{MemoryStore, Store, StoreError, Usage, UsageLimits};

/// The store named by a config file's `[store]` section: a [`MemoryStore`] or (feature
/// `redis`) a `RedisStore`. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConfiguredStore {
    /// `[store.memory]` (the default).
    Memory(MemoryStore),
    /// `[store.redis]`.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(crate::store::RedisStore),
}

/// The future of a [`ConfiguredStore`]'s decisions.
pub struct StoreFuture<T>(Inner<T>);

enum Inner<T> {
    Memory(Ready<Result<T, StoreError>>),
    #[cfg(feature = "redis")]
    Redis(crate::store::redis::RedisFuture<T>),
}

impl<T> std::fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreFuture")
    }
}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Inner::Memory(f) => Pin::new(f).poll(cx),
            #[cfg(feature = "redis")]
            Inner::Redis(f) => f.as_mut().poll(cx),
        }
    }
}

impl Store for ConfiguredStore {
    type CheckFuture = StoreFuture<Decision>;
    type UsageFuture = StoreFuture<Usage>;

    fn check(&self, now: Timestamp, checks: &[Check]) -> Self::CheckFuture {
        StoreFuture(match self {
            ConfiguredStore::Memory(s) => Inner::Memory(s.check(now, checks)),
            #[cfg(feature = "redis")]
            ConfiguredStore::Redis(s) => Inner::Redis(s.check(now, checks)),
        })
    }

    fn consume_usage(
        &self,
        now: Timestamp,
        key: u64,
        amount: u64,
        limits: UsageLimits,
    ) -> Self::UsageFuture {
        StoreFuture(match self {
            ConfiguredStore::Memory(s) => Inner::Memory(s.consume_usage(now, key, amount, limits)),
            #[cfg(feature = "redis")]
            ConfiguredStore::Redis(s) => Inner::Redis(s.consume_usage(now, key, amount, limits)),
        })
    }

    fn is_shared(&self) -> bool {
        match self {
            ConfiguredStore::Memory(s) => s.is_shared(),
            #[cfg(feature = "redis")]
            ConfiguredStore::Redis(s) => s.is_shared(),
        }
    }
}

/// The in-memory store of `[store.memory]` (or the default one for another store).
pub(super) fn memory(config: &StoreConfig) -> Result<MemoryStore, ConfigError> {
    let mut builder = MemoryStore::builder();
    #[allow(irrefutable_let_patterns)]
    if let StoreConfig::Memory(m) = config {
        if let Some(n) = m.max_keys {
            builder = builder.max_keys(n);
        }
        if let Some(n) = m.shards {
            builder = builder.shards(n);
        }
        if let Some(n) = m.max_usage_keys {
            builder = builder.max_usage_keys(n);
        }
    }
    builder
        .build()
        .map_err(|e| ConfigError::new(e.to_string()).field("store.memory"))
}

/// The store `config` names. A Redis store must be built inside a Tokio runtime.
pub(super) fn build(config: &StoreConfig) -> Result<ConfiguredStore, ConfigError> {
    match config {
        StoreConfig::Memory(_) => memory(config).map(ConfiguredStore::Memory),
        #[cfg(feature = "redis")]
        StoreConfig::Redis(r) => {
            use super::spec::RedisFallbackConfig;
            use crate::store::{RedisFallback, RedisStore};
            let mut b = RedisStore::builder(r.url.clone());
            if let Some(p) = &r.prefix {
                b = b.prefix(p.clone());
            }
            if let Some(t) = r.timeout {
                b = b.timeout(t);
            }
            if let Some(f) = r.fallback {
                b = b.fallback(match f {
                    RedisFallbackConfig::Memory => RedisFallback::Memory,
                    RedisFallbackConfig::Error => RedisFallback::Error,
                });
            }
            if let Some(n) = r.blocked_cache_capacity {
                b = b.blocked_cache_capacity(n);
            }
            if let Some(t) = r.probe_interval {
                b = b.probe_interval(t);
            }
            if let Some(t) = r.recovery_window {
                b = b.recovery_window(t);
            }
            b.build()
                .map(ConfiguredStore::Redis)
                .map_err(|e| ConfigError::new(e.to_string()).field("store.redis"))
        }
    }
}
