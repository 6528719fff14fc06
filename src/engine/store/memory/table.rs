//! A shard's table: open addressing over atomic words, read without any lock.
//!
//! Slot `i` is two words: the key (`words[2i]`, [`EMPTY`] when free) and its state
//! (`words[2i + 1]`). Only the shard's writer (holding the shard mutex) inserts, and a
//! slot's key is written once and never changed or removed: keys leave a table only when
//! the writer rebuilds the shard into a new table. Before that, the writer *freezes* every
//! slot of the old table by swapping its state for [`MOVED`] with a compare-and-swap, so a
//! reader that still holds the old table either completes its own compare-and-swap before
//! the freeze (and the rebuild copies its update) or sees [`MOVED`] and looks again in the
//! current table. No update is lost and no slot is ever reused for another key, so a
//! compare-and-swap can never land on the wrong key (no ABA).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::single::wait;
use crate::engine::state::{LOCKED, MOVED};

/// The key word of a free slot.
pub(super) const EMPTY: u64 = 0;

/// The key a store uses for `key`: every key but [`EMPTY`] is itself; [`EMPTY`] shares a
/// slot with key 1 (keys are keyed 64-bit hashes, so this is one more 2^-64 collision).
#[inline(always)]
pub(super) fn slot_key(key: u64) -> u64 {
    key.max(1)
}

/// Capacity (slots) of a table holding `keys` keys: a power of two at most half full, so
/// the writer can insert up to three quarters full before rebuilding.
pub(super) fn capacity_for(keys: usize) -> usize {
    if keys == 0 {
        0
    } else {
        keys.saturating_mul(2).next_power_of_two().max(8)
    }
}

pub(super) struct Table {
    words: Box<[AtomicU64]>,
    /// Each slot's rule tag (see `room`): read and written by the writer only, never on
    /// the decision path.
    tags: Box<[AtomicU8]>,
    mask: usize,
}

impl Table {
    /// A table of `capacity` slots (zero or a power of two).
    pub(super) fn with_capacity(capacity: usize) -> Table {
        Table {
            words: (0..capacity * 2).map(|_| AtomicU64::new(EMPTY)).collect(),
            tags: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            mask: capacity.saturating_sub(1),
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.words.len() / 2
    }

    /// Whether one more key fits without passing three quarters full.
    pub(super) fn has_room(&self, keys: usize) -> bool {
        (keys + 1) * 4 <= self.capacity() * 3
    }

    /// The state word of `key` (a [`slot_key`]), if the table holds it.
    #[inline(always)]
    pub(super) fn find(&self, key: u64) -> Option<&AtomicU64> {
        self.position(key).map(|i| &self.words[2 * i + 1])
    }

    /// The slot index of `key`, if the table holds it.
    #[inline(always)]
    pub(super) fn position(&self, key: u64) -> Option<usize> {
        let mut i = key as usize & self.mask;
        for _ in 0..self.capacity() {
            let k = self.words[2 * i].load(Ordering::Acquire);
            if k == key {
                return Some(i);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// The state word of slot `index` (below [`Table::capacity`]).
    pub(super) fn state_at(&self, index: usize) -> &AtomicU64 {
        &self.words[2 * index + 1]
    }

    /// The key word of slot `index` (below [`Table::capacity`]).
    pub(super) fn key_at(&self, index: usize) -> u64 {
        self.words[2 * index].load(Ordering::Acquire)
    }

    /// Writer of the overflow table only: sets slot `index` to `key` with `state` (a new
    /// entry in a free or removed slot, or a removal). Used only while no reader can be on
    /// that slot's old key (see `room::Overflow`).
    pub(super) fn set_at(&self, index: usize, key: u64, state: u64) {
        self.words[2 * index + 1].store(state, Ordering::Relaxed);
        self.words[2 * index].store(key, Ordering::Release);
    }

    /// Writer only: adds `key` (absent from the table) with `state` and `tag`, returning
    /// its slot index. The caller keeps the table under three quarters full
    /// ([`Table::has_room`]).
    pub(super) fn insert(&self, key: u64, state: u64, tag: u8) -> Option<usize> {
        let mut i = key as usize & self.mask;
        for _ in 0..self.capacity() {
            if self.words[2 * i].load(Ordering::Relaxed) == EMPTY {
                self.tags[i].store(tag, Ordering::Relaxed);
                // The state first: a reader that sees the key (Acquire) sees its state.
                self.words[2 * i + 1].store(state, Ordering::Relaxed);
                self.words[2 * i].store(key, Ordering::Release);
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Every `(key, state)` held, read without freezing (a snapshot for estimates).
    pub(super) fn peek(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.words
            .chunks_exact(2)
            .map(|s| (s[0].load(Ordering::Acquire), s[1].load(Ordering::Acquire)))
            .filter(|&(k, _)| k != EMPTY)
    }

    /// Writer only: freezes every slot ([`MOVED`]) and hands each `(key, state, tag)` to
    /// `f`, waiting out multi-limit decisions that hold a key.
    pub(super) fn freeze(&self, mut f: impl FnMut(u64, u64, u8)) {
        for (slot, tag) in self.words.chunks_exact(2).zip(self.tags.iter()) {
            let key = slot[0].load(Ordering::Acquire);
            if key == EMPTY {
                continue;
            }
            let mut spins = 0;
            loop {
                let state = slot[1].load(Ordering::Acquire);
                if state == MOVED {
                    break;
                }
                if state & LOCKED != 0 {
                    wait(&mut spins);
                    continue;
                }
                if slot[1]
                    .compare_exchange_weak(state, MOVED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    f(key, state, tag.load(Ordering::Relaxed));
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_freeze() {
        let t = Table::with_capacity(capacity_for(3));
        assert_eq!(t.capacity(), 8);
        // Keys 8 and 16 share a home slot with 0's: linear probing keeps them apart.
        for (k, s) in [(8u64, 80u64), (16, 160), (3, 30)] {
            assert!(t.has_room(t.peek().count()));
            assert!(t.find(k).is_none());
            t.insert(k, s, k as u8).unwrap();
        }
        assert_eq!(t.find(16).unwrap().load(Ordering::Relaxed), 160);
        assert!(t.find(24).is_none());
        let mut seen = Vec::new();
        t.freeze(|k, s, tag| seen.push((k, s, tag)));
        seen.sort_unstable();
        assert_eq!(seen, [(3, 30, 3), (8, 80, 8), (16, 160, 16)]);
        assert_eq!(t.find(8).unwrap().load(Ordering::Relaxed), MOVED);
    }

    #[test]
    fn empty_table_and_room() {
        let t = Table::with_capacity(capacity_for(0));
        assert_eq!(t.capacity(), 0);
        assert!(t.find(1).is_none());
        assert!(t.insert(1, 1, 0).is_none());
        assert!(!t.has_room(0));
        let t = Table::with_capacity(8);
        assert!(t.has_room(5));
        assert!(!t.has_room(6));
        assert_eq!(slot_key(EMPTY), 1);
        assert_eq!(slot_key(7), 7);
    }
}
