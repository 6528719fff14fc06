//! Room in a shard: inserting keys, rebuilding tables, and where new keys go when the
//! store is full.
//!
//! **Only idle keys are ever dropped** (a key whose TAT has passed carries no information,
//! see [`crate::engine::gcra`]), so no decision changes because of the store's bound: a key that
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

use super::single::load_unlocked;
use super::table::{capacity_for, slot_key, Table, EMPTY};
use super::{Inner, Writer};
use crate::engine::gcra::{is_idle, tat_of, Check, Decision, Step};

/// Slots of the overflow table (a power of two, at most 255: slot indices are rule tags).
pub(super) const OVERFLOW_SLOTS: usize = 128;

/// The most rules a store tracks at a time ([`OVERFLOW_SLOTS`] at three quarters full).
/// A rule beyond them has no share (it fills at most seven eighths of a shard) and finds
/// its new keys refused while the store is full, until an entry is reclaimed (see
/// [`Overflow`]).
pub(super) const MAX_OVERFLOW_BUCKETS: usize = OVERFLOW_SLOTS * 3 / 4;

/// The tag of a rule without an overflow bucket.
pub(super) const NO_TAG: u8 = u8::MAX;

/// The least time between two reclaim passes that only time made due (a busy bucket of a
/// rule with a short window could otherwise make one due every few milliseconds; each
/// locks every shard). Delaying one only refuses a new rule a little longer.
const RECLAIM_GAP_NS: u64 = 100_000_000;

/// The key word of a reclaimed overflow entry: skipped by lookups, reused by new entries.
/// Never a [`bucket_key`].
const REMOVED: u64 = u64::MAX;

/// One overflow bucket per rule, in a fixed table (2 KiB) that is never rebuilt, so its
/// slots never move: read and updated like shard slots, inserted under its own mutex.
/// A bucket's slot index is its rule's *tag*, which shards count their keys by.
///
/// **Reclaiming entries.** An entry whose rule holds no key in any shard and whose bucket
/// is idle carries no information: it is removed (its slot marked [`REMOVED`], reused by
/// the next new entry), so rules that come and go (layers rebuilt with new rule ids) never
/// use the table up. Every use of the table (looking a rule up, deciding on a bucket,
/// counting a tag) happens under some shard's mutex, so [`Inner::reclaim`], holding every
/// shard's mutex, has it to itself: no bucket is removed while a decision is on it, and no
/// tag is reused while a shard counts a key under it. A rule that comes back starts from a
/// fresh bucket, which decides exactly like the idle one it had.
pub(super) struct Overflow {
    table: Table,
    len: Mutex<usize>,
    /// Entries created, and tags whose count fell to zero in a shard: a reclaim pass that
    /// freed nothing is worth repeating only after one of these, or at [`Overflow::next`].
    events: AtomicU64,
    /// `events` as the last reclaim pass saw them, and the earliest time a bucket it kept
    /// (held by no key) goes idle, at least [`RECLAIM_GAP_NS`] after that pass. Written
    /// under `pass`; read as hints.
    seen: AtomicU64,
    next: AtomicU64,
    /// The latest arrival time a request on the overflow path brought. Callers read their
    /// clock before the store decides, so a pass may run on a reading older than ones
    /// already decided; it uses this instead, so it never keeps as live an entry that a
    /// request already saw idle (keeping it would refuse that rule's next new key until
    /// the pass gate reopens, up to [`RECLAIM_GAP_NS`] later).
    latest: AtomicU64,
    pass: Mutex<()>,
    /// Reclaim passes run (tests check they stay rare).
    #[cfg(test)]
    pub(super) passes: AtomicU64,
}

impl Overflow {
    pub(super) fn new() -> Overflow {
        Overflow {
            table: Table::with_capacity(OVERFLOW_SLOTS),
            len: Mutex::new(0),
            events: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            next: AtomicU64::new(0),
            latest: AtomicU64::new(0),
            pass: Mutex::new(()),
            #[cfg(test)]
            passes: AtomicU64::new(0),
        }
    }

    /// The slot index of `rule`'s overflow bucket, created on first use (in the first free
    /// or removed slot of its probe sequence); `None` when [`MAX_OVERFLOW_BUCKETS`] other
    /// rules hold one. The caller holds a shard's mutex.
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
        // Fewer than OVERFLOW_SLOTS entries are live, so a free or removed slot exists.
        let mut i = key as usize & (OVERFLOW_SLOTS - 1);
        for _ in 0..OVERFLOW_SLOTS {
            let k = self.table.key_at(i);
            if k == EMPTY || k == REMOVED {
                *len += 1;
                self.table.set_at(i, key, 0);
                self.note_event();
                return Some(i);
            }
            i = (i + 1) & (OVERFLOW_SLOTS - 1);
        }
        None
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

    /// An entry was created or a tag's count fell to zero in a shard.
    pub(super) fn note_event(&self) {
        self.events.fetch_add(1, Ordering::Release);
    }

    /// Records `now` as an arrival time; returns the latest one recorded (see the field
    /// `latest`).
    fn record_arrival(&self, now: u64) -> u64 {
        self.latest.fetch_max(now, Ordering::AcqRel).max(now)
    }

    /// Whether a reclaim pass at `now` may free an entry the last one kept.
    pub(super) fn reclaim_due(&self, now: u64) -> bool {
        self.events.load(Ordering::Acquire) != self.seen.load(Ordering::Acquire)
            || now >= self.next.load(Ordering::Acquire)
    }

    /// Removes every entry whose tag `held` does not mark and whose bucket is idle at
    /// `now`; returns how many, and the earliest time a kept bucket goes idle. The caller
    /// holds every shard's mutex.
    fn remove_idle(&self, now: u64, held: &[bool; OVERFLOW_SLOTS]) -> (usize, u64) {
        let mut len = self.len.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = u64::MAX;
        let mut freed = 0;
        for (i, _) in held.iter().enumerate().filter(|(_, &held)| !held) {
            let key = self.table.key_at(i);
            if key == EMPTY || key == REMOVED {
                continue;
            }
            // No bucket is locked: bucket locks are held only under a shard mutex.
            let state = self.table.state_at(i).load(Ordering::Acquire);
            if is_idle(state, now) {
                self.table.set_at(i, REMOVED, 0);
                *len -= 1;
                freed += 1;
            } else {
                next = next.min(tat_of(state));
            }
        }
        (freed, next)
    }
}

/// The overflow table's key for `rule` (rule ids 0 and 1 must not share a slot, as
/// [`slot_key`] would make them; never [`REMOVED`]).
fn bucket_key(rule: u64) -> u64 {
    slot_key(rule ^ 0x9E37_79B9_7F4A_7C15).min(REMOVED - 1)
}

/// The state a check is decided on when its rule has no overflow bucket: exhausted at
/// `now` (refused, unless the check is a shadow one). Never stored.
pub(super) fn exhausted(now: u64, check: &Check) -> u64 {
    now.saturating_add(check.params.limit_ns)
}

/// Writer only: one key tagged `tag` fewer in the shard; whether it was the tag's last.
fn uncount(w: &mut Writer, tag: u8) -> bool {
    if let Some(count) = w.counts.get_mut(usize::from(tag)) {
        *count -= 1;
        if *count == 0 {
            w.rules -= 1;
            return true;
        }
    }
    false
}

impl Inner {
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
        let mut emptied = false;
        live.retain(|&(_, state, tag)| {
            let keep = !is_idle(state, now);
            if !keep {
                emptied |= uncount(w, tag);
            }
            keep
        });
        if emptied {
            self.overflow.note_event();
        }
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

    /// Frees the overflow entries of rules that hold no key in any shard and whose bucket
    /// is idle at `now` (see [`Overflow`]); returns how many. With `gated`, only if an
    /// entry may have become free since the last pass ([`Overflow::reclaim_due`]; by time
    /// alone, at most every [`RECLAIM_GAP_NS`]), so a table full of live entries is not
    /// scanned again on every new rule's request. Only gated passes (a request's, at its
    /// own arrival) record what they saw for the gate: a sweep's time may be older than
    /// the requests' meanwhile, and must not delay their passes. Locks every shard (in
    /// order): the caller holds none.
    pub(super) fn reclaim(&self, gated: bool, now: u64) -> usize {
        let o = &self.overflow;
        let _pass = o.pass.lock().unwrap_or_else(PoisonError::into_inner);
        let now = if gated { o.record_arrival(now) } else { now };
        if gated && !o.reclaim_due(now) {
            return 0;
        }
        // Events after this reading are seen by the pass or make the next one due.
        let events = o.events.load(Ordering::Acquire);
        let guards: Vec<_> = self.shards.iter().map(super::lock).collect();
        let mut held = [false; OVERFLOW_SLOTS];
        for g in &guards {
            for (h, &count) in held.iter_mut().zip(g.counts.iter()) {
                *h |= count > 0;
            }
        }
        #[cfg(test)]
        o.passes.fetch_add(1, Ordering::Relaxed);
        let (freed, next) = o.remove_idle(now, &held);
        drop(guards);
        if gated {
            o.next.store(
                next.max(now.saturating_add(RECLAIM_GAP_NS)),
                Ordering::Release,
            );
            o.seen.store(events, Ordering::Release);
        }
        freed
    }

    /// Decides a new key that found no room on its rule's overflow bucket.
    pub(super) fn overflow_one(&self, now: u64, check: &Check) -> Decision {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        self.overflow.record_arrival(now);
        let decided = self
            .overflow
            .slot(check.rule)
            .and_then(|slot| super::single::step_on(slot, now, check));
        let (step, stored) = decided.unwrap_or_else(|| {
            let stored = exhausted(now, check);
            (Step::of(now, check, stored), stored)
        });
        step.decision(now, check, stored)
    }
}
