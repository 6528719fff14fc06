//! Per-key FIFO queues and per-key concurrency permits, created on demand and dropped
//! when no request uses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A map of per-key semaphores. A semaphore of 1 permit is a fair (FIFO) lock: tokio's
/// semaphore serves waiters in order, and a cancelled waiter leaves the queue.
#[derive(Debug, Default)]
pub(crate) struct KeyedSemaphores {
    map: Mutex<HashMap<u64, Arc<Semaphore>>>,
}

/// A permit that removes its key's semaphore from the map when the last user lets go.
#[derive(Debug)]
pub(crate) struct KeyedPermit {
    owner: Arc<KeyedSemaphores>,
    key: u64,
    permit: Option<OwnedSemaphorePermit>,
}

impl KeyedSemaphores {
    fn get(&self, key: u64, permits: u32) -> Arc<Semaphore> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            map.entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(permits as usize))),
        )
    }

    /// Waits (in FIFO order among the key's waiters) for one of `permits` slots.
    pub(crate) async fn acquire(self: &Arc<Self>, key: u64, permits: u32) -> KeyedPermit {
        let sem = self.get(key, permits);
        let mut guard = KeyedPermit {
            owner: Arc::clone(self),
            key,
            permit: None,
        };
        // The semaphore is never closed, so acquiring cannot fail.
        guard.permit = sem.acquire_owned().await.ok();
        guard
    }

    /// Keys currently tracked (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for KeyedPermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self
            .owner
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the map holds the semaphore: nobody waits on it or holds a permit.
        if map
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fifo_and_cleanup() {
        let sems = Arc::new(KeyedSemaphores::default());
        let first = sems.acquire(1, 1).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (sems, order) = (Arc::clone(&sems), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _p = sems.acquire(1, 1).await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(sems.len(), 1);
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(sems.len(), 0, "idle keys are dropped");
    }

    #[tokio::test]
    async fn cancelled_waiters_leave_the_queue() {
        let sems = Arc::new(KeyedSemaphores::default());
        let held = sems.acquire(7, 1).await;
        let waiter = {
            let sems = Arc::clone(&sems);
            tokio::spawn(async move { sems.acquire(7, 1).await })
        };
        tokio::task::yield_now().await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert_eq!(sems.len(), 0);
        let _again = sems.acquire(7, 1).await;
    }
}
