//! [`RedisStore`]: one set of limits for any number of instances (feature `redis`).
//!
//! - **One round trip per request**: every limit of a request is decided by one Lua script
//!   (EVALSHA, reloaded on NOSCRIPT), atomically — all consumed or none — on Redis' own
//!   clock (`TIME`), so instances with skewed clocks agree. The script returns the old
//!   states and the store recomputes the decision with [`crate::gcra::decide`], the same code the
//!   in-memory store runs, so both stores answer identically (to the microsecond: Redis
//!   states are kept in µs, which Lua's doubles hold exactly).
//! - **Keys**: `{prefix}:rl:<64-bit keyed hash>` (no raw key material ever reaches Redis),
//!   each with a TTL ending when it would be idle. The prefix in braces is a Redis Cluster
//!   hash tag: all keys of one layer share a slot, so a multi-limit script never spans
//!   slots (at the cost of that slot holding every rate-limit key of the prefix; use one
//!   prefix per service to spread services over slots).
//! - **Failures**: each call is bounded by a timeout (default 50 ms). On error or timeout
//!   the store either reports a [`StoreError`] (the layer's
//!   [`StoreFailure`](crate::StoreFailure) policy then admits or rejects) or, with
//!   [`RedisFallback::Memory`], decides on a local in-memory store until Redis is back.
//! - **Blocked-key cache** (on by default): a refused key set is remembered until its
//!   retry time, and requests for it meanwhile are refused locally, without a round trip.
//!   This loses nothing: capacity only returns with time, so a refusal stays valid until
//!   then whatever other instances do.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::time::Instant;

use super::{MemoryStore, Store, StoreError, Usage, UsageLimits};
use crate::gcra::{checks_key, decide, Check, Decision, GcraParams, BLOCKED};

/// What a [`RedisStore`] does when Redis fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisFallback {
    /// Report the failure; the layer's `StoreFailure` policy decides (default).
    #[default]
    Error,
    /// Decide on a local in-memory store (limits then hold per instance).
    Memory,
}

/// Configures a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    fallback: RedisFallback,
    blocked_cache: bool,
}

struct Inner {
    conn: ConnectionManager,
    gcra: Script,
    usage: Script,
    prefix: String,
    timeout: Duration,
    fallback: Option<MemoryStore>,
    blocked: Option<Mutex<HashMap<u64, (Instant, Decision)>>>,
    round_trips: AtomicU64,
    errors: AtomicU64,
}

/// A store in Redis, shared by every instance configured with the same URL, prefix and
/// layer `key_secret`. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

const MAX_BLOCKED: usize = 100_000;

impl RedisStore {
    /// Configure a store for the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "tower-throttle".to_owned(),
            timeout: Duration::from_millis(50),
            fallback: RedisFallback::Error,
            blocked_cache: true,
        }
    }

    /// Script calls made so far (one per request that reached Redis).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// The SHA-1 of the rate-limit script (what EVALSHA names), for benchmarks and
    /// diagnostics.
    pub fn script_sha(&self) -> &str {
        self.inner.gcra.get_hash()
    }

    /// The Redis key of a rate-limit state (for benchmarks and diagnostics).
    pub fn state_key(&self, key: u64) -> String {
        self.key("rl", key)
    }

    /// Redis failures and timeouts so far.
    pub fn errors(&self) -> u64 {
        self.inner.errors.load(Ordering::Relaxed)
    }

    fn key(&self, kind: &str, key: u64) -> String {
        format!("{{{}}}:{kind}:{key:016x}", self.inner.prefix)
    }
}

impl RedisStoreBuilder {
    /// Prefix of every key (default `tower-throttle`); also the Cluster hash tag.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most one call may take (default 50 ms); no request waits on Redis longer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What happens when Redis fails (default [`RedisFallback::Error`]).
    pub fn fallback(mut self, fallback: RedisFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Whether refused key sets are cached locally until their retry time (default on).
    pub fn blocked_cache(mut self, on: bool) -> Self {
        self.blocked_cache = on;
        self
    }

    /// Validates the URL and prefix and builds the store. The connection is made lazily
    /// (and remade automatically after failures), so Redis need not be up yet.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(StoreError::new(
                "the Redis key prefix must be non-empty, without braces",
            ));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::with_source("invalid Redis URL", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(10))))
            .set_response_timeout(Some(self.timeout.max(Duration::from_millis(10))))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::with_source("cannot set up the Redis connection", e))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                gcra: Script::new(include_str!("gcra.lua")),
                usage: Script::new(include_str!("usage.lua")),
                prefix: self.prefix,
                timeout: self.timeout,
                fallback: (self.fallback == RedisFallback::Memory).then(MemoryStore::new),
                blocked: self.blocked_cache.then(Mutex::default),
                round_trips: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            }),
        })
    }
}

/// Rounds a limit's parameters to whole microseconds (never more permissive).
fn to_micros(p: &GcraParams) -> (u64, u64, u64) {
    let interval = p.interval_ns.div_ceil(1000).max(1);
    let burst = (p.limit_ns / p.interval_ns.max(1)).max(1);
    (interval, interval * burst, p.block_ns.div_ceil(1000))
}

/// The future of [`RedisStore`]'s calls.
pub type RedisFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

impl RedisStore {
    fn cached_refusal(&self, set: u64) -> Option<Decision> {
        let cache = self.inner.blocked.as_ref()?;
        let now = Instant::now();
        let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (until, decision) = map.get(&set).copied()?;
        if until <= now {
            map.remove(&set);
            return None;
        }
        let left = until - now;
        let passed = decision.retry_after.saturating_sub(left);
        let mut d = decision;
        d.retry_after = left;
        d.headline.retry_after = d.headline.retry_after.saturating_sub(passed);
        d.headline.reset_after = d.headline.reset_after.saturating_sub(passed);
        Some(d)
    }

    fn remember_refusal(&self, set: u64, decision: &Decision) {
        let Some(cache) = &self.inner.blocked else {
            return;
        };
        if decision.admitted || decision.retry_after.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_BLOCKED {
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= MAX_BLOCKED {
                return;
            }
        }
        map.insert(set, (now + decision.retry_after, *decision));
    }

    async fn check_remote(&self, checks: Vec<Check>) -> Result<Decision, StoreError> {
        let micros: Vec<(u64, u64, u64)> = checks.iter().map(|c| to_micros(&c.params)).collect();
        let mut invocation = self.inner.gcra.prepare_invoke();
        for (c, (interval, limit, block)) in checks.iter().zip(&micros) {
            invocation.key(self.key("rl", c.key));
            invocation
                .arg(*interval)
                .arg(*limit)
                .arg(*block)
                .arg(u8::from(c.shadow));
        }
        let mut conn = self.inner.conn.clone();
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let reply: Vec<i64> =
            tokio::time::timeout(self.inner.timeout, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| StoreError::new("Redis call timed out"))?
                .map_err(|e| StoreError::with_source("Redis call failed", e))?;
        let (now, old) = match reply.split_first() {
            Some((now, old)) if old.len() == checks.len() => (*now, old),
            _ => return Err(StoreError::new("unexpected reply from the Redis script")),
        };
        // Recompute the script's decision in nanoseconds, with the same µs parameters.
        let ns_checks: Vec<Check> = checks
            .iter()
            .zip(&micros)
            .map(|(c, (i, l, b))| Check {
                key: c.key,
                params: GcraParams {
                    interval_ns: i * 1000,
                    limit_ns: l * 1000,
                    block_ns: b * 1000,
                },
                shadow: c.shadow,
                rule: c.rule,
            })
            .collect();
        let mut tats: Vec<u64> = old
            .iter()
            .map(|&v| {
                let ns = v.unsigned_abs().saturating_mul(1000);
                if v < 0 {
                    ns | BLOCKED
                } else {
                    ns
                }
            })
            .collect();
        let now_ns = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
        Ok(decide(now_ns, &ns_checks, &mut tats).0)
    }

    fn failed(&self, error: StoreError) -> Result<(), StoreError> {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "Redis rate-limit store failed");
        match &self.inner.fallback {
            Some(_) => Ok(()),
            None => Err(error),
        }
    }
}

impl Store for RedisStore {
    type CheckFuture = RedisFuture<Decision>;
    type UsageFuture = RedisFuture<Usage>;

    fn check(&self, checks: &[Check]) -> Self::CheckFuture {
        let store = self.clone();
        let checks = checks.to_vec();
        Box::pin(async move {
            let set = checks_key(&checks);
            if let Some(refusal) = store.cached_refusal(set) {
                return Ok(refusal);
            }
            match store.check_remote(checks.clone()).await {
                Ok(decision) => {
                    store.remember_refusal(set, &decision);
                    Ok(decision)
                }
                Err(e) => {
                    store.failed(e)?;
                    let memory = store
                        .inner
                        .fallback
                        .as_ref()
                        .ok_or_else(|| StoreError::new("no fallback"))?;
                    Ok(memory.check_now(&checks))
                }
            }
        })
    }

    fn consume_usage(&self, key: u64, amount: u64, limits: UsageLimits) -> Self::UsageFuture {
        let store = self.clone();
        Box::pin(async move {
            let mut invocation = store.inner.usage.prepare_invoke();
            let window_us = limits
                .window
                .map_or(0, |(_, w)| u64::try_from(w.as_micros()).unwrap_or(u64::MAX));
            invocation
                .key(store.key("uq", key))
                .arg(amount)
                .arg(
                    limits
                        .lifetime
                        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
                )
                .arg(
                    limits
                        .window
                        .map_or(-1, |(l, _)| i64::try_from(l).unwrap_or(i64::MAX)),
                )
                .arg(window_us);
            let mut conn = store.inner.conn.clone();
            store.inner.round_trips.fetch_add(1, Ordering::Relaxed);
            let result =
                tokio::time::timeout(store.inner.timeout, invocation.invoke_async(&mut conn)).await;
            let reply: Vec<i64> = match result {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    return Err(store.usage_failed(StoreError::with_source("Redis call failed", e)))
                }
                Err(_) => return Err(store.usage_failed(StoreError::new("Redis call timed out"))),
            };
            let [ok, l, w, s, now] = reply[..] else {
                return Err(StoreError::new(
                    "unexpected reply from the Redis usage script",
                ));
            };
            let used = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(Usage {
                admitted: ok == 1,
                lifetime_used: used(l),
                window_used: used(w),
                window_resets_after: (window_us > 0 && w > 0).then(|| {
                    Duration::from_micros(
                        used(s).saturating_add(window_us).saturating_sub(used(now)),
                    )
                }),
            })
        })
    }
}

impl RedisStore {
    /// Usage quotas have no local fallback: a lifetime counter cannot be kept per instance
    /// without over-admitting, so their failures are always reported.
    fn usage_failed(&self, error: StoreError) -> StoreError {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "Redis usage store failed");
        error
    }
}
