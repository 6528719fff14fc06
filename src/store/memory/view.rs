//! Each thread's view of the stores it uses: the shard tables it last saw.
//!
//! Readers decide on a table taken from this thread-local cache, without touching the
//! shard's mutex or any shared counter. A cached table may be stale (the shard was
//! rebuilt since): every slot of a replaced table reads [`super::table::MOVED`], and a key
//! inserted since is missing from it, and both send the reader to the shard mutex, which
//! refreshes the view. So a stale view costs one slow request, never a wrong decision.
//!
//! A replaced table's memory returns once no view holds it: when each thread that cached
//! it next touches that shard, rebuilds or sweeps on this thread, drops the store here, or
//! exits. A thread keeps views of at most [`MAX_VIEWS`] stores; views of dropped stores
//! are purged whenever the thread refreshes a view.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::table::Table;

/// Views one thread keeps (one per store it uses).
pub(super) const MAX_VIEWS: usize = 8;

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
    static VIEWS: RefCell<Vec<View>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's cached tables of store `id` (indexed by shard; `None` where
/// none is cached). `None` if the thread has no view of the store.
#[inline]
pub(super) fn with<R>(id: u64, f: impl FnOnce(&[Option<Arc<Table>>]) -> R) -> Option<R> {
    VIEWS
        .try_with(|views| {
            let views = views.try_borrow().ok()?;
            let view = views.iter().find(|v| v.id == id)?;
            Some(f(&view.tables))
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
        if let Some(view) = views.iter_mut().find(|v| v.id == owner.id) {
            if let Some(t) = view.tables.get_mut(shard) {
                *t = Some(table);
            }
            return;
        }
        views.retain(|v| v.alive.strong_count() > 0);
        if views.len() >= MAX_VIEWS {
            views.remove(0);
        }
        let mut tables: Box<[Option<Arc<Table>>]> = (0..shards).map(|_| None).collect();
        if let Some(t) = tables.get_mut(shard) {
            *t = Some(table);
        }
        views.push(View {
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
            views.retain(|v| v.id != id);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_per_store_bounded_and_forgotten() {
        let owners: Vec<Owner> = (0..MAX_VIEWS + 2)
            .map(|_| Owner {
                id: next_id(),
                alive: Arc::new(()),
            })
            .collect();
        let table = Arc::new(Table::with_capacity(8));
        refresh(&owners[0], 4, 2, Arc::clone(&table));
        assert_eq!(
            with(owners[0].id, |t| t[2].is_some() && t[1].is_none()),
            Some(true)
        );
        assert_eq!(with(owners[1].id, |_| ()), None);
        // More stores than MAX_VIEWS: the oldest view goes.
        for o in &owners[1..] {
            refresh(o, 4, 0, Arc::clone(&table));
        }
        assert_eq!(with(owners[0].id, |_| ()), None);
        assert_eq!(
            with(owners[MAX_VIEWS + 1].id, |t| t[0].is_some()),
            Some(true)
        );
        forget(owners[MAX_VIEWS + 1].id);
        assert_eq!(with(owners[MAX_VIEWS + 1].id, |_| ()), None);
        // A shard index out of range is ignored, not a panic.
        refresh(&owners[0], 4, 9, Arc::clone(&table));
        assert_eq!(
            with(owners[0].id, |t| t.iter().all(Option::is_none)),
            Some(true)
        );
        drop(owners);
        // Only this test's thread held views; forgetting every one returns the table.
        VIEWS.with(|v| v.borrow_mut().clear());
        assert_eq!(Arc::strong_count(&table), 1);
    }
}
