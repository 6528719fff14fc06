//! Each thread's view of the stores it uses: the shard tables it last saw.
//!
//! Readers decide on a table taken from this thread-local cache, without touching the
//! shard's mutex or any shared counter. A cached table may be stale (the shard was
//! rebuilt since): every slot of a replaced table reads [`super::table::MOVED`], and a key
//! inserted since is missing from it, and both send the reader to the shard mutex, which
//! refreshes the view. So a stale view costs one slow request, never a wrong decision.
//!
//! A replaced table's memory returns once no view holds it: when each thread that cached
//! it next touches that shard, sweeps or drops the store on this thread, or exits.
//!
//! A thread's views sit in [`SLOTS`] slots chosen by store id (ids are handed out in
//! sequence, so the first [`SLOTS`] stores of a process never share a slot): finding a
//! store's view is one index, however many stores the thread uses. Two live stores whose
//! ids share a slot take turns in it (each turn costs one slow request). Views of dropped
//! stores are purged whenever the thread creates a view.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::table::Table;

/// View slots per thread (a power of two).
pub(super) const SLOTS: usize = 64;

/// A process-unique store id.
pub(super) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A store's identity for views: its id, and a token whose liveness is the store's.
pub(super) struct Owner {
    pub(super) id: u64,
    pub(super) alive: Arc<()>,
}

struct View {
    id: u64,
    alive: Weak<()>,
    tables: Box<[Option<Arc<Table>>]>,
}

thread_local! {
    static VIEWS: RefCell<Vec<Option<View>>> = const { RefCell::new(Vec::new()) };
}

fn slot_of(id: u64) -> usize {
    id as usize & (SLOTS - 1)
}

/// Runs `f` on this thread's cached tables of store `id` (indexed by shard; `None` where
/// none is cached). `None` if the thread has no view of the store.
#[inline]
pub(super) fn with<R>(id: u64, f: impl FnOnce(&[Option<Arc<Table>>]) -> R) -> Option<R> {
    VIEWS
        .try_with(|views| {
            let views = views.try_borrow().ok()?;
            let view = views.get(slot_of(id))?.as_ref()?;
            (view.id == id).then(|| f(&view.tables))
        })
        .ok()
        .flatten()
}

/// Caches `table` as shard `shard` (of `shards`) of `owner`'s store on this thread.
pub(super) fn refresh(owner: &Owner, shards: usize, shard: usize, table: Arc<Table>) {
    let _ = VIEWS.try_with(|views| {
        let Ok(mut views) = views.try_borrow_mut() else {
            return;
        };
        if views.is_empty() {
            views.resize_with(SLOTS, || None);
        }
        let slot = slot_of(owner.id);
        if let Some(Some(view)) = views.get_mut(slot) {
            if view.id == owner.id {
                if let Some(t) = view.tables.get_mut(shard) {
                    *t = Some(table);
                }
                return;
            }
        }
        for v in views.iter_mut() {
            if v.as_ref().is_some_and(|v| v.alive.strong_count() == 0) {
                *v = None;
            }
        }
        let mut tables: Box<[Option<Arc<Table>>]> = (0..shards).map(|_| None).collect();
        if let Some(t) = tables.get_mut(shard) {
            *t = Some(table);
        }
        views[slot] = Some(View {
            id: owner.id,
            alive: Arc::downgrade(&owner.alive),
            tables,
        });
    });
}

/// Drops this thread's view of store `id`.
pub(super) fn forget(id: u64) {
    let _ = VIEWS.try_with(|views| {
        if let Ok(mut views) = views.try_borrow_mut() {
            if let Some(v) = views.get_mut(slot_of(id)) {
                if v.as_ref().is_some_and(|v| v.id == id) {
                    *v = None;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_per_store_direct_mapped_and_forgotten() {
        // More stores than a small cache would hold, used in turn: every view stays.
        let owners: Vec<Owner> = (0..20)
            .map(|_| Owner {
                id: next_id(),
                alive: Arc::new(()),
            })
            .collect();
        let table = Arc::new(Table::with_capacity(8));
        for o in &owners {
            refresh(o, 4, 2, Arc::clone(&table));
        }
        for o in &owners {
            assert_eq!(with(o.id, |t| t[2].is_some() && t[1].is_none()), Some(true));
        }
        // A store whose id shares a slot takes it over.
        let twin = Owner {
            id: owners[0].id + SLOTS as u64,
            alive: Arc::new(()),
        };
        assert_eq!(with(twin.id, |_| ()), None);
        refresh(&twin, 4, 0, Arc::clone(&table));
        assert_eq!(with(twin.id, |t| t[0].is_some()), Some(true));
        assert_eq!(with(owners[0].id, |_| ()), None);
        forget(twin.id);
        assert_eq!(with(twin.id, |_| ()), None);
        // A shard index out of range is ignored, not a panic.
        refresh(&owners[1], 4, 9, Arc::clone(&table));
        assert_eq!(with(owners[1].id, |t| t[2].is_some()), Some(true));
        // Views of dropped stores go when the thread next creates a view.
        let others: Vec<u64> = owners[1..].iter().map(|o| o.id).collect();
        drop(owners);
        refresh(&twin, 4, 0, Arc::clone(&table));
        for id in others {
            assert_eq!(with(id, |_| ()), None);
        }
        forget(twin.id);
        assert_eq!(Arc::strong_count(&table), 1);
    }
}
