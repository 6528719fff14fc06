//! [`RedisStore`]: one set of limits for any number of instances (feature `redis`).
//!
//! - **One round trip per request**: every limit of a request is decided by one Lua script
//!   (EVALSHA, reloaded on NOSCRIPT), atomically — all consumed or none — on Redis' own
//!   clock (`TIME`), so instances with skewed clocks agree. The script returns the old
//!   states and the store recomputes the decision with [`crate::engine::gcra::decide`], the same code the
//!   in-memory store runs, so both stores answer identically (to the microsecond: Redis
//!   states are kept in µs, which Lua's doubles hold exactly).
//! - **Keys**: `{prefix}:rl:<64-bit keyed hash>` (no raw key material ever reaches Redis),
//!   each with a TTL ending when it would be idle. The prefix in braces is a Redis Cluster
//!   hash tag: all keys of one layer share a slot, so a multi-limit script never spans
//!   slots (at the cost of that slot holding every rate-limit key of the prefix; use one
//!   prefix per service to spread services over slots).
//! - **Shared keys**: the store [is shared](Store::is_shared), so a
//!   [`RateLimitLayer`](crate::RateLimitLayer) on it must be given a
//!   [`key_secret`](crate::RateLimitLayerBuilder::key_secret), the same on every instance
//!   (building without one is [`BuildError::SharedStoreWithoutKeySecret`](crate::BuildError)):
//!   instances with different secrets would write different keys for the same client, and
//!   each would enforce its own limit.
//! - **Stale connections**: a call that fails because the pooled connection died while
//!   idle (Redis restarted, `CLIENT KILL`, a proxy's idle timeout) is retried once on a
//!   fresh connection within the same timeout, so the request is still counted in Redis.
//!   (If the dead connection had delivered the call before dying, the retry counts the
//!   request twice: the safe side.)
//! - **Failures**: each request waits on Redis at most the timeout (default 50 ms). On
//!   error or timeout Redis is marked lost and, by default ([`RedisFallback::Memory`]),
//!   requests are decided by a local in-memory store (limits then hold per instance)
//!   until Redis answers again; [`RedisFallback::Error`] reports the failure instead and
//!   the layer's [`StoreFailure`](crate::StoreFailure) policy admits (fail open) or
//!   rejects (fail closed). During an outage requests do not wait on Redis: one per
//!   [probe interval](RedisStoreBuilder::probe_interval) tries it. Each transition (lost,
//!   back) is logged once, with counts; Redis is declared back only after answering
//!   without failure for the [recovery window](RedisStoreBuilder::recovery_window)
//!   (default 10 s), so a flapping Redis logs one outage, not one per probe
//!   ([`RedisHealth::flaps`] counts the failures meanwhile). [`RedisStore::health`] reads
//!   the counters.
//! - **Blocked-key cache** (on by default): a refused key set is remembered until its
//!   retry time, and requests for it meanwhile are refused locally, without a round trip.
//!   This loses nothing: capacity only returns with time, so a refusal stays valid until
//!   then whatever other instances do. The cache is bounded, sharded and O(1) per
//!   operation at any fill level ([`RedisStore::blocked_cache_stats`]).
//!
//! # Operating Redis for rate limits
//!
//! - **`maxmemory-policy noeviction`.** An evicted rate-limit key is a reset limit: the
//!   client starts over with a full quota. Every key has a TTL, so the `volatile-*`
//!   policies evict them as readily as the `allkeys-*` ones, and a flood of new keys (one
//!   per random credential, below) evicts other clients' exhausted keys. With
//!   `noeviction`, Redis at its cap refuses writes (`OOM`): the store treats that as an
//!   outage and falls back ([`RedisFallback`]), so limits still hold, per instance. The
//!   store reads `maxmemory` and `maxmemory-policy` at its first success and whenever
//!   Redis answers again ([`RedisStore::memory_policy`]) and logs one warning when Redis
//!   [may evict its keys](RedisMemoryPolicy::may_evict_keys); where `CONFIG` is refused
//!   (managed Redis often does), it logs once, at `info`, that it could not check.
//! - **Sizing.** One rate-limit key (`{prefix}:rl:<16 hex digits>`, an integer value,
//!   a TTL) is 88 bytes by `MEMORY USAGE` and about 150 bytes of `used_memory` (key and
//!   expiry tables included; measured on Redis 7.0 with 100,000 keys). A key lives at most
//!   its limit's window (plus any block period): size `maxmemory` for the distinct keys
//!   one window can create, e.g. 1 million keys ≈ 150 MB, with headroom.
//! - **A per-IP rule before rules keyed on unauthenticated credentials.** A rule keyed
//!   on a bearer token or API key creates one Redis key per distinct value, and an
//!   attacker can send a new random token with every request. Cover such routes with a
//!   rule keyed on the client IP, listed first: all limits of a request are decided together and a refused request writes no key, so one IP
//!   creates at most its IP quota of token keys per window instead of one per request.
//!

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{FromRedisValue, Script, ScriptInvocation};
use tokio::time::Instant;

use super::{MemoryStore, Store, StoreError, Usage, UsageLimits};
use crate::engine::clock::Timestamp;
use crate::engine::gcra::{checks_key, decide, Check, Decision, BLOCKED};

mod blocked;
mod builder;
mod health;
mod memory_policy;

pub use blocked::BlockedCacheStats;
pub use builder::RedisStoreBuilder;
pub use health::RedisHealth;
pub use memory_policy::RedisMemoryPolicy;

use blocked::BlockedCache;
use health::{Health, Route};
use memory_policy::PolicyWatch;

/// What a [`RedisStore`] does while Redis fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisFallback {
    /// Decide on a local in-memory store: limits then hold per instance (N instances
    /// admit up to N times a limit), never unlimited. The default.
    #[default]
    Memory,
    /// Report the failure; the layer's [`StoreFailure`](crate::StoreFailure) policy
    /// decides: [`Admit`](crate::StoreFailure::Admit) (fail open, unlimited while Redis is
    /// down) or [`Reject`](crate::StoreFailure::Reject) (fail closed).
    Error,
}

impl RedisFallback {
    fn name(self) -> &'static str {
        match self {
            RedisFallback::Memory => "in-memory store (limits per instance)",
            RedisFallback::Error => "the layer's StoreFailure policy",
        }
    }
}

struct Inner {
    conn: ConnectionManager,
    gcra: Script,
    usage: Script,
    prefix: String,
    timeout: Duration,
    fallback: Option<MemoryStore>,
    blocked: Option<BlockedCache>,
    round_trips: AtomicU64,
    health: Health,
    memory_policy: PolicyWatch,
}

/// A store in Redis, shared by every instance configured with the same URL, prefix and
/// layer `key_secret`. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_throttle::store::RedisStore;
/// use tower_throttle::{Quota, RateLimitLayer, Rule};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/").prefix("api").build()?;
/// // The same secret on every instance (from configuration, never from source code).
/// let secret: [u8; 16] = *b"from-your-config";
/// let layer = RateLimitLayer::builder()
///     .rule(Rule::new("global", Quota::per_second(100)?))
///     .key_secret(secret)
///     .store(store)
///     .build()?;
/// # Ok(()) }
/// ```
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

impl RedisStore {
    /// Script calls made so far (one per request that reached Redis, plus retries on a
    /// fresh connection).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Redis failures and timeouts so far.
    pub fn errors(&self) -> u64 {
        self.inner.health.snapshot().errors
    }

    /// Outages, recoveries and the requests decided without Redis so far.
    pub fn health(&self) -> RedisHealth {
        self.inner.health.snapshot()
    }

    /// Redis' eviction settings as last read (at the first call that reached Redis, and
    /// again whenever Redis answers after an outage or a reconnection), in the
    /// background: [`NotChecked`](RedisMemoryPolicy::NotChecked) until that read ends.
    pub fn memory_policy(&self) -> RedisMemoryPolicy {
        self.inner.memory_policy.found()
    }

    /// Reads Redis' eviction settings now (`CONFIG GET maxmemory`, `CONFIG GET
    /// maxmemory-policy`; [`Unknown`](RedisMemoryPolicy::Unknown) if Redis refuses them or
    /// does not answer within a second), records them for
    /// [`memory_policy`](Self::memory_policy) and logs them if they changed: a `warn` when
    /// Redis [may evict rate-limit keys](RedisMemoryPolicy::may_evict_keys), an `info`
    /// when they could not be checked.
    pub async fn check_memory_policy(&self) -> RedisMemoryPolicy {
        let timeout = self.inner.timeout.max(Duration::from_secs(1));
        let inner = &self.inner;
        inner
            .memory_policy
            .read(&inner.conn, timeout, &inner.prefix)
            .await
    }

    /// Records a successful call that started at `started`, and reads the eviction
    /// settings in the background when due.
    fn succeeded(&self, started: u64) {
        if self.inner.health.succeeded(started) {
            self.inner.memory_policy.mark_due();
        }
        if self.inner.memory_policy.take_due() {
            let store = self.clone();
            tokio::spawn(async move { store.check_memory_policy().await });
        }
    }

    /// The blocked-key cache's counters (`None` when the cache is off).
    pub fn blocked_cache_stats(&self) -> Option<BlockedCacheStats> {
        self.inner.blocked.as_ref().map(BlockedCache::stats)
    }

    fn key(&self, kind: &str, key: u64) -> String {
        format!("{{{}}}:{kind}:{key:016x}", self.inner.prefix)
    }

    /// Runs `invocation` within the timeout, retrying once on a fresh connection when the
    /// pooled one turns out to be dead (the connection manager replaces it on such
    /// errors).
    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + self.inner.timeout;
        let timed_out = |_| StoreError::new("Redis call timed out");
        let mut conn = self.inner.conn.clone();
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let first = tokio::time::timeout_at(deadline, invocation.invoke_async(&mut conn))
            .await
            .map_err(timed_out)?;
        let result = match first {
            Err(e) if e.is_unrecoverable_error() || e.is_connection_dropped() => {
                tracing::debug!(error = %e, "stale Redis connection: retrying on a fresh one");
                self.inner.health.reconnected();
                self.inner.memory_policy.mark_due();
                self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
                tokio::time::timeout_at(deadline, invocation.invoke_async(&mut conn))
                    .await
                    .map_err(timed_out)?
            }
            other => other,
        };
        result.map_err(|e| StoreError::with_source("Redis call failed", e))
    }

    async fn check_remote(&self, checks: &[Check]) -> Result<Decision, StoreError> {
        // Redis keeps microseconds: decide on parameters rounded to them (never more
        // permissive), there and here alike.
        let rounded: Vec<Check> = checks
            .iter()
            .map(|c| Check {
                params: c.params.rounded_up_to(1000),
                ..*c
            })
            .collect();
        let mut invocation = self.inner.gcra.prepare_invoke();
        for c in &rounded {
            let p = &c.params;
            invocation.key(self.key("rl", c.key));
            invocation
                .arg(p.interval_ns / 1000)
                .arg(p.limit_ns / 1000)
                .arg(p.block_ns / 1000)
                .arg(u8::from(c.shadow));
        }
        let reply: Vec<i64> = self.invoke(&invocation).await?;
        let (now, old) = match reply.split_first() {
            Some((now, old)) if old.len() == checks.len() => (*now, old),
            _ => return Err(StoreError::new("unexpected reply from the Redis script")),
        };
        // Recompute the script's decision in nanoseconds, with the same rounded parameters.
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
        let now = Timestamp::from_nanos(u64::try_from(now).unwrap_or(0).saturating_mul(1000));
        Ok(decide(now, &rounded, &mut tats).0)
    }

    /// Decides without Redis (an outage is in progress): on the fallback, or reports
    /// `error`.
    fn decide_locally(
        &self,
        now: Timestamp,
        checks: &[Check],
        error: StoreError,
    ) -> Result<Decision, StoreError> {
        self.inner.health.decided_locally();
        match &self.inner.fallback {
            Some(memory) => Ok(memory.check_at(now, checks)),
            None => Err(error),
        }
    }

    async fn check_owned(self, now: Timestamp, checks: Vec<Check>) -> Result<Decision, StoreError> {
        let set = checks_key(&checks);
        let arrived = Instant::now();
        if let Some(refusal) = self
            .inner
            .blocked
            .as_ref()
            .and_then(|c| c.lookup(set, arrived))
        {
            return Ok(refusal);
        }
        let health = &self.inner.health;
        let started = health.at(arrived);
        if health.route(started) == Route::Local {
            let error = StoreError::new("Redis unavailable (outage in progress)");
            return self.decide_locally(now, &checks, error);
        }
        match self.check_remote(&checks).await {
            Ok(decision) => {
                self.succeeded(started);
                if let Some(cache) = &self.inner.blocked {
                    // From the arrival, before Redis decided: the entry never outlives
                    // the refusal.
                    cache.insert(set, &decision, arrived);
                }
                Ok(decision)
            }
            Err(error) => {
                health.failed(&error, self.fallback_name());
                self.decide_locally(now, &checks, error)
            }
        }
    }

    fn fallback_name(&self) -> &'static str {
        match self.inner.fallback {
            Some(_) => RedisFallback::Memory.name(),
            None => RedisFallback::Error.name(),
        }
    }
}

/// The future of [`RedisStore`]'s calls.
pub type RedisFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

impl Store for RedisStore {
    type CheckFuture = RedisFuture<Decision>;
    type UsageFuture = RedisFuture<Usage>;

    /// Decides on Redis' clock (`TIME`), so that instances with skewed clocks agree;
    /// `now` is used only while Redis is unavailable, by the in-memory fallback.
    fn check(&self, now: Timestamp, checks: &[Check]) -> Self::CheckFuture {
        Box::pin(self.clone().check_owned(now, checks.to_vec()))
    }

    /// Usage quotas have no local fallback: a lifetime counter cannot be kept per
    /// instance without over-admitting, so their failures are always reported (and count
    /// toward the store's outage state). Windows are on Redis' clock: `now` is unused.
    fn consume_usage(
        &self,
        _now: Timestamp,
        key: u64,
        amount: u64,
        limits: UsageLimits,
    ) -> Self::UsageFuture {
        let store = self.clone();
        Box::pin(async move {
            let mut invocation = store.inner.usage.prepare_invoke();
            let window_us = limits
                .window
                .map_or(0, |(_, w)| u64::try_from(w.as_micros()).unwrap_or(u64::MAX));
            let limit = |l: Option<u64>| l.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            invocation
                .key(store.key("uq", key))
                .arg(amount)
                .arg(limit(limits.lifetime))
                .arg(limit(limits.window.map(|(l, _)| l)))
                .arg(window_us);
            let started = store.inner.health.at(Instant::now());
            let reply: Vec<i64> = match store.invoke(&invocation).await {
                Ok(reply) => reply,
                Err(error) => {
                    store
                        .inner
                        .health
                        .failed(&error, "none (usage quotas report failures)");
                    return Err(error);
                }
            };
            store.succeeded(started);
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

    fn is_shared(&self) -> bool {
        true
    }
}
