//! [`MonitorHandle`]: reads what a [`HeaderMonitorLayer`](super::HeaderMonitorLayer) saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::state::{EndpointSnapshot, Shared};

/// The monitor's counters, shared by every clone.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) responses: AtomicU64,
    pub(crate) warnings: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A snapshot of the monitor's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MonitorStats {
    /// Responses seen (inner-service errors are not counted).
    pub responses: u64,
    /// Responses whose remaining quota was below the threshold (hits excluded).
    pub warnings: u64,
    /// Responses that hit the limit: status 429, gRPC status `RESOURCE_EXHAUSTED` or
    /// remaining 0 (one per response).
    pub hits: u64,
    /// Malformed rate-limit header fields, summed over all responses.
    pub malformed: u64,
}

/// Reads a monitor's snapshots and counters; cheap to clone, shared with every clone of
/// the layer and every service it made.
#[derive(Clone)]
pub struct MonitorHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl MonitorHandle {
    /// The latest rate-limit state of the endpoint `key` (as made by the layer's endpoint
    /// key), if a response for it carried rate-limit headers and it was not evicted.
    pub fn snapshot(&self, key: &str) -> Option<EndpointSnapshot> {
        self.shared.table().get(key)
    }

    /// Every endpoint's snapshot, sorted by key.
    pub fn snapshots(&self) -> Vec<(String, EndpointSnapshot)> {
        let mut all = self.shared.table().all();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The counters.
    pub fn stats(&self) -> MonitorStats {
        let c = &self.shared.counters;
        MonitorStats {
            responses: c.responses.load(Ordering::Relaxed),
            warnings: c.warnings.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }
}
