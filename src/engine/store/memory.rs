//! The embedded in-memory store: sharded, exact, bounded.
//!
//! State is one `u64` (the GCRA theoretical arrival time) per key, in shards whose tables
//! are open-addressing arrays of atomic words (16 bytes per slot, plus a 1-byte rule tag
//! the decision path never reads, see `table`). A
//! request with one limit on a known key is decided **without any lock or shared
//! counter**: the thread reads the shard's table from its own cache (see `view`) and
//! updates the key's state with one compare-and-swap. Only inserting a key, rebuilding a
//! shard (growth, eviction, sweeps) or refreshing a thread's cached table takes the
//! shard's mutex. Requests with several limits lock their keys' state words in one global
//! order and decide all-or-nothing (see `many`). Every decision is atomic and exact
//! under contention: a rebuild freezes each old slot with a compare-and-swap before
//! copying it, so an update made through a stale table is never lost.
//!
//! **Bounded, and floods never weaken a limit.** A key whose TAT has passed holds no
//! information (see [`crate::engine::gcra`]), so it can be dropped without changing any decision.
//! Shards drop such idle keys as they grow (amortized, on the insert path: no background
//! thread is needed), and shrink their tables when most keys are gone, returning the
//! memory. Only idle keys are ever dropped. The number of keys never exceeds
//! [`MemoryStoreBuilder::max_keys`] (each shard holds at most its share), plus one
//! *overflow bucket* per rule ([`Check::rule`]; at most 96 at a time, in a fixed 2 KiB
//! table).
//!
//! **Per-rule shares.** Each shard counts its keys per rule, and keeps its last eighth
//! for rules holding less than their fair share of it (the shard's share of `max_keys`
//! divided by the number of rules holding keys there). A flooded rule is soon above its
//! fair share, so it fills at most seven eighths of the store, and the other rules keep
//! finding room for their new keys. A store used by one rule can fill every slot.
//!
//! **When a new key finds no room** (its shard is full, or in its last eighth and the
//! key's rule above its fair share, and no key is idle), it is not stored: it is decided
//! on its rule's overflow bucket, with its own quota, shared by every new key of that
//! rule until room comes back (counted in [`EvictionStats::overflowed`]). So a flood of
//! new keys, at any rate and in any number, changes no decision for the keys already
//! held, and costs new keys of the flooded rules one shared quota per rule: conservative,
//! never unlimited. A new key starts from its rule's overflow-bucket state, so a key that
//! overflowed and later finds room is never admitted more than its own limit allows;
//! after a flood, new keys of the flooded rule therefore wait until that bucket is idle
//! again (at most the rule's window or block period). A rule's entry in the overflow
//! table is freed once the rule holds no key and its bucket is idle (no information
//! lost; on demand, when a new rule finds the table full, and by [`MemoryStore::sweep`]),
//! so rules that come and go (layers rebuilt with new rule ids) never use it up. While 96
//! other rules hold live state, a new rule has no bucket: its new keys are refused while
//! they find no room.
//!
//! [`MemoryStore::spawn_sweeper`] optionally sweeps idle keys on a timer, for services
//! whose traffic can stop entirely.
//!
//! **Memory of replaced tables.** Each thread caches the tables it reads (one per shard
//! of each store it uses). A table replaced by a rebuild is freed once no thread's
//! cache holds it: a thread drops it when it next touches that shard, when it sweeps or
//! drops the store, or when it exits. A worker that stops using a store keeps its last
//! tables of it until then.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crate::engine::clock::{Clock, Timestamp};
use crate::engine::gcra::{Check, Decision};
use crate::engine::state::MAX_NOW;
use crate::engine::store::usage::UsageTable;
use crate::engine::store::{Store, StoreError, Usage, UsageLimits};
use table::Table;

/// What the shard mutex guards: the current table and its bookkeeping.
struct Writer {
    table: Arc<Table>,
    /// Keys in `table`.
    len: usize,
    inserts_since_sweep: usize,
    /// While the shard is full: not before this time can a rebuild drop an eighth of its
    /// keys as idle (see `room`), so new keys overflow without scanning the shard.
    next_idle_sweep: u64,
    /// Keys per rule tag (see `room`), and how many tags have keys.
    counts: Box<[u32]>,
    rules: u32,
}

/// One shard on its own cache line, so neighbouring shards' mutexes do not false-share.
/// Known keys are decided on the thread's cached table without the mutex; the mutex is
/// taken only to insert, rebuild, or refresh a thread's view.
#[repr(align(64))]
struct Shard(Mutex<Writer>);

struct Inner {
    owner: view::Owner,
    shards: Box<[Shard]>,
    shard_mask: usize,
    shard_cap: usize,
    /// The last eighth of a shard, kept for rules below their fair share (see `room`).
    reserve: usize,
    idle_evicted: AtomicU64,
    overflowed: AtomicU64,
    /// Shard rebuilds so far (tests check they stay amortized).
    #[cfg(test)]
    rebuilds: AtomicU64,
    overflow: room::Overflow,
    usage: UsageTable,
}

/// The embedded store. Cheap to clone; clones share state. It reads no clock: every
/// decision is made at the time passed in.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::clock::Timestamp;
/// use tower_throttle::gcra::{Check, GcraParams};
/// use tower_throttle::store::{MemoryStore, Store};
/// use tower_throttle::Quota;
///
/// # tokio_test_block_on(async {
/// let store = MemoryStore::new();
/// let quota = Quota::new(2, Duration::from_secs(1))?;
/// let check = Check::new(42, GcraParams::new(&quota, Duration::ZERO));
/// let now = Timestamp::ZERO;
/// assert!(store.check(now, &[check]).await?.admitted);
/// assert!(store.check(now, &[check]).await?.admitted);
/// assert!(!store.check(now, &[check]).await?.admitted);
/// let later = now.saturating_add(Duration::from_millis(500));
/// assert!(store.check(later, &[check]).await?.admitted);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl Clone for MemoryStore {
    fn clone(&self) -> Self {
        MemoryStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl std::fmt::Debug for MemoryStore {
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

/// How many keys a [`MemoryStore`] has dropped, and how many new keys found it full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvictionStats {
    /// Idle keys dropped (no information lost). No other key is ever dropped.
    pub idle: u64,
    /// Checks of new keys decided on their rule's overflow bucket because the store was
    /// full (see [`MemoryStore`]).
    pub overflowed: u64,
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
pub struct MemoryStoreBuilder {
    max_keys: usize,
    shards: Option<usize>,
    max_usage_keys: usize,
}

/// Default bound on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;

impl MemoryStore {
    /// A store holding at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }

    /// Configure a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
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

impl MemoryStoreBuilder {
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
    pub fn build(self) -> Result<MemoryStore, MemoryStoreError> {
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
                Shard(Mutex::new(Writer {
                    table: Arc::new(Table::with_capacity(0)),
                    len: 0,
                    inserts_since_sweep: 0,
                    next_idle_sweep: 0,
                    counts: vec![0; room::OVERFLOW_SLOTS].into_boxed_slice(),
                    rules: 0,
                }))
            })
            .collect();
        Ok(MemoryStore {
            inner: Arc::new(Inner {
                owner: view::Owner {
                    id: view::next_id(),
                    alive: Arc::new(()),
                },
                shards,
                shard_mask: shard_count - 1,
                shard_cap,
                reserve: shard_cap / 8,
                idle_evicted: AtomicU64::new(0),
                overflowed: AtomicU64::new(0),
                #[cfg(test)]
                rebuilds: AtomicU64::new(0),
                overflow: room::Overflow::new(),
                usage: UsageTable::new(self.max_usage_keys),
            }),
        })
    }
}

fn lock(shard: &Shard) -> MutexGuard<'_, Writer> {
    // No code path panics while holding a shard mutex; if one ever did, the table is still
    // consistent (every write is a single atomic store), so a poisoned mutex is safe to use.
    shard.0.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Inner {
    fn drop(&mut self) {
        view::forget(self.owner.id);
    }
}

/// A timestamp in nanoseconds, capped at [`MAX_NOW`] so stored TATs never reach the lock bit.
fn nanos(now: Timestamp) -> u64 {
    now.as_nanos().min(MAX_NOW)
}

impl Inner {
    fn shard_of(&self, key: u64) -> usize {
        // Middle bits: tables use the low bits for the home slot.
        (key >> 40) as usize & self.shard_mask
    }

    /// Caches shard `shard`'s current table in this thread's view.
    fn refresh_view(&self, shard: usize, table: Arc<Table>) {
        view::refresh(&self.owner, self.shards.len(), shard, table);
    }

    /// Runs `attempt` (told whether it may ask for a reclaim pass) until it decides:
    /// `None` means a new key's rule has no overflow entry and a reclaim pass is due, so
    /// the entries of rules gone idle are freed (see [`Inner::reclaim`]) and the request
    /// starts again, once.
    fn with_reclaim(
        &self,
        now: u64,
        mut attempt: impl FnMut(bool) -> Option<Decision>,
    ) -> Decision {
        if let Some(decision) = attempt(true) {
            return decision;
        }
        self.reclaim(true, now);
        loop {
            if let Some(decision) = attempt(false) {
                return decision;
            }
        }
    }
}

impl MemoryStore {
    /// Decides `checks` at `now` synchronously (what [`Store::check`] does, without the
    /// future).
    pub fn check_at(&self, now: Timestamp, checks: &[Check]) -> Decision {
        let now = nanos(now);
        match checks {
            [] => Decision {
                admitted: true,
                ..Decision::default()
            },
            [one] => self.inner.check_one(one, now),
            many => self.inner.check_many(many, now),
        }
    }

    /// Number of keys currently held.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).len).sum()
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
            overflowed: self.inner.overflowed.load(Ordering::Relaxed),
        }
    }

    /// Drops every key idle at `now` and returns table memory, one shard locked at a time;
    /// then frees the overflow entries of rules that hold no key and whose overflow
    /// bucket is idle (every shard locked at once, briefly). `now` must be on the clock
    /// the store's checks use: a later time would drop keys still limited.
    pub fn sweep(&self, now: Timestamp) {
        let now = nanos(now);
        for shard in self.inner.shards.iter() {
            self.inner.sweep_shard(&mut lock(shard), now);
        }
        self.inner.reclaim(false, now);
        // This thread's view may hold the replaced tables: let their memory go now.
        view::forget(self.inner.owner.id);
    }

    /// Sweeps idle keys every `period` on the current tokio runtime, at `clock`'s time
    /// (the clock the store's checks use: a layer's is a
    /// [`TokioClock`](crate::clock::TokioClock)), until the store is dropped. Needed only
    /// when traffic may stop completely: the insert path sweeps on its own.
    pub fn spawn_sweeper(
        &self,
        clock: impl Clock,
        period: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = period.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(inner) => MemoryStore { inner }.sweep(clock.now()),
                    None => return,
                }
            }
        })
    }
}

impl Store for MemoryStore {
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type UsageFuture = Ready<Result<Usage, StoreError>>;

    fn check(&self, now: Timestamp, checks: &[Check]) -> Self::CheckFuture {
        ready(Ok(self.check_at(now, checks)))
    }

    fn consume_usage(
        &self,
        now: Timestamp,
        key: u64,
        amount: u64,
        limits: UsageLimits,
    ) -> Self::UsageFuture {
        ready(self.inner.usage.consume(key, amount, &limits, nanos(now)))
    }
}

mod many;
mod room;
mod single;
mod table;
#[cfg(test)]
mod tests;
mod view;
