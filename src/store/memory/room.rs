//! Room in a shard: inserting keys, rebuilding tables, and where new keys go when the
//! store is full.
//!
//! **Only idle keys are ever dropped** (a key whose TAT has passed carries no information,
//! see [`crate::gcra`]), so no decision changes because of the store's bound: a key that
//! is limited, blocked or has used some quota keeps its state however many new keys
//! arrive. A new key that finds no room is decided on its rule's **overflow bucket**
//! (one per [`Check::rule`], with the rule's own quota), shared by every new key of that
//! rule until room comes back. A flood of new keys therefore costs its own rule at most
//! one quota, and never frees or weakens a key already held. New keys of a rule start
//! from its overflow bucket's state (see [`Overflow::start_state`]), so no key, not even
//! one that overflowed before, is ever admitted more than its own limit allows; the price
//! is that after a flood, new keys of the flooded rule wait until its overflow bucket is
//! idle again (at most the rule's window, or its block period).
//!
//! **Per-rule shares.** Each shard counts its keys per rule. Its last eighth is reserved
//! for rules holding less than their fair share of the shard (its share of `max_keys`
//! divided by the rules it holds keys of): a rule above it, such as one being flooded,
//! fills at most seven eighths, and the rules below it (the ones not flooded) keep
//! finding room. A store used by a single rule can still fill every slot.
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

/// Slots of the overflow table (a power of two, at most 255: slot indices are rule tags).
pub(super) const OVERFLOW_SLOTS: usize = 128;

/// The most rules a store tracks ([`OVERFLOW_SLOTS`] at three quarters full). Their
/// buckets are never dropped; a rule beyond them has no share (it fills at most seven
/// eighths of a shard) and finds its new keys refused while the store is full.
pub(super) const MAX_OVERFLOW_BUCKETS: usize = OVERFLOW_SLOTS * 3 / 4;

/// The tag of a rule without an overflow bucket.
pub(super) const NO_TAG: u8 = u8::MAX;

/// One overflow bucket per rule, in a fixed table (2 KiB) that is never rebuilt, so its
/// slots never move: read and updated like shard slots, inserted under its own mutex.
/// A bucket's slot index is its rule's *tag*, which shards count their keys by.
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

    /// The slot index of `rule`'s overflow bucket, created on first use; `None` when
    /// [`MAX_OVERFLOW_BUCKETS`] other rules hold one.
    fn entry(&self, rule: u64) -> Option<usize> {
        let key = bucket_key(rule);
        if let Some(i) = self.table.position(key) {
            return Some(i);
        }
        let mut len = self.len.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = self.table.position(key) {
            return Some(i);
        }
        if *len >= MAX_OVERFLOW_BUCKETS {
            return None;
        }
        *len += 1;
        self.table.insert(key, 0, NO_TAG)
    }

    /// The state word of `rule`'s overflow bucket (see [`Overflow::entry`]).
    pub(super) fn slot(&self, rule: u64) -> Option<&AtomicU64> {
        self.entry(rule).map(|i| self.table.state_at(i))
    }

    /// The tag shards count `rule`'s keys by ([`NO_TAG`] beyond the tracked rules).
    pub(super) fn tag(&self, rule: u64) -> u8 {
        self.entry(rule).map_or(NO_TAG, |i| i as u8)
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

/// Writer only: one key tagged `tag` fewer in the shard.
fn uncount(w: &mut Writer, tag: u8) {
    if let Some(count) = w.counts.get_mut(usize::from(tag)) {
        *count -= 1;
        if *count == 0 {
            w.rules -= 1;
        }
    }
}

impl<C: Clock> Inner<C> {
    /// Writer only: before granting `wanted` new keys, drops idle keys if the shard is
    /// in or near its reserve and an eighth of its keys may be idle by now.
    pub(super) fn make_room(&self, w: &mut Writer, now: u64, wanted: usize) {
        if w.len + wanted + self.reserve > self.shard_cap && now >= w.next_idle_sweep {
            self.rebuild(w, now, wanted, true);
        }
    }

    /// Writer only: whether a new key of the rule tagged `tag` may take a slot, after
    /// `pending` new keys of the same request (`same` of them with this tag) were granted
    /// one: always while the shard is out of its reserve, in the reserve only for a rule
    /// below its fair share, never beyond the shard's share of `max_keys`.
    pub(super) fn grants(&self, w: &Writer, tag: u8, pending: usize, same: usize) -> bool {
        let len = w.len + pending;
        if len >= self.shard_cap {
            return false;
        }
        if self.shard_cap - len > self.reserve {
            return true;
        }
        let Some(&count) = w.counts.get(usize::from(tag)) else {
            return false;
        };
        let rules = w.rules as usize + usize::from(count == 0);
        (count as usize + same) * rules < self.shard_cap
    }

    /// Writer only: inserts `key` of the rule tagged `tag`, which the caller found
    /// missing under the same lock and was granted a slot ([`Inner::grants`]), with
    /// `state`; grows or sweeps the table first when needed.
    pub(super) fn insert_new(&self, w: &mut Writer, key: u64, state: u64, tag: u8, now: u64) {
        debug_assert!(w.len < self.shard_cap, "insert_new without room");
        w.inserts_since_sweep += 1;
        let sweep_due = w.inserts_since_sweep > w.len / 2 + 64;
        if sweep_due {
            w.inserts_since_sweep = 0;
        }
        if !w.table.has_room(w.len)
            || (sweep_due && w.table.peek().any(|(_, state)| is_idle(state, now)))
        {
            self.rebuild(w, now, 1, false);
        }
        if w.table.insert(key, state, tag).is_some() {
            w.len += 1;
            if let Some(count) = w.counts.get_mut(usize::from(tag)) {
                *count += 1;
                if *count == 1 {
                    w.rules += 1;
                }
            }
        }
    }

    /// Writer only: moves the shard into a new table with room for `room` more keys,
    /// dropping idle keys (and only those). A rebuild made to find room (`gate`) that
    /// leaves the shard in its reserve, or frees less than an eighth of it, notes when an
    /// eighth of its keys will be idle ([`Writer::next_idle_sweep`]): no new key
    /// triggers another one before, so rebuilds stay amortized (each frees an eighth).
    pub(super) fn rebuild(&self, w: &mut Writer, now: u64, room: usize, gate: bool) {
        #[cfg(test)]
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        let mut live = Vec::with_capacity(w.len);
        w.table
            .freeze(|key, state, tag| live.push((key, state, tag)));
        let before = live.len();
        live.retain(|&(_, state, tag)| {
            let keep = !is_idle(state, now);
            if !keep {
                uncount(w, tag);
            }
            keep
        });
        let idle = before - live.len();
        if idle > 0 {
            self.idle_evicted.fetch_add(idle as u64, Ordering::Relaxed);
        }
        let still_short = live.len() + room + self.reserve > self.shard_cap;
        if gate && !live.is_empty() && (still_short || idle * 8 < before) {
            let nth = live.len() / 8;
            live.select_nth_unstable_by_key(nth, |&(_, state, _)| tat_of(state));
            // Past this TAT, at least an eighth of the keys held now are idle (TATs of
            // held keys only grow, so it may take longer).
            w.next_idle_sweep = tat_of(live[nth].1);
        }
        let table = Table::with_capacity(capacity_for(live.len() + room));
        for &(key, state, tag) in &live {
            table.insert(key, state, tag);
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
            self.rebuild(w, now, 0, false);
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
