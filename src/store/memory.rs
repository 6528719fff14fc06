//! The embedded in-memory store: sharded, exact, bounded.
//!
//! State is one `u64` (the GCRA theoretical arrival time) per key, in shards of
//! `HashMap<u64, AtomicU64>` behind their own read-write lock. A request with one limit on
//! a known key decides under the read lock with a compare-and-swap (readers never block
//! each other); inserts, evictions and requests with several limits take the write locks
//! of the shards involved, in ascending order. Every decision is atomic and exact under
//! contention.
//!
//! **Bounded.** A key whose TAT has passed holds no information (see [`crate::gcra`]), so
//! it can be dropped without changing any decision. Shards drop such idle keys as they
//! grow (amortized, on the insert path: no background thread is needed), and shrink their
//! tables when most keys are gone, returning the memory. The total number of keys never
//! exceeds [`MemoryStoreBuilder::max_keys`]: each shard holds at most its share, and when a
//! full shard has no idle key left, it evicts the eighth of its keys that are closest to
//! becoming idle. Such a forced eviction forgets recent usage of those keys (the store
//! errs towards admitting), and is counted in [`EvictionStats::forced`].
//!
//! [`MemoryStore::spawn_sweeper`] optionally sweeps idle keys on a timer, for services
//! whose traffic can stop entirely.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use crate::clock::{Clock, TokioClock};
use crate::gcra::{is_idle, tat_of, Check, Decision, Step};
use crate::store::usage::UsageTable;
use crate::store::{Store, StoreError, Usage, UsageLimits};

/// Keys are already keyed 64-bit hashes: hashing them again would be wasted work.
#[derive(Default, Clone, Copy)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, AtomicU64, BuildHasherDefault<IdentityHasher>>;

struct ShardMap {
    map: Map,
    inserts_since_sweep: usize,
}

/// One shard on its own cache line, so neighbouring shards' locks do not false-share.
/// Known keys are decided under the read lock with a compare-and-swap on their state;
/// the write lock is taken only to insert, evict, or decide several limits at once.
#[repr(align(64))]
struct Shard(RwLock<ShardMap>);

struct Inner<C> {
    clock: C,
    shards: Box<[Shard]>,
    shard_mask: usize,
    shard_cap: usize,
    idle_evicted: AtomicU64,
    forced_evicted: AtomicU64,
    usage: UsageTable,
}

/// The embedded store. Cheap to clone; clones share state.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::gcra::{Check, GcraParams};
/// use tower_throttle::store::{MemoryStore, Store};
/// use tower_throttle::Quota;
///
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new();
/// let quota = Quota::new(2, Duration::from_secs(1))?;
/// let check = Check { key: 42, params: GcraParams::new(&quota, Duration::ZERO), shadow: false };
/// assert!(store.check(&[check]).await?.admitted);
/// assert!(store.check(&[check]).await?.admitted);
/// assert!(!store.check(&[check]).await?.admitted);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
/// # }
/// ```
pub struct MemoryStore<C = TokioClock> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for MemoryStore<C> {
    fn clone(&self) -> Self {
        MemoryStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> std::fmt::Debug for MemoryStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field(
                "max_keys",
                &(self.inner.shard_cap * self.inner.shards.len()),
            )
            .finish_non_exhaustive()
    }
}

/// How many keys a [`MemoryStore`] has dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvictionStats {
    /// Idle keys dropped (no information lost).
    pub idle: u64,
    /// Keys dropped while still holding usage, because the store was full.
    pub forced: u64,
}

/// Why a [`MemoryStore`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryStoreError {
    /// `max_keys` was zero.
    ZeroMaxKeys,
    /// The shard count was zero or not a power of two.
    BadShardCount,
}

impl std::fmt::Display for MemoryStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemoryStoreError::ZeroMaxKeys => "max_keys must be at least 1",
            MemoryStoreError::BadShardCount => "shard count must be a power of two",
        })
    }
}

impl std::error::Error for MemoryStoreError {}

/// Builds a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder<C = TokioClock> {
    clock: C,
    max_keys: usize,
    shards: Option<usize>,
    max_usage_keys: usize,
}

/// Default bound on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;

impl MemoryStore {
    /// A store on tokio's clock holding at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }

    /// Configure a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: TokioClock::new(),
            max_keys: DEFAULT_MAX_KEYS,
            shards: None,
            max_usage_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryStoreBuilder<C> {
    /// Use another clock (e.g. [`crate::clock::ManualClock`]).
    pub fn clock<C2: Clock>(self, clock: C2) -> MemoryStoreBuilder<C2> {
        MemoryStoreBuilder {
            clock,
            max_keys: self.max_keys,
            shards: self.shards,
            max_usage_keys: self.max_usage_keys,
        }
    }

    /// The most usage-quota keys held (default [`DEFAULT_MAX_KEYS`]). Usage is never
    /// evicted: a new key beyond the bound is a store error.
    pub fn max_usage_keys(mut self, max: usize) -> Self {
        self.max_usage_keys = max;
        self
    }

    /// The most keys the store ever holds (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The number of shards, a power of two (default: 16 × available parallelism, at
    /// least 16, at most 1024, and never more than `max_keys`).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Validates the configuration and builds the store.
    pub fn build(self) -> Result<MemoryStore<C>, MemoryStoreError> {
        if self.max_keys == 0 {
            return Err(MemoryStoreError::ZeroMaxKeys);
        }
        let shards = match self.shards {
            Some(n) if n == 0 || !n.is_power_of_two() => {
                return Err(MemoryStoreError::BadShardCount)
            }
            Some(n) => n,
            None => {
                let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
                (cpus * 16).next_power_of_two().clamp(16, 1024)
            }
        };
        // Every shard must be allowed at least one key; shrink the shard count if needed.
        let max_shards = 1usize << self.max_keys.ilog2();
        let shards = shards.min(max_shards).min(1 << 20);
        let shard_count = shards;
        let shard_cap = self.max_keys / shard_count;
        let shards = (0..shard_count)
            .map(|_| {
                Shard(RwLock::new(ShardMap {
                    map: Map::default(),
                    inserts_since_sweep: 0,
                }))
            })
            .collect();
        Ok(MemoryStore {
            inner: Arc::new(Inner {
                clock: self.clock,
                shards,
                shard_mask: shard_count - 1,
                shard_cap,
                idle_evicted: AtomicU64::new(0),
                forced_evicted: AtomicU64::new(0),
                usage: UsageTable::new(self.max_usage_keys),
            }),
        })
    }
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, ShardMap> {
    shard.0.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock(shard: &Shard) -> RwLockWriteGuard<'_, ShardMap> {
    // No code path panics while holding a shard lock; if one ever did, the map is still
    // consistent (every write is a single insert), so a poisoned lock is safe to use.
    shard.0.write().unwrap_or_else(PoisonError::into_inner)
}

impl<C: Clock> Inner<C> {
    /// The clock reading, capped at [`MAX_NOW`] so stored TATs never reach the lock bit.
    fn now(&self) -> u64 {
        self.clock.now_nanos().min(MAX_NOW)
    }

    fn shard_of(&self, key: u64) -> usize {
        // Middle bits: hashbrown uses the low bits for the bucket and the top 7 for tags.
        (key >> 40) as usize & self.shard_mask
    }

    fn write(&self, shard: &mut ShardMap, key: u64, tat: u64, now: u64) {
        if let Some(slot) = shard.map.get_mut(&key) {
            *slot.get_mut() = tat;
            return;
        }
        shard.inserts_since_sweep += 1;
        if shard.map.len() >= self.shard_cap || shard.inserts_since_sweep > shard.map.len() / 2 + 64
        {
            self.sweep_shard(shard, now);
            if shard.map.len() >= self.shard_cap {
                self.force_evict(shard);
            }
        }
        shard.map.insert(key, AtomicU64::new(tat));
    }

    fn sweep_shard(&self, shard: &mut ShardMap, now: u64) {
        let before = shard.map.len();
        shard
            .map
            .retain(|_, stored| !is_idle(*stored.get_mut(), now));
        let dropped = before - shard.map.len();
        shard.inserts_since_sweep = 0;
        if dropped > 0 {
            self.idle_evicted
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let len = shard.map.len();
        if shard.map.capacity() > 64 && shard.map.capacity() > len * 4 {
            shard.map.shrink_to(len * 2);
        }
    }

    /// Drops the eighth of a full shard's keys closest to becoming idle (lowest TATs).
    fn force_evict(&self, shard: &mut ShardMap) {
        let target = (shard.map.len() / 8).max(1);
        let mut tats: Vec<u64> = shard
            .map
            .values()
            .map(|v| tat_of(v.load(Ordering::Relaxed)))
            .collect();
        let (_, &mut threshold, _) = tats.select_nth_unstable(target - 1);
        let before = shard.map.len();
        let mut budget = target;
        shard.map.retain(|_, stored| {
            let tat = tat_of(*stored.get_mut());
            if tat < threshold || (tat == threshold && budget > 0) {
                budget = budget.saturating_sub(1);
                false
            } else {
                true
            }
        });
        let dropped = before - shard.map.len();
        self.forced_evicted
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    fn check_one(&self, check: &Check) -> Decision {
        let shard = &self.shards[self.shard_of(check.key)];
        {
            // Fast path: a known key, decided with a compare-and-swap under the read lock;
            // the decision's arithmetic runs after the lock is released.
            let map = read(shard);
            if let Some(slot) = map.map.get(&check.key) {
                let now = self.now();
                let mut current = many::load_unlocked(slot);
                let (step, stored) = loop {
                    let step = Step::of(now, check, current);
                    let Some(new) = step.new_state else {
                        break (step, current);
                    };
                    match slot.compare_exchange_weak(
                        current,
                        new,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break (step, new),
                        Err(_) => current = many::load_unlocked(slot),
                    }
                };
                drop(map);
                return step.decision(now, check, stored);
            }
        }
        let mut map = lock(shard);
        let now = self.now();
        let stored = map
            .map
            .get(&check.key)
            .map_or(0, |v| v.load(Ordering::Acquire));
        let step = Step::of(now, check, stored);
        if let Some(new) = step.new_state {
            self.write(&mut map, check.key, new, now);
        }
        drop(map);
        step.decision(now, check, step.new_state.unwrap_or(stored))
    }
}

impl<C: Clock> MemoryStore<C> {
    /// Decides `checks` synchronously (what [`Store::check`] does, without the future).
    pub fn check_now(&self, checks: &[Check]) -> Decision {
        match checks {
            [] => Decision {
                admitted: true,
                ..Decision::default()
            },
            [one] => self.inner.check_one(one),
            many => self.inner.check_many(many),
        }
    }

    /// Number of keys currently held.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| read(s).map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on held keys.
    pub fn max_keys(&self) -> usize {
        self.inner.shard_cap * self.inner.shards.len()
    }

    /// Keys dropped so far.
    pub fn evictions(&self) -> EvictionStats {
        EvictionStats {
            idle: self.inner.idle_evicted.load(Ordering::Relaxed),
            forced: self.inner.forced_evicted.load(Ordering::Relaxed),
        }
    }

    /// Drops every idle key now and returns table memory; one shard locked at a time.
    pub fn sweep(&self) {
        let now = self.inner.now();
        for shard in self.inner.shards.iter() {
            self.inner.sweep_shard(&mut lock(shard), now);
        }
    }

    /// Sweeps idle keys every `period` on the current tokio runtime, until the store is
    /// dropped. Needed only when traffic may stop completely: the insert path sweeps on
    /// its own.
    pub fn spawn_sweeper(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner<C>> = Arc::downgrade(&self.inner);
        let period = period.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(inner) => MemoryStore { inner }.sweep(),
                    None => return,
                }
            }
        })
    }
}

impl<C: Clock> Store for MemoryStore<C> {
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type UsageFuture = Ready<Result<Usage, StoreError>>;

    fn check(&self, checks: &[Check]) -> Self::CheckFuture {
        ready(Ok(self.check_now(checks)))
    }

    fn consume_usage(&self, key: u64, amount: u64, limits: UsageLimits) -> Self::UsageFuture {
        let now = self.inner.now();
        ready(self.inner.usage.consume(key, amount, &limits, now))
    }
}

mod many;
use many::MAX_NOW;
#[cfg(test)]
mod tests;
