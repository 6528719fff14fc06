//! Requests with several limits, decided all-or-nothing.
//!
//! **Known keys** are decided under the *read* locks of their shards, so requests that
//! share a hot key (a global rule) do not serialize on a shard's write lock: each key's
//! state word is locked by setting [`LOCKED`] with a compare-and-swap, in one global
//! order (shard, then key), the limits are decided on the states read, and every state is
//! stored back with the lock bit cleared. Single-limit checks never take a key lock: they
//! wait while the bit is set, then compare-and-swap as usual, so every decision stays
//! atomic and exact.
//!
//! **A missing key** sends the request to the write locks of its shards (in ascending
//! order), which inserts it. A state never carries the lock bit while its shard is
//! write-locked, because key locks are taken and released under read locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLockWriteGuard;

use super::{lock, read, Inner, ShardMap};
use crate::clock::Clock;
use crate::gcra::{decide, Check, Decision, MAX_CHECKS};

/// Transient lock bit of a state word (below the block flag; TATs stay below it because
/// clock readings are capped at [`MAX_NOW`]).
pub(super) const LOCKED: u64 = 1 << 62;

/// Clock readings are capped here (2^61 ns, 73 years of uptime): a TAT is at most a
/// reading plus a limit (at most 2^60 ns) plus a block (at most 366 days), below [`LOCKED`].
pub(super) const MAX_NOW: u64 = 1 << 61;

/// Spins before yielding the thread while a key is locked (a holder locks at most
/// [`MAX_CHECKS`] keys for a few hundred nanoseconds, unless it is preempted).
const SPINS: u32 = 64;

/// The state of `slot` once no multi-limit decision holds it.
pub(super) fn load_unlocked(slot: &AtomicU64) -> u64 {
    let mut spins = 0;
    loop {
        let state = slot.load(Ordering::Acquire);
        if state & LOCKED == 0 {
            return state;
        }
        wait(&mut spins);
    }
}

fn wait(spins: &mut u32) {
    if *spins < SPINS {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Locks `slot`, returning its state (without the bit).
fn lock_key(slot: &AtomicU64) -> u64 {
    let mut spins = 0;
    loop {
        let state = load_unlocked(slot);
        if slot
            .compare_exchange_weak(state, state | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return state;
        }
        wait(&mut spins);
    }
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

impl<C: Clock> Inner<C> {
    pub(super) fn check_many(&self, checks: &[Check]) -> Decision {
        // Stack arrays sized for the request: zeroing room for 64 checks on every call
        // would cost more than the decision.
        if checks.len() <= 4 {
            self.check_many_in::<4>(checks)
        } else if checks.len() <= 16 {
            self.check_many_in::<16>(checks)
        } else {
            self.check_many_in::<MAX_CHECKS>(checks)
        }
    }

    /// At most `N` checks (more are ignored; callers validate the count).
    fn check_many_in<const N: usize>(&self, checks: &[Check]) -> Decision {
        let checks = &checks[..checks.len().min(N)];
        // (shard, key) of every check: the lock order of shards and of keys.
        let mut order = [(0usize, 0u64); N];
        for (o, c) in order.iter_mut().zip(checks) {
            *o = (self.shard_of(c.key), c.key);
        }
        let distinct = sort_dedup(&mut order[..checks.len()]);
        let keys = &order[..distinct];
        // Which distinct key each check reads.
        let mut key_of = [0usize; N];
        for (k, c) in key_of.iter_mut().zip(checks) {
            *k = keys
                .binary_search(&(self.shard_of(c.key), c.key))
                .unwrap_or(0);
        }
        let key_of = &key_of[..checks.len()];
        let mut shards = [0usize; N];
        for (s, k) in shards.iter_mut().zip(keys) {
            *s = k.0;
        }
        let distinct = sort_dedup(&mut shards[..keys.len()]);
        let shards = &shards[..distinct];
        self.check_known::<N>(checks, keys, key_of, shards)
            .unwrap_or_else(|| self.check_inserting::<N>(checks, keys, key_of, shards))
    }

    /// Every key known: decide under read locks and key locks. `None` if a key is missing.
    fn check_known<const N: usize>(
        &self,
        checks: &[Check],
        keys: &[(usize, u64)],
        key_of: &[usize],
        shards: &[usize],
    ) -> Option<Decision> {
        let guards: [_; N] = std::array::from_fn(|i| shards.get(i).map(|&s| read(&self.shards[s])));
        let mut slots: [Option<&AtomicU64>; N] = [None; N];
        for (slot, &(shard, key)) in slots.iter_mut().zip(keys) {
            let guard = guards[shards.binary_search(&shard).ok()?].as_ref()?;
            *slot = Some(guard.map.get(&key)?);
        }
        let slots = || slots[..keys.len()].iter().flatten();
        let mut states = [0u64; N];
        for (state, slot) in states.iter_mut().zip(slots()) {
            *state = lock_key(slot);
        }
        let (decision, _) = decide_keys::<N>(self.now(), checks, key_of, &mut states);
        for (slot, &state) in slots().zip(&states) {
            slot.store(state, Ordering::Release);
        }
        Some(decision)
    }

    /// Some key is new: decide under the write locks of the shards, inserting it.
    fn check_inserting<const N: usize>(
        &self,
        checks: &[Check],
        keys: &[(usize, u64)],
        key_of: &[usize],
        shards: &[usize],
    ) -> Decision {
        let mut guards: [Option<RwLockWriteGuard<'_, ShardMap>>; N] =
            std::array::from_fn(|i| shards.get(i).map(|&s| lock(&self.shards[s])));
        let now = self.now();
        let guard_of = |shard: usize| shards.binary_search(&shard).unwrap_or(0);
        let mut states = [0u64; N];
        for (state, &(shard, key)) in states.iter_mut().zip(keys) {
            *state = guards[guard_of(shard)]
                .as_ref()
                .and_then(|g| g.map.get(&key))
                .map_or(0, |v| v.load(Ordering::Acquire));
        }
        let (decision, changed) = decide_keys::<N>(now, checks, key_of, &mut states);
        for (k, &(shard, key)) in keys.iter().enumerate() {
            if changed & (1 << k) != 0 {
                if let Some(g) = guards[guard_of(shard)].as_mut() {
                    self.write(g, key, states[k], now);
                }
            }
        }
        decision
    }
}

/// Decides `checks` on the states of their distinct keys (check `i` reads
/// `states[key_of[i]]`), storing the new states in place; returns the decision and a mask
/// of the distinct keys whose state changed.
fn decide_keys<const N: usize>(
    now: u64,
    checks: &[Check],
    key_of: &[usize],
    states: &mut [u64],
) -> (Decision, u64) {
    let mut tats = [0u64; N];
    for (tat, &k) in tats.iter_mut().zip(key_of) {
        *tat = states[k];
    }
    let (decision, changed) = decide(now, checks, &mut tats[..checks.len()]);
    let mut changed_keys = 0u64;
    for (i, &k) in key_of.iter().enumerate() {
        if changed & (1 << i) != 0 {
            states[k] = tats[i];
            changed_keys |= 1 << k;
        }
    }
    (decision, changed_keys)
}
