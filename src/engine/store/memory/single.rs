//! Requests with one limit: the path nearly every request takes.
//!
//! **Known key** (in this thread's view, see [`super::view`]): one compare-and-swap on
//! the key's state word, no lock and no shared counter. The CAS waits while a
//! multi-limit decision holds the word ([`LOCKED`], see [`super::many`]) and gives up on
//! [`MOVED`] (the table was rebuilt, see [`super::table`]), so every decision stays
//! atomic and exact.
//!
//! **Slow path** (key not cached, missing or moved): under the shard mutex, where the
//! table cannot be replaced; a new key is inserted if its shard has room, else decided
//! on its rule's overflow bucket (see [`super::room`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::table::slot_key;
use super::{lock, room, view, Inner};
use crate::engine::gcra::{Check, Decision, Step};
use crate::engine::state::{LOCKED, MOVED};

/// Spins before yielding the thread while a key is locked (a holder locks at most
/// [`MAX_CHECKS`] keys for a few hundred nanoseconds, unless it is preempted).
const SPINS: u32 = 64;

/// The state of `slot` once no multi-limit decision holds it; `None` if it moved.
#[inline(always)]
pub(super) fn load_unlocked(slot: &AtomicU64) -> Option<u64> {
    let mut spins = 0;
    loop {
        let state = slot.load(Ordering::Acquire);
        if state == MOVED {
            return None;
        }
        if state & LOCKED == 0 {
            return Some(state);
        }
        wait(&mut spins);
    }
}

pub(super) fn wait(spins: &mut u32) {
    if *spins < SPINS {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// One single-limit step on `slot` by compare-and-swap: the step and the state stored
/// after it. `None` if the slot moved (nothing was written).
#[inline(always)]
pub(super) fn step_on(slot: &AtomicU64, now: u64, check: &Check) -> Option<(Step, u64)> {
    let mut current = load_unlocked(slot)?;
    loop {
        let step = Step::of(now, check, current);
        let Some(new) = step.new_state else {
            return Some((step, current));
        };
        match slot.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some((step, new)),
            Err(_) => current = load_unlocked(slot)?,
        }
    }
}

impl Inner {
    pub(super) fn check_one(&self, check: &Check, now: u64) -> Decision {
        let key = slot_key(check.key);
        let shard = self.shard_of(key);
        // Fast path: a known key in this thread's view, decided with a compare-and-swap;
        // no lock, no shared counter. `None`: not cached, missing, or moved.
        let fast = view::with(self.owner.id, |tables| {
            let slot = tables.get(shard)?.as_ref()?.find(key)?;
            step_on(slot, now, check)
        });
        if let Some(Some((step, stored))) = fast {
            return step.decision(now, check, stored);
        }
        self.check_one_locked(check, key, shard, now)
    }

    /// The single-limit slow path, under the shard mutex; out of line, so that the fast
    /// path stays small where it is inlined. Decides at the same clock reading as the
    /// fast path would have (the request's arrival). A new key of a rule the full
    /// overflow table has no entry for first frees the entries of rules gone idle (see
    /// [`Inner::reclaim`]), then looks again.
    #[inline(never)]
    fn check_one_locked(&self, check: &Check, key: u64, shard: usize, now: u64) -> Decision {
        self.with_reclaim(now, |may_reclaim| {
            self.check_one_in_shard(check, key, shard, now, may_reclaim)
        })
    }

    /// [`Inner::check_one_locked`] once; `None` (nothing written) when `may_reclaim` and
    /// a reclaim pass is due for a new key's rule without an overflow entry.
    fn check_one_in_shard(
        &self,
        check: &Check,
        key: u64,
        shard: usize,
        now: u64,
        may_reclaim: bool,
    ) -> Option<Decision> {
        let mut w = lock(&self.shards[shard]);
        // Under the mutex the table cannot be replaced, so a slot found is never moved.
        let known = w.table.find(key).and_then(|slot| step_on(slot, now, check));
        let decision = if let Some((step, stored)) = known {
            step.decision(now, check, stored)
        } else {
            // A new key: stored if the shard has room, else decided on its rule's
            // overflow bucket.
            let tag = self.overflow.tag(check.rule);
            if tag == room::NO_TAG && may_reclaim && self.overflow.reclaim_due(now) {
                return None;
            }
            self.make_room(&mut w, now, 1);
            if self.grants(&w, tag, 0, 0) {
                let start = self.overflow.start_state(check.rule);
                let step = Step::of(now, check, start);
                if let Some(new) = step.new_state {
                    self.insert_new(&mut w, key, new, tag, now);
                }
                step.decision(now, check, step.new_state.unwrap_or(start))
            } else {
                self.overflow_one(now, check)
            }
        };
        let table = Arc::clone(&w.table);
        drop(w);
        self.refresh_view(shard, table);
        Some(decision)
    }
}
