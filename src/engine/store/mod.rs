//! Where limit state lives: the [`Store`] trait, the embedded [`MemoryStore`] and (feature
//! `redis`) the shared `RedisStore`.
//!
//! A store decides **all limits of one request atomically**: every limit admits the request
//! and all are consumed, or none is (see [`gcra::decide`](crate::engine::gcra::decide)). The caller reads its clock once
//! per request and passes that arrival time ([`Timestamp`]) with the checks; the in-memory
//! store answers with a ready future, a network store with an asynchronous one.
//!
//! # Checking limits without tower
//!
//! The engine needs no layer: build [`Check`]s from [`Quota`](crate::Quota)s, read a
//! [`Clock`](crate::clock::Clock) and ask a store.
//!
//! ```
//! use std::time::Duration;
//! use tower_throttle::clock::{Clock, ManualClock};
//! use tower_throttle::gcra::{Check, GcraParams};
//! use tower_throttle::store::MemoryStore;
//! use tower_throttle::Quota;
//!
//! let store = MemoryStore::new();
//! let clock = ManualClock::new(); // `TokioClock::new()` in a service
//! let per_user = GcraParams::new(&Quota::new(2, Duration::from_secs(1))?, Duration::ZERO);
//! let user_42 = Check::new(42, per_user);
//! assert!(store.check_at(clock.now(), &[user_42]).admitted);
//! assert!(store.check_at(clock.now(), &[user_42]).admitted);
//! let refused = store.check_at(clock.now(), &[user_42]);
//! assert!(!refused.admitted);
//! assert_eq!(refused.retry_after, Duration::from_millis(500));
//! clock.advance(refused.retry_after);
//! assert!(store.check_at(clock.now(), &[user_42]).admitted);
//! # Ok::<(), tower_throttle::QuotaError>(())
//! ```
//!
//! # Writing a store
//!
//! A store for another database (Postgres, DynamoDB, memcached, …) implements [`Store`]
//! with the recipe the Redis store follows. The decision itself is never written again:
//! [`gcra::decide`](crate::engine::gcra::decide) is the one implementation of the algorithm, and a store only keeps
//! its states.
//!
//! 1. **Read** the state word of every check's [`Check::key`] (a `u64`; 0 for a key with
//!    no state). Keys are keyed 64-bit hashes: no request data reaches the store.
//! 2. **Decide** with `gcra::decide(now, checks, &mut states)`. It returns the
//!    [`Decision`] and a mask of the states that changed.
//! 3. **Write back** the changed states (bit `i` of the mask: `states[i]`), and nothing
//!    else: a refused request changes no state except the one a block period starts.
//!
//! The rules a store must keep:
//!
//! - **Atomicity.** Steps 1–3 for one request are one atomic unit: no other request may
//!   read or write these keys in between (a transaction with row locks or serializable
//!   isolation, a compare-and-swap loop over all the keys, a server-side script). Without
//!   it, two instances admit the same last unit. Several checks may name the same key.
//! - **States are opaque.** Store the `u64` words exactly as `decide` leaves them (they
//!   carry a flag bit; a signed column holds them as `i64` bit patterns). A key may be
//!   dropped or given a TTL once [`gcra::idle_at`](crate::engine::gcra::idle_at) of its state has passed: an idle key
//!   decides exactly like a missing one, so expiry never loosens a limit.
//! - **Time.** Decide at the `now` passed in, which is on the caller's clock. A store
//!   shared by several hosts should decide on its own clock instead (Redis reads `TIME`),
//!   so that hosts with skewed clocks agree; then every timestamp it stores is on that
//!   clock and `now` is unused. Never mix the two clocks in one store.
//! - **Rounding.** A store that keeps coarser units than nanoseconds rounds each check's
//!   parameters with [`GcraParams::rounded_up_to`](crate::engine::gcra::GcraParams::rounded_up_to) (never more permissive) and decides
//!   on those, with timestamps and states in the same unit (scaled back to nanoseconds
//!   for `decide`), as the Redis store does with microseconds.
//! - **Failures** are a [`StoreError`]; the layer's
//!   [`StoreFailure`](crate::StoreFailure) policy then admits or refuses the request.
//! - **Sharing.** A store whose state several processes share returns `true` from
//!   [`Store::is_shared`].
//! - **Usage quotas** ([`Store::consume_usage`]) are plain counters, never evicted: a
//!   lifetime count and a count per fixed window starting at the key's first use in it.
//!
//! A store's future owns what it needs (copy the checks if it does not decide at once).
//! With the `test-util` feature, `store::conformance` checks a store against `decide`
//! and these rules in one line of a test (`Harness::new(make_store, Time::Passed).run_all()`).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::engine::clock::Timestamp;
use crate::engine::gcra::{Check, Decision};

#[cfg(feature = "test-util")]
pub mod conformance;
mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod usage;

#[cfg(feature = "redis")]
pub use self::redis::{
    BlockedCacheStats, RedisFallback, RedisHealth, RedisMemoryPolicy, RedisStore, RedisStoreBuilder,
};
pub use memory::{
    EvictionStats, MemoryStore, MemoryStoreBuilder, MemoryStoreError, DEFAULT_MAX_KEYS,
};
pub use usage::{Usage, UsageLimits};

/// Decides the limits of one request. See the [module docs](self) for how to write one.
pub trait Store: Send + Sync + 'static {
    /// The future returned by [`Store::check`].
    type CheckFuture: Future<Output = Result<Decision, StoreError>> + Send + Unpin + 'static;

    /// Decides `checks` (at most [`gcra::MAX_CHECKS`](crate::engine::gcra::MAX_CHECKS)) at `now` atomically and consumes
    /// them if, and only if, the request is admitted: the result of [`gcra::decide`](crate::engine::gcra::decide) on
    /// the keys' current states.
    ///
    /// `now` is the request's arrival on the caller's clock; a store shared by several
    /// hosts may decide on its own clock instead (see the [module docs](self)).
    fn check(&self, now: Timestamp, checks: &[Check]) -> Self::CheckFuture;

    /// The future returned by [`Store::consume_usage`].
    type UsageFuture: Future<Output = Result<Usage, StoreError>> + Send + Unpin + 'static;

    /// Consumes `amount` units of usage quota `key` at `now` if every limit has room
    /// (atomically), or only reads it when `amount` is zero. Usage is never evicted.
    fn consume_usage(
        &self,
        now: Timestamp,
        key: u64,
        amount: u64,
        limits: UsageLimits,
    ) -> Self::UsageFuture;

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

    fn check(&self, now: Timestamp, checks: &[Check]) -> Self::CheckFuture {
        (**self).check(now, checks)
    }

    fn consume_usage(
        &self,
        now: Timestamp,
        key: u64,
        amount: u64,
        limits: UsageLimits,
    ) -> Self::UsageFuture {
        (**self).consume_usage(now, key, amount, limits)
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
