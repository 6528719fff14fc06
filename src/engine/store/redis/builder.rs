//! [`RedisStoreBuilder`]: validates a [`RedisStore`]'s configuration and builds it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::blocked::BlockedCache;
use super::health::Health;
use super::memory_policy::PolicyWatch;
use super::{Inner, RedisFallback, RedisStore};
use crate::engine::store::{MemoryStore, StoreError};

/// Configures a [`RedisStore`]; [`build`](Self::build) validates it.
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    fallback: RedisFallback,
    blocked_cache: Option<usize>,
    probe_interval: Duration,
    recovery_window: Duration,
}

/// Default capacity of the blocked-key cache.
const BLOCKED_CAPACITY: usize = 100_000;

impl RedisStore {
    /// Configure a store for the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "tower-throttle".to_owned(),
            timeout: Duration::from_millis(50),
            fallback: RedisFallback::default(),
            blocked_cache: Some(BLOCKED_CAPACITY),
            probe_interval: Duration::from_millis(250),
            recovery_window: Duration::from_secs(10),
        }
    }
}

impl RedisStoreBuilder {
    /// Prefix of every key (default `tower-throttle`); also the Cluster hash tag.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most one request may wait on Redis (default 50 ms), a retry on a fresh
    /// connection included; past it, the request is decided without Redis.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What happens when Redis fails or times out (default [`RedisFallback::Memory`]).
    pub fn fallback(mut self, fallback: RedisFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Whether refused key sets are cached locally until their retry time (default on,
    /// 100,000 entries).
    pub fn blocked_cache(mut self, on: bool) -> Self {
        self.blocked_cache = on.then_some(BLOCKED_CAPACITY);
        self
    }

    /// The blocked-key cache's capacity, rounded up to whole buckets of 8 (default
    /// 100,000; 0 turns the cache off). A full cache replaces, in the new entry's bucket,
    /// the entry that expires first: every lookup and insert stays O(1).
    pub fn blocked_cache_capacity(mut self, entries: usize) -> Self {
        self.blocked_cache = (entries > 0).then_some(entries);
        self
    }

    /// During an outage, how often one request tries Redis again (default 250 ms); the
    /// others are decided without waiting on it.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// After an outage, how long Redis must answer without a failure before it is
    /// declared back (default 10 s). Requests go to Redis again from its first success;
    /// a failure within the window resumes the outage without logging a new one (counted
    /// in [`RedisHealth::flaps`](super::RedisHealth::flaps)). So a flapping Redis (at its
    /// memory cap, refusing some writes with `OOM`) logs at most one "lost" and one "back"
    /// line per window. `Duration::ZERO`: back at the first success.
    pub fn recovery_window(mut self, window: Duration) -> Self {
        self.recovery_window = window;
        self
    }

    /// Validates the URL, prefix and timeouts and builds the store. The connection is
    /// made lazily (and remade automatically after failures), so Redis need not be up
    /// yet; the store must be built inside a Tokio runtime (it spawns its connection's
    /// tasks there).
    pub fn build(self) -> Result<RedisStore, StoreError> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(StoreError::new(
                "the Redis key prefix must be non-empty, without braces",
            ));
        }
        if self.timeout.is_zero() || self.probe_interval.is_zero() {
            return Err(StoreError::new(
                "the Redis timeout and probe interval must be above zero",
            ));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::with_source("invalid Redis URL", e))?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::new(
                "a RedisStore must be built inside a Tokio runtime",
            ));
        }
        let io_timeout = Some(self.timeout.max(Duration::from_millis(10)));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(io_timeout)
            .set_response_timeout(io_timeout)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::with_source("cannot set up the Redis connection", e))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                gcra: Script::new(include_str!("gcra.lua")),
                usage: Script::new(include_str!("usage.lua")),
                prefix: self.prefix.clone(),
                timeout: self.timeout,
                fallback: (self.fallback == RedisFallback::Memory).then(MemoryStore::new),
                blocked: self.blocked_cache.map(BlockedCache::new),
                round_trips: AtomicU64::new(0),
                health: Health::new(
                    self.prefix.clone(),
                    self.probe_interval,
                    self.recovery_window,
                ),
                memory_policy: PolicyWatch::new(),
            }),
        })
    }
}
