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
//! **The slow path** ([`shards`]: a key missing or moved, or no cached table) takes the
//! mutexes of the shards involved in ascending order, locks the keys the tables hold,
//! decides, stores them back, and then inserts the new keys. Nobody else can see those keys meanwhile:
//! they are missing from every table, so any other request on them waits for the mutex.
//! Rebuilds wait for key locks to clear (holders never wait for a mutex), so neither path
//! can deadlock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::single::{load_unlocked, wait};
use super::table::slot_key;
use super::{view, Inner};
use crate::engine::gcra::{decide_states, fill_headline, Check, Decision, MAX_CHECKS};
use crate::engine::state::LOCKED;

mod shards;

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
