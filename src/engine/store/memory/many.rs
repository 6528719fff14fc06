//! Requests with several limits, decided all-or-nothing.
//!
//! **Known keys** are decided on the thread's cached tables (see [`super::view`]), without
//! the shard mutexes, so requests that share a hot key (a global rule) do not serialize:
//! each key's state word is locked by setting [`LOCKED`] with a compare-and-swap, in one
//! global order (shard, then key), the limits are decided on the states read, and every
//! state is stored back with the lock bit cleared. Single-limit checks never take a key
//! lock: they wait while the bit is set, then compare-and-swap as usual, so every decision
//! stays atomic and exact. A key found moved (its shard was rebuilt) releases the keys
//! held and sends the request to the slow path.
//!
//! **The slow path** (a key missing or moved, or no cached table) takes the mutexes of the
//! shards involved in ascending order, locks the keys the tables hold, decides, stores
//! them back, and then inserts the new keys. Nobody else can see those keys meanwhile:
//! they are missing from every table, so any other request on them waits for the mutex.
//! Rebuilds wait for key locks to clear (holders never wait for a mutex), so neither path
//! can deadlock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};

use super::single::{load_unlocked, wait};
use super::table::{slot_key, Table};
use super::{lock, room, view, Inner, Writer};
use crate::engine::gcra::{decide_states, fill_headline, Check, Decision, MAX_CHECKS};
use crate::engine::state::LOCKED;

/// Locks `slot`, returning its state (without the bit); `None` if it moved.
fn lock_key(slot: &AtomicU64) -> Option<u64> {
    let mut spins = 0;
    loop {
        let state = load_unlocked(slot)?;
        if slot
            .compare_exchange_weak(state, state | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(state);
        }
        wait(&mut spins);
    }
}

/// Locks every slot in order; on a moved slot, unlocks those taken and returns `false`.
fn lock_keys(slots: &[&AtomicU64], states: &mut [u64]) -> bool {
    for (i, slot) in slots.iter().enumerate() {
        match lock_key(slot) {
            Some(state) => states[i] = state,
            None => {
                for (held, &state) in slots[..i].iter().zip(states.iter()) {
                    held.store(state, Ordering::Release);
                }
                return false;
            }
        }
    }
    true
}

/// Distinct values of `items`, sorted, in place; returns how many. Insertion sort: a
/// request carries a handful of checks.
fn sort_dedup<T: Ord + Copy>(items: &mut [T]) -> usize {
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && items[j - 1] > items[j] {
            items.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut n = 0;
    for i in 0..items.len() {
        if n == 0 || items[i] != items[n - 1] {
            items[n] = items[i];
            n += 1;
        }
    }
    n
}

impl Inner {
    pub(super) fn check_many(&self, checks: &[Check], now: u64) -> Decision {
        // Stack arrays sized for the request: zeroing room for 64 checks on every call
        // costs more than the decision (callgrind, two hot limits: 1,076 instructions per
        // request with these sizes, 1,677 with 64 only).
        if checks.len() <= 4 {
            self.check_many_in::<4>(checks, now)
        } else if checks.len() <= 16 {
            self.check_many_in::<16>(checks, now)
        } else {
            self.check_many_in::<MAX_CHECKS>(checks, now)
        }
    }

    /// At most `N` checks (more are ignored; callers validate the count).
    fn check_many_in<const N: usize>(&self, checks: &[Check], now: u64) -> Decision {
        let checks = &checks[..checks.len().min(N)];
        // (shard, key) of every check, in check order and then sorted and deduplicated:
        // the lock order of shards and of keys.
        let mut of_check = [(0usize, 0u64); N];
        for (o, c) in of_check.iter_mut().zip(checks) {
            let key = slot_key(c.key);
            *o = (self.shard_of(key), key);
        }
        let of_check = &of_check[..checks.len()];
        let mut order = [(0usize, 0u64); N];
        order[..checks.len()].copy_from_slice(of_check);
        let distinct = sort_dedup(&mut order[..checks.len()]);
        let keys = &order[..distinct];
        // Which distinct key each check reads.
        let mut key_of = [0usize; N];
        for (k, o) in key_of.iter_mut().zip(of_check) {
            *k = keys.binary_search(o).unwrap_or(0);
        }
        let key_of = &key_of[..checks.len()];
        self.check_known::<N>(checks, keys, key_of, now)
            .unwrap_or_else(|| self.check_locked::<N>(checks, keys, key_of, now))
    }

    /// Every key known to this thread's view: decide under key locks. `None` if a key is
    /// not cached, missing or moved.
    fn check_known<const N: usize>(
        &self,
        checks: &[Check],
        keys: &[(usize, u64)],
        key_of: &[usize],
        now: u64,
    ) -> Option<Decision> {
        view::with(self.owner.id, |tables| {
            let mut slots: [&AtomicU64; N] = [&UNUSED; N];
            for (slot, &(shard, key)) in slots.iter_mut().zip(keys) {
                *slot = tables.get(shard)?.as_ref()?.find(key)?;
            }
            let slots = &slots[..keys.len()];
            let mut states = [0u64; N];
            if !lock_keys(slots, &mut states) {
                return None;
            }
            let (decision, _) = decide_keys::<N>(now, checks, key_of, &mut states);
            for (slot, &state) in slots.iter().zip(&states) {
                slot.store(state, Ordering::Release);
            }
            Some(decision.finish(checks))
        })
        .flatten()
    }

    /// The slow path: decide under the mutexes of the shards, inserting new keys where
    /// their shard has room and deciding the others on their rules' overflow buckets.
    /// Out of line, so that the known-keys path stays small. A new key of a rule the
    /// full overflow table has no entry for first frees the entries of rules gone idle
    /// (see [`Inner::reclaim`]), then the request starts again.
    #[inline(never)]
    fn check_locked<const N: usize>(
        &self,
        checks: &[Check],
        keys: &[(usize, u64)],
        key_of: &[usize],
        now: u64,
    ) -> Decision {
        self.with_reclaim(now, |may_reclaim| {
            self.check_in_shards::<N>(checks, keys, key_of, now, may_reclaim)
        })
    }

    /// [`Inner::check_locked`] once; `None` (no state written) when `may_reclaim` and a
    /// reclaim pass is due for a new key's rule without an overflow entry.
    fn check_in_shards<const N: usize>(
        &self,
        checks: &[Check],
        keys: &[(usize, u64)],
        key_of: &[usize],
        now: u64,
        may_reclaim: bool,
    ) -> Option<Decision> {
        let mut shards = [0usize; N];
        for (s, k) in shards.iter_mut().zip(keys) {
            *s = k.0;
        }
        let distinct = sort_dedup(&mut shards[..keys.len()]);
        let shards = &shards[..distinct];
        let mut guards: [Option<MutexGuard<'_, Writer>>; N] =
            std::array::from_fn(|i| shards.get(i).map(|&s| lock(&self.shards[s])));
        let guard_of = |shard: usize| shards.binary_search(&shard).unwrap_or(0);
        let missing_in = |g: &Writer, shard: usize| -> u64 {
            let mut mask = 0u64;
            for (k, &(s, key)) in keys.iter().enumerate() {
                if s == shard && g.table.find(key).is_none() {
                    mask |= 1 << k;
                }
            }
            mask
        };
        // Slots for the missing keys, shard by shard, lowest key first (making room may
        // drop idle keys, ours included, so they are counted again after it); the keys
        // refused a slot overflow.
        let rule_of = |k: usize| checks[key_of.iter().position(|&o| o == k).unwrap_or(0)].rule;
        let mut tags = [0u8; N];
        let mut overflowing = 0u64;
        for (g, &shard) in guards.iter_mut().zip(shards) {
            let Some(g) = g.as_mut() else { continue };
            let wanted = missing_in(g, shard).count_ones() as usize;
            if wanted == 0 {
                continue;
            }
            self.make_room(g, now, wanted);
            let (mut missing, mut granted) = (missing_in(g, shard), 0u64);
            while missing != 0 {
                let k = missing.trailing_zeros() as usize;
                missing &= missing - 1;
                tags[k] = self.overflow.tag(rule_of(k));
                if tags[k] == room::NO_TAG && may_reclaim && self.overflow.reclaim_due(now) {
                    return None;
                }
                let same = (0..k)
                    .filter(|&j| granted & (1 << j) != 0 && tags[j] == tags[k])
                    .count();
                if self.grants(g, tags[k], granted.count_ones() as usize, same) {
                    granted |= 1 << k;
                } else {
                    overflowing |= 1 << k;
                }
            }
        }
        // Which state each distinct key is decided on: its own, or (overflowing) the
        // overflow bucket of its rule, shared by the overflowing keys of that rule.
        let mut state_of: [usize; N] = std::array::from_fn(|k| k);
        let mut buckets: [(u64, usize); N] = [(0, 0); N];
        let mut n_buckets = 0;
        for k in (0..keys.len()).filter(|&k| overflowing & (1 << k) != 0) {
            let rule = rule_of(k);
            match buckets[..n_buckets].iter().find(|b| b.0 == rule) {
                Some(&(_, first)) => state_of[k] = first,
                None => {
                    buckets[n_buckets] = (rule, k);
                    n_buckets += 1;
                }
            }
        }
        // Bucket slots are locked after every key slot, in rule order (a global order).
        let buckets = &mut buckets[..n_buckets];
        buckets.sort_unstable();
        // New keys that get a slot start from their rule's overflow-bucket state (read
        // before any bucket is locked below).
        let mut held: [Option<&AtomicU64>; N] = [None; N];
        let mut states = [0u64; N];
        for (k, (slot, state)) in held
            .iter_mut()
            .zip(&mut states)
            .enumerate()
            .take(keys.len())
        {
            let (shard, key) = keys[k];
            *slot = guards[guard_of(shard)]
                .as_ref()
                .and_then(|g| g.table.find(key));
            match slot {
                Some(s) => *state = lock_key(s).unwrap_or(0),
                None if overflowing & (1 << k) == 0 => {
                    *state = self.overflow.start_state(rule_of(k));
                }
                None => {}
            }
        }
        for &(rule, k) in buckets.iter() {
            held[k] = self.overflow.slot(rule);
            states[k] = match held[k] {
                Some(s) => lock_key(s).unwrap_or(0),
                None => checks
                    .iter()
                    .zip(key_of)
                    .filter(|(_, &o)| state_of[o] == k)
                    .map(|(c, _)| room::exhausted(now, c))
                    .max()
                    .unwrap_or(now),
            };
        }
        let mut decided_on = [0usize; N];
        for (d, &k) in decided_on.iter_mut().zip(key_of) {
            *d = state_of[k];
        }
        let decided_on = &decided_on[..checks.len()];
        let (decision, changed) = decide_keys::<N>(now, checks, decided_on, &mut states);
        let overflowed = decided_on
            .iter()
            .filter(|&&k| overflowing & (1 << k) != 0)
            .count();
        if overflowed > 0 {
            self.overflowed
                .fetch_add(overflowed as u64, Ordering::Relaxed);
        }
        let mut missing = 0u64;
        for (k, (slot, &state)) in held.iter().zip(&states).enumerate() {
            match slot {
                Some(s) => s.store(state, Ordering::Release),
                None => missing |= 1 << k,
            }
        }
        // Key locks released: inserting may rebuild a shard (which waits for them).
        for (k, &(shard, key)) in keys.iter().enumerate() {
            if missing & !overflowing & changed & (1 << k) != 0 {
                if let Some(g) = guards[guard_of(shard)].as_mut() {
                    self.insert_new(g, key, states[k], tags[k], now);
                }
            }
        }
        let tables: [Option<Arc<Table>>; N] =
            std::array::from_fn(|i| guards[i].as_ref().map(|g| Arc::clone(&g.table)));
        drop(guards);
        for (&shard, table) in shards.iter().zip(tables) {
            if let Some(table) = table {
                self.refresh_view(shard, table);
            }
        }
        Some(decision.finish(checks))
    }
}

/// Stands in for slots not looked up (never read: only the first `keys.len()` are used).
static UNUSED: AtomicU64 = AtomicU64::new(0);

/// Decides `checks` on the states of their distinct keys (check `i` reads
/// `states[key_of[i]]`), storing the new states in place. Returns the decision without
/// its headline ([`KeyedDecision::finish`] adds it once the keys are released) and a mask
/// of the distinct keys whose state changed.
fn decide_keys<const N: usize>(
    now: u64,
    checks: &[Check],
    key_of: &[usize],
    states: &mut [u64],
) -> (KeyedDecision<N>, u64) {
    let mut tats = [0u64; N];
    for (tat, &k) in tats.iter_mut().zip(key_of) {
        *tat = states[k];
    }
    let (decision, changed) = decide_states(now, checks, &mut tats[..checks.len()]);
    let mut changed_keys = 0u64;
    for (i, &k) in key_of.iter().enumerate() {
        if changed & (1 << i) != 0 {
            states[k] = tats[i];
            changed_keys |= 1 << k;
        }
    }
    (
        KeyedDecision {
            decision,
            now,
            tats,
        },
        changed_keys,
    )
}

/// A decision whose headline is still to be computed (after the keys are released).
struct KeyedDecision<const N: usize> {
    decision: Decision,
    now: u64,
    tats: [u64; N],
}

impl<const N: usize> KeyedDecision<N> {
    fn finish(mut self, checks: &[Check]) -> Decision {
        fill_headline(&mut self.decision, self.now, checks, &self.tats);
        self.decision
    }
}
