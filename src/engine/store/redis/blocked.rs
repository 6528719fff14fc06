//! The blocked-key cache: refusals remembered until their retry time, so requests for a
//! refused key set are refused locally, without a round trip.
//!
//! Bounded, O(1) per operation at any fill level, and sharded:
//!
//! - the cache is split into up to 64 shards, each behind its own mutex (on its own cache
//!   line), so concurrent requests for different keys rarely wait on each other;
//! - a shard is an array of buckets of [`BUCKET_SLOTS`] slots (set-associative): a key set
//!   lives in the one bucket its hash picks, so a lookup or an insert examines exactly
//!   one bucket, however full the cache is;
//! - when the bucket is full, an insert replaces the entry that expires first (expired
//!   entries are free slots). Losing an entry is always safe: the next request for that
//!   key set goes to Redis, which refuses it again.
//!
//! Shards allocate their buckets on first insert, so an unused cache costs nothing.
//!
//! A cached refusal replays the refusal Redis made: the same refusing limits
//! (`denied_mask`) and headline, with its times counted down. Limits of the set that start
//! refusing meanwhile (a global key other clients used up) do not show in it until the
//! entry expires and Redis decides again; the answer is still a refusal, never an
//! admission, and its `Retry-After` is never later than Redis' would be. The store
//! conformance kit compares every field with the model, so its Redis run turns the cache
//! off (`blocked_cache(false)`).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::gcra::{Decision, LimitState};

/// Slots per bucket: the most any lookup or insert examines.
pub(crate) const BUCKET_SLOTS: usize = 8;
const MAX_SHARDS: usize = 64;

/// What a cached refusal needs to be replayed: times are absolute (ns since the cache's
/// epoch), so the replayed waits shrink as time passes.
#[derive(Debug, Clone, Copy, Default)]
struct Refusal {
    denied_mask: u64,
    remaining: u64,
    headline_retry_at: u64,
    headline_reset_at: u64,
    headline_index: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    sets: [u64; BUCKET_SLOTS],
    /// When each entry expires (ns since the epoch); 0: the slot is empty.
    until: [u64; BUCKET_SLOTS],
    refusals: [Refusal; BUCKET_SLOTS],
}

/// Counters of a [`RedisStore`](super::RedisStore)'s blocked-key cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockedCacheStats {
    /// Slots in all (the configured capacity, rounded up to whole buckets).
    pub capacity: usize,
    /// Occupied slots (expired entries included until their slot is reused).
    pub entries: usize,
    /// Lookups made (one per request that reached the store).
    pub lookups: u64,
    /// Lookups answered from the cache (requests refused without a round trip).
    pub hits: u64,
    /// Refusals stored.
    pub inserts: u64,
    /// Unexpired entries replaced to make room (their bucket was full).
    pub replaced: u64,
    /// Slots examined by all lookups and inserts: at most
    /// [`bucket_slots`](Self::bucket_slots) per operation, whatever the fill level.
    pub slots_examined: u64,
    /// Slots per bucket: the most one lookup or insert examines.
    pub bucket_slots: usize,
}

#[derive(Debug, Default)]
struct ShardState {
    buckets: Vec<Bucket>,
    entries: usize,
    lookups: u64,
    hits: u64,
    inserts: u64,
    replaced: u64,
    slots_examined: u64,
}

/// One shard, on its own cache lines so that shards' locks do not share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<ShardState>);

/// See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct BlockedCache {
    epoch: Instant,
    shards: Box<[Shard]>,
    buckets_per_shard: usize,
}

/// A 64-bit finalizer (SplitMix64): spreads the set hash over shards and buckets.
fn mix(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl BlockedCache {
    /// A cache of at least `capacity` entries (at least one bucket).
    pub(crate) fn new(capacity: usize) -> BlockedCache {
        let buckets = capacity.div_ceil(BUCKET_SLOTS).max(1);
        // The largest power of two not above the bucket count, at most 64.
        let shards = (1usize << buckets.ilog2()).min(MAX_SHARDS);
        BlockedCache {
            epoch: Instant::now(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            buckets_per_shard: buckets.div_ceil(shards),
        }
    }

    /// Nanoseconds since the epoch, plus one (so that 0 never is a live expiry).
    fn at(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.epoch)).saturating_add(1)
    }

    /// The shard and bucket of `set`.
    fn locate(&self, set: u64) -> (&Shard, usize) {
        let h = mix(set);
        // Shard from the high bits (the shard count is a power of two), bucket from the
        // low 32 bits by multiply-shift (no modulo, any bucket count).
        let shard = (h >> 58) as usize & (self.shards.len() - 1);
        let bucket = ((h & 0xFFFF_FFFF) * self.buckets_per_shard as u64) >> 32;
        (&self.shards[shard], bucket as usize)
    }

    /// The refusal cached for `set` at `now`, its waits shortened by the time passed.
    pub(crate) fn lookup(&self, set: u64, now: Instant) -> Option<Decision> {
        let now_ns = self.at(now);
        let (shard, index) = self.locate(set);
        let mut state = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.lookups += 1;
        let state = &mut *state;
        let bucket = state.buckets.get_mut(index)?;
        let mut examined = 0;
        let mut found = None;
        for slot in 0..BUCKET_SLOTS {
            examined += 1;
            if bucket.until[slot] != 0 && bucket.sets[slot] == set {
                found = Some(slot);
                break;
            }
        }
        state.slots_examined += examined;
        let slot = found?;
        let until = bucket.until[slot];
        if until <= now_ns {
            bucket.until[slot] = 0;
            state.entries -= 1;
            return None;
        }
        state.hits += 1;
        let r = bucket.refusals[slot];
        let left = |at: u64| Duration::from_nanos(at.saturating_sub(now_ns));
        Some(Decision {
            admitted: false,
            denied_mask: r.denied_mask,
            retry_after: left(until),
            headline: LimitState {
                index: usize::from(r.headline_index),
                remaining: r.remaining,
                reset_after: left(r.headline_reset_at),
                retry_after: left(r.headline_retry_at),
            },
        })
    }

    /// Remembers the refusal `decision` of `set`, decided at `now`, until its retry time.
    /// Admissions and refusals without a wait are not stored.
    pub(crate) fn insert(&self, set: u64, decision: &Decision, now: Instant) {
        if decision.admitted || decision.retry_after.is_zero() {
            return;
        }
        let now_ns = self.at(now);
        let after = |d: Duration| now_ns.saturating_add(nanos(d));
        let refusal = Refusal {
            denied_mask: decision.denied_mask,
            remaining: decision.headline.remaining,
            headline_retry_at: after(decision.headline.retry_after),
            headline_reset_at: after(decision.headline.reset_after),
            headline_index: u8::try_from(decision.headline.index).unwrap_or(u8::MAX),
        };
        let (shard, index) = self.locate(set);
        let mut state = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        if state.buckets.is_empty() {
            state.buckets = vec![Bucket::default(); self.buckets_per_shard];
        }
        state.inserts += 1;
        state.slots_examined += BUCKET_SLOTS as u64;
        let bucket = &mut state.buckets[index];
        let (mut same, mut free, mut first_expiring) = (None, None, 0);
        for slot in 0..BUCKET_SLOTS {
            let until = bucket.until[slot];
            if until != 0 && bucket.sets[slot] == set {
                same = Some(slot);
            } else if until <= now_ns && free.is_none() {
                free = Some(slot);
            }
            if until < bucket.until[first_expiring] {
                first_expiring = slot;
            }
        }
        let slot = match (same, free) {
            (Some(slot), _) | (None, Some(slot)) => slot,
            (None, None) => {
                state.replaced += 1;
                first_expiring
            }
        };
        if bucket.until[slot] == 0 {
            state.entries += 1;
        }
        bucket.sets[slot] = set;
        bucket.until[slot] = after(decision.retry_after).max(1);
        bucket.refusals[slot] = refusal;
    }

    /// The counters, summed over the shards (each locked in turn).
    pub(crate) fn stats(&self) -> BlockedCacheStats {
        let mut stats = BlockedCacheStats {
            capacity: self.shards.len() * self.buckets_per_shard * BUCKET_SLOTS,
            bucket_slots: BUCKET_SLOTS,
            ..BlockedCacheStats::default()
        };
        for shard in &self.shards {
            let s = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            stats.entries += s.entries;
            stats.lookups += s.lookups;
            stats.hits += s.hits;
            stats.inserts += s.inserts;
            stats.replaced += s.replaced;
            stats.slots_examined += s.slots_examined;
        }
        stats
    }
}

#[cfg(test)]
mod tests;
