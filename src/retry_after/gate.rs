//! The endpoint gate: after a 429/503 with guidance, new requests to that endpoint wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Most endpoints the gate remembers; expired entries are dropped first.
const MAX_ENDPOINTS: usize = 10_000;

/// Per-endpoint blocks, shared by every clone of a layer (and readable through
/// [`RetryAfterLayer::gate`](super::RetryAfterLayer::gate)).
#[derive(Debug, Clone, Default)]
pub struct EndpointGate {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Whether any block was ever set: until then no endpoint is blocked, which
    /// [`EndpointGate::may_block`] reads without the lock or the clock.
    ever: AtomicBool,
    blocks: Mutex<Blocks>,
}

#[derive(Debug, Default)]
struct Blocks {
    map: HashMap<String, Instant>,
    /// The latest end of any block ever set (never lowered): once it has passed, no
    /// endpoint is blocked.
    latest: Option<Instant>,
}

impl EndpointGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.inner
            .blocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether some endpoint may still be blocked (`false`: none is, whatever its key).
    pub(crate) fn may_block(&self) -> bool {
        if !self.inner.ever.load(Ordering::Acquire) {
            return false;
        }
        let latest = self.lock().latest;
        latest.is_some_and(|latest| latest > Instant::now())
    }

    /// Time left on `endpoint`'s block, if it is blocked.
    pub fn blocked_for(&self, endpoint: &str) -> Option<Duration> {
        let now = Instant::now();
        let blocks = self.lock();
        blocks
            .map
            .get(endpoint)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Blocks `endpoint` for `duration` from now (an existing longer block is kept).
    pub fn block(&self, endpoint: String, duration: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(duration)
            .unwrap_or(now + Duration::from_secs(86_400));
        let mut guard = self.lock();
        guard.latest = Some(guard.latest.map_or(until, |latest| latest.max(until)));
        self.inner.ever.store(true, Ordering::Release);
        let blocks = &mut guard.map;
        if blocks.len() >= MAX_ENDPOINTS && !blocks.contains_key(&endpoint) {
            blocks.retain(|_, u| *u > now);
            if blocks.len() >= MAX_ENDPOINTS {
                // Still full of live blocks: forget the one ending soonest.
                if let Some(k) = blocks
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(k, _)| k.clone())
                {
                    blocks.remove(&k);
                }
            }
        }
        match blocks.get_mut(&endpoint) {
            // A live block is only lengthened: no news for the logs.
            Some(slot) if *slot > now => *slot = (*slot).max(until),
            _ => {
                tracing::info!(
                    endpoint = %endpoint,
                    block_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                    "endpoint blocked: new requests wait at the gate"
                );
                blocks.insert(endpoint, until);
            }
        }
    }

    /// Endpoints currently blocked.
    pub fn blocked_endpoints(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        let blocks = self.lock();
        blocks
            .map
            .iter()
            .filter_map(|(k, u)| {
                u.checked_duration_since(now)
                    .filter(|d| !d.is_zero())
                    .map(|d| (k.clone(), d))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn blocks_expire_exactly_and_only_grow() {
        let gate = EndpointGate::default();
        assert!(!gate.may_block());
        gate.block("GET api/x".into(), Duration::from_secs(10));
        gate.block("GET api/x".into(), Duration::from_secs(3));
        assert_eq!(gate.blocked_for("GET api/x"), Some(Duration::from_secs(10)));
        assert_eq!(gate.blocked_for("GET api/y"), None);
        assert!(gate.may_block());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!gate.may_block());
        assert_eq!(gate.blocked_for("GET api/x"), None);
        assert!(gate.blocked_endpoints().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let gate = EndpointGate::default();
        for i in 0..MAX_ENDPOINTS + 10 {
            gate.block(format!("e{i}"), Duration::from_secs(60 + i as u64));
        }
        assert_eq!(gate.blocked_endpoints().len(), MAX_ENDPOINTS);
        // The newest block is kept; the one ending soonest went.
        assert!(gate
            .blocked_for(&format!("e{}", MAX_ENDPOINTS + 9))
            .is_some());
        assert!(gate.blocked_for("e0").is_none());
    }
}
