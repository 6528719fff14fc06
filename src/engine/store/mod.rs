//! Where limit state lives: the [`Store`] trait and the embedded [`MemoryStore`].
//!
//! A store decides **all limits of one request atomically**: every limit admits the request
//! and all are consumed, or none is (see [`crate::engine::gcra::decide`]). A network store (such as
//! a Redis store running one script per request) implements the same trait with an
//! asynchronous future; the in-memory store answers with a ready future.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::engine::gcra::{Check, Decision};

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod usage;

#[cfg(feature = "redis")]
pub use self::redis::{
    BlockedCacheStats, RedisFallback, RedisHealth, RedisMemoryPolicy, RedisStore, RedisStoreBuilder,
};
pub use memory::{EvictionStats, MemoryStore, MemoryStoreBuilder};
pub use usage::{Usage, UsageLimits};

/// Decides the limits of one request.
pub trait Store: Send + Sync + 'static {
    /// The future returned by [`Store::check`].
    type CheckFuture: Future<Output = Result<Decision, StoreError>> + Send + Unpin + 'static;

    /// Decides `checks` (at most [`crate::engine::gcra::MAX_CHECKS`]) atomically and consumes them
    /// if, and only if, the request is admitted.
    ///
    /// The future owns everything it needs: implementations copy `checks` if they do not
    /// decide synchronously.
    fn check(&self, checks: &[Check]) -> Self::CheckFuture;

    /// The future returned by [`Store::consume_usage`].
    type UsageFuture: Future<Output = Result<Usage, StoreError>> + Send + Unpin + 'static;

    /// Consumes `amount` units of usage quota `key` if every limit has room (atomically),
    /// or only reads it when `amount` is zero. Usage is never evicted.
    fn consume_usage(&self, key: u64, amount: u64, limits: UsageLimits) -> Self::UsageFuture;

    /// Whether several instances (processes, hosts) share this store's state, as a Redis
    /// store does. Default: `false` (the state is private to this process).
    ///
    /// Implementers of a network store return `true`. A layer hashes request keys with
    /// its [`key_secret`](crate::RateLimitLayerBuilder::key_secret), random per layer
    /// unless set; on a shared store, instances with different secrets would write
    /// different keys for the same client and each enforce its own limit (N instances, N
    /// times the limit). So building a layer on a shared store without an explicit
    /// secret fails with [`BuildError::SharedStoreWithoutKeySecret`](crate::BuildError).
    fn is_shared(&self) -> bool {
        false
    }
}

impl<S: Store> Store for Arc<S> {
    type CheckFuture = S::CheckFuture;
    type UsageFuture = S::UsageFuture;

    fn check(&self, checks: &[Check]) -> Self::CheckFuture {
        (**self).check(checks)
    }

    fn consume_usage(&self, key: u64, amount: u64, limits: UsageLimits) -> Self::UsageFuture {
        (**self).consume_usage(key, amount, limits)
    }

    fn is_shared(&self) -> bool {
        (**self).is_shared()
    }
}

/// A store could not decide (network failure, timeout, script error, …).
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and an underlying cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
