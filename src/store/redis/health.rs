//! Whether Redis is reachable, as a [`RedisStore`](super::RedisStore) sees it: the outage
//! state machine, its log lines (one per transition) and its counters.
//!
//! - **Up**: every request goes to Redis. A failure or timeout marks Redis lost (logged
//!   once, at `warn`, with the error).
//! - **Down**: requests are decided without Redis (by the fallback, or reported to the
//!   layer) and do not wait on it; at most one request per probe interval tries Redis.
//!   The first call that succeeds, having started after the outage began, marks Redis
//!   back (logged once, at `info`, with how long it was down and how many requests were
//!   decided without it). A call already in flight when the outage began cannot end it,
//!   so a slow Redis does not flap between the two states.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::super::StoreError;

/// Counters of a [`RedisStore`](super::RedisStore)'s connection to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedisHealth {
    /// Whether the store currently sends requests to Redis (no outage in progress).
    pub available: bool,
    /// Outages so far: transitions from available to lost.
    pub outages: u64,
    /// Recoveries so far: transitions from lost back to available.
    pub recoveries: u64,
    /// Requests decided without Redis during outages (by the in-memory fallback, or
    /// reported to the layer with [`RedisFallback::Error`](super::RedisFallback::Error)).
    pub decided_without_redis: u64,
    /// Calls that failed or timed out (probes included).
    pub errors: u64,
    /// Calls retried once on a fresh connection because the pooled one was dead.
    pub reconnects: u64,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// To Redis (no outage, or this request is the outage's probe).
    Redis,
    /// Decided without Redis.
    Local,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    decided_before: u64,
    errors_before: u64,
}

#[derive(Debug)]
pub(crate) struct Health {
    /// The store's key prefix, named in the log lines.
    prefix: String,
    epoch: Instant,
    probe_interval: Duration,
    /// When the current outage began (ns since the epoch, plus one); 0 when up.
    down_since: AtomicU64,
    /// The earliest time (ns since the epoch) the next probe may start.
    next_probe: AtomicU64,
    outage: Mutex<Option<Outage>>,
    outages: AtomicU64,
    recoveries: AtomicU64,
    decided_without_redis: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
}

impl Health {
    pub(crate) fn new(prefix: String, probe_interval: Duration) -> Health {
        Health {
            prefix,
            epoch: Instant::now(),
            probe_interval,
            down_since: AtomicU64::new(0),
            next_probe: AtomicU64::new(0),
            outage: Mutex::new(None),
            outages: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            decided_without_redis: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    /// `at`, in ns since the epoch, plus one (never 0).
    pub(crate) fn at(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1
    }

    /// Where a request arriving at `now` goes: to Redis unless an outage is in progress,
    /// and then only if it is the first request of a probe interval.
    pub(crate) fn route(&self, now: u64) -> Route {
        if self.down_since.load(Ordering::Acquire) == 0 {
            return Route::Redis;
        }
        let next = self.next_probe.load(Ordering::Relaxed);
        let interval = u64::try_from(self.probe_interval.as_nanos()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next_probe
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Route::Redis;
        }
        Route::Local
    }

    /// A request decided without Redis.
    pub(crate) fn decided_locally(&self) {
        self.decided_without_redis.fetch_add(1, Ordering::Relaxed);
    }

    /// A stale connection was replaced and the call retried.
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// A call failed or timed out: marks Redis lost (and logs it) if it was up.
    pub(crate) fn failed(&self, error: &StoreError, fallback: &'static str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.down_since.load(Ordering::Acquire) != 0 {
            tracing::debug!(%error, "Redis rate-limit store still unavailable");
            return;
        }
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if outage.is_some() {
            return;
        }
        let now = self.at(Instant::now());
        *outage = Some(Outage {
            since: Instant::now(),
            decided_before: self.decided_without_redis.load(Ordering::Relaxed),
            errors_before: self.errors.load(Ordering::Relaxed).saturating_sub(1),
        });
        let interval = u64::try_from(self.probe_interval.as_nanos()).unwrap_or(u64::MAX);
        self.next_probe
            .store(now.saturating_add(interval), Ordering::Relaxed);
        self.down_since.store(now, Ordering::Release);
        self.outages.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            transition = "lost",
            prefix = %self.prefix,
            %error,
            fallback,
            probe_interval_ms = self.probe_interval.as_millis() as u64,
            "Redis rate-limit store lost: requests are decided without Redis until it answers again"
        );
    }

    /// A call that started at `started` (from [`at`](Self::at)) succeeded: marks Redis
    /// back (and logs it) if an outage began before the call started.
    pub(crate) fn succeeded(&self, started: u64) {
        let since = self.down_since.load(Ordering::Acquire);
        if since == 0 || started < since {
            return;
        }
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(o) = outage.take() else {
            return;
        };
        self.down_since.store(0, Ordering::Release);
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        let decided = self
            .decided_without_redis
            .load(Ordering::Relaxed)
            .saturating_sub(o.decided_before);
        let errors = self
            .errors
            .load(Ordering::Relaxed)
            .saturating_sub(o.errors_before);
        tracing::info!(
            transition = "back",
            prefix = %self.prefix,
            down_for_ms = o.since.elapsed().as_millis() as u64,
            decided_without_redis = decided,
            errors,
            "Redis rate-limit store back: requests are decided by Redis again"
        );
    }

    pub(crate) fn snapshot(&self) -> RedisHealth {
        RedisHealth {
            available: self.down_since.load(Ordering::Acquire) == 0,
            outages: self.outages.load(Ordering::Relaxed),
            recoveries: self.recoveries.load(Ordering::Relaxed),
            decided_without_redis: self.decided_without_redis.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}
