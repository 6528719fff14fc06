//! Room in a shard: inserting keys, rebuilding tables, and where new keys go when the
//! store is full.
//!
//! **Only idle keys are ever dropped** (a key whose TAT has passed carries no information,
//! see [`crate::gcra`]), so no decision changes because of the store's bound: a key that
//! is limited, blocked or has used some quota keeps its state however many new keys
//! arrive. A shard that holds its share of `max_keys` and has no idle key left takes no
//! new key: a new key is then decided on its rule's **overflow bucket** (one per
//! [`Check::rule`], with the rule's own quota), shared by every new key of that rule until
//! room comes back. A flood of new keys therefore costs its own rule at most one quota,
//! and never frees or weakens a key already held. New keys of a rule start from its
//! overflow bucket's state (see [`Overflow::start_state`]), so no key, not even one that
//! overflowed before, is ever admitted more than its own limit allows; the price is that
//! after a flood, new keys of the flooded rule wait until its overflow bucket is idle
//! again (at most the rule's window, or its block period).
//!
//! A full shard does not scan itself for idle keys on every new key: each rebuild of a
//! full shard notes when an eighth of its keys will be idle, and the next rebuild waits
//! for that time. New keys meanwhile overflow, at O(1) each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::many::load_unlocked;
use super::table::{capacity_for, slot_key, Table};
use super::{Inner, Writer};
use crate::clock::Clock;
use crate::gcra::{is_idle, tat_of, Check, Decision, Step};

/// Slots of the overflow table (a power of two).
const OVERFLOW_SLOTS: usize = 256;

/// The most overflow buckets a store holds ([`OVERFLOW_SLOTS`] at three quarters full).
/// Overflow buckets are never dropped; a rule beyond them finds its new keys refused
/// while the store is full.
pub(super) const MAX_OVERFLOW_BUCKETS: usize = OVERFLOW_SLOTS * 3 / 4;

/// One overflow bucket per rule, in a fixed table (4 KiB) that is never rebuilt, so its
/// slots never move: read and updated like shard slots, inserted under its own mutex.
pub(super) struct Overflow {
    table: Table,
    len: Mutex<usize>,
}

impl Overflow {
    pub(super) fn new() -> Overflow {
        Overflow {
            table: Table::with_capacity(OVERFLOW_SLOTS),
            len: Mutex::new(0),
        }
    }

    /// The state word of `rule`'s overflow bucket, created on first use; `None` when
    /// [`MAX_OVERFLOW_BUCKETS`] other rules hold one.
    pub(super) fn slot(&self, rule: u64) -> Option<&AtomicU64> {
        let key = bucket_key(rule);
        if let Some(slot) = self.table.find(key) {
            return Some(slot);
        }
        let mut len = self.len.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = self.table.find(key) {
            return Some(slot);
        }
        if *len >= MAX_OVERFLOW_BUCKETS {
            return None;
        }
        *len += 1;
        self.table.insert(key, 0)
    }

    /// The state a new key of `rule` starts from: its rule's overflow bucket's (0 if the
    /// rule has none). Every request a key had decided on the bucket moved the bucket's
    /// TAT at least as far as it would have moved the key's own, so a key that overflowed
    /// and then finds room starts no fresher than its own history. (Overflow decisions on
    /// a key and its insertion both happen under its shard's mutex, so none is missed.)
    pub(super) fn start_state(&self, rule: u64) -> u64 {
        self.table
            .find(bucket_key(rule))
            .and_then(load_unlocked)
            .unwrap_or(0)
    }
}

/// The overflow table's key for `rule` (rule ids 0 and 1 must not share a slot, as
/// [`slot_key`] would make them).
fn bucket_key(rule: u64) -> u64 {
    slot_key(rule ^ 0x9E37_79B9_7F4A_7C15)
}

/// The state a check is decided on when its rule has no overflow bucket: exhausted at
/// `now` (refused, unless the check is a shadow one). Never stored.
pub(super) fn exhausted(now: u64, check: &Check) -> u64 {
    now.saturating_add(check.params.limit_ns)
}

impl<C: Clock> Inner<C> {
    /// Writer only: how many of `wanted` new keys the shard can take now (at most its
    /// share of `max_keys`), after dropping idle keys if the shard is full and an eighth
    /// of its keys may be idle by now.
    pub(super) fn make_room(&self, w: &mut Writer, now: u64, wanted: usize) -> usize {
        if w.len + wanted > self.shard_cap && now >= w.next_idle_sweep {
            self.rebuild(w, now, wanted);
        }
        self.shard_cap.saturating_sub(w.len).min(wanted)
    }

    /// Writer only: inserts `key`, which the caller found missing under the same lock
    /// and made room for ([`Inner::make_room`]), with `state`; grows or sweeps the table
    /// first when needed.
    pub(super) fn insert_new(&self, w: &mut Writer, key: u64, state: u64, now: u64) {
        debug_assert!(w.len < self.shard_cap, "insert_new without room");
        w.inserts_since_sweep += 1;
        let sweep_due = w.inserts_since_sweep > w.len / 2 + 64;
        if sweep_due {
            w.inserts_since_sweep = 0;
        }
        if !w.table.has_room(w.len)
            || (sweep_due && w.table.peek().any(|(_, state)| is_idle(state, now)))
        {
            self.rebuild(w, now, 1);
        }
        if w.table.insert(key, state).is_some() {
            w.len += 1;
        }
    }

    /// Writer only: moves the shard into a new table with room for `room` more keys,
    /// dropping idle keys (and only those). If the shard is still full, notes when an
    /// eighth of its keys will be idle ([`Writer::next_idle_sweep`]).
    pub(super) fn rebuild(&self, w: &mut Writer, now: u64, room: usize) {
        let mut live = Vec::with_capacity(w.len);
        w.table.freeze(|key, state| live.push((key, state)));
        let before = live.len();
        live.retain(|&(_, state)| !is_idle(state, now));
        let idle = before - live.len();
        if idle > 0 {
            self.idle_evicted.fetch_add(idle as u64, Ordering::Relaxed);
        }
        if room > 0 && live.len() + room > self.shard_cap && !live.is_empty() {
            let nth = live.len() / 8;
            live.select_nth_unstable_by_key(nth, |&(_, state)| tat_of(state));
            // Past this TAT, at least an eighth of the keys held now are idle (TATs of
            // held keys only grow, so it may take longer).
            w.next_idle_sweep = tat_of(live[nth].1);
        }
        let table = Table::with_capacity(capacity_for(live.len() + room));
        for &(key, state) in &live {
            table.insert(key, state);
        }
        w.table = Arc::new(table);
        w.len = live.len();
        w.inserts_since_sweep = 0;
    }

    /// Writer only: drops idle keys and returns memory (rebuilding only if either applies).
    pub(super) fn sweep_shard(&self, w: &mut Writer, now: u64) {
        let oversized = w.table.capacity() > capacity_for(w.len).max(64);
        w.inserts_since_sweep = 0;
        if oversized || w.table.peek().any(|(_, state)| is_idle(state, now)) {
            self.rebuild(w, now, 0);
        }
    }

    /// Decides a new key that found no room on its rule's overflow bucket.
    pub(super) fn overflow_one(&self, now: u64, check: &Check) -> Decision {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        let decided = self
            .overflow
            .slot(check.rule)
            .and_then(|slot| super::many::step_on(slot, now, check));
        let (step, stored) = decided.unwrap_or_else(|| {
            let stored = exhausted(now, check);
            (Step::of(now, check, stored), stored)
        });
        step.decision(now, check, stored)
    }
}
