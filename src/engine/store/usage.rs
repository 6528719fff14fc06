//! Usage quotas: counters of what a key has used, for its lifetime and per window.
//!
//! Unlike rate limits, a usage counter is not idle when time passes (a lifetime quota never
//! refills), so the in-memory table never evicts one: it is bounded by refusing new keys
//! once full, with a typed error.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::StoreError;

/// The limits one usage check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageLimits {
    /// Units the key may ever use (none: no lifetime limit).
    pub lifetime: Option<u64>,
    /// Units per fixed window starting at the key's first use in the window.
    pub window: Option<(u64, Duration)>,
}

/// A key's usage after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Whether the units were consumed (every limit had room).
    pub admitted: bool,
    /// Units used over the key's lifetime.
    pub lifetime_used: u64,
    /// Units used in the current window.
    pub window_used: u64,
    /// Until the current window ends (none without a window limit or before first use).
    pub window_resets_after: Option<Duration>,
}

impl Usage {
    /// Units left over the lifetime (none without a lifetime limit).
    pub fn lifetime_remaining(&self, limits: &UsageLimits) -> Option<u64> {
        limits
            .lifetime
            .map(|l| l.saturating_sub(self.lifetime_used))
    }

    /// Units left in the current window (none without a window limit).
    pub fn window_remaining(&self, limits: &UsageLimits) -> Option<u64> {
        limits
            .window
            .map(|(l, _)| l.saturating_sub(self.window_used))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    lifetime_used: u64,
    window_used: u64,
    window_start: u64,
}

/// The in-memory usage table of a [`MemoryStore`](super::MemoryStore).
#[derive(Debug)]
pub(crate) struct UsageTable {
    entries: Mutex<HashMap<u64, Entry>>,
    max_keys: usize,
}

impl UsageTable {
    pub(crate) fn new(max_keys: usize) -> Self {
        UsageTable {
            entries: Mutex::default(),
            max_keys,
        }
    }

    /// Consumes `amount` units of `key` at `now` (ns) if every limit has room; `amount`
    /// zero only reads.
    pub(crate) fn consume(
        &self,
        key: u64,
        amount: u64,
        limits: &UsageLimits,
        now: u64,
    ) -> Result<Usage, StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let len = entries.len();
        let entry = match entries.get_mut(&key) {
            Some(e) => e,
            None if amount == 0 => {
                return Ok(Usage {
                    admitted: true,
                    ..Usage::default()
                })
            }
            None if len >= self.max_keys => {
                return Err(StoreError::new(format!(
                    "usage table full ({} keys); raise MemoryStoreBuilder::max_usage_keys",
                    self.max_keys
                )))
            }
            None => entries.entry(key).or_default(),
        };
        let window_ns = limits
            .window
            .map(|(_, w)| u64::try_from(w.as_nanos()).unwrap_or(u64::MAX));
        if let Some(w) = window_ns {
            if now.saturating_sub(entry.window_start) >= w || entry.window_used == 0 {
                entry.window_start = now;
                entry.window_used = 0;
            }
        }
        let fits_lifetime = limits
            .lifetime
            .is_none_or(|l| entry.lifetime_used.saturating_add(amount) <= l);
        let fits_window = limits
            .window
            .is_none_or(|(l, _)| entry.window_used.saturating_add(amount) <= l);
        let admitted = fits_lifetime && fits_window;
        if admitted {
            entry.lifetime_used = entry.lifetime_used.saturating_add(amount);
            entry.window_used = entry.window_used.saturating_add(amount);
        }
        Ok(Usage {
            admitted,
            lifetime_used: entry.lifetime_used,
            window_used: entry.window_used,
            window_resets_after: window_ns
                .filter(|_| entry.window_used > 0)
                .map(|w| Duration::from_nanos((entry.window_start + w).saturating_sub(now))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn lifetime_and_window_limits() {
        let t = UsageTable::new(10);
        let limits = UsageLimits {
            lifetime: Some(5),
            window: Some((2, Duration::from_secs(3600))),
        };
        assert!(t.consume(1, 1, &limits, 0).unwrap().admitted);
        let u = t.consume(1, 1, &limits, S).unwrap();
        assert_eq!((u.admitted, u.lifetime_used, u.window_used), (true, 2, 2));
        assert_eq!(u.window_resets_after, Some(Duration::from_secs(3599)));
        let u = t.consume(1, 1, &limits, 2 * S).unwrap();
        assert!(!u.admitted);
        assert_eq!(u.window_remaining(&limits), Some(0));
        assert_eq!(u.lifetime_remaining(&limits), Some(3));
        // Next window: 2 more, then the lifetime limit (5) stops at 5.
        for (i, ok) in [(0, true), (1, true)] {
            assert_eq!(t.consume(1, 1, &limits, 3600 * S + i).unwrap().admitted, ok);
        }
        let u = t.consume(1, 1, &limits, 7200 * S).unwrap();
        assert_eq!((u.admitted, u.lifetime_used), (true, 5));
        let u = t.consume(1, 1, &limits, 10_800 * S).unwrap();
        assert_eq!((u.admitted, u.lifetime_used), (false, 5));
        // Reading never consumes.
        assert_eq!(
            t.consume(1, 0, &limits, 10_800 * S).unwrap().lifetime_used,
            5
        );
    }

    #[test]
    fn full_table_is_a_typed_error_not_an_eviction() {
        let t = UsageTable::new(2);
        let limits = UsageLimits {
            lifetime: Some(1),
            window: None,
        };
        assert!(t.consume(1, 1, &limits, 0).is_ok());
        assert!(t.consume(2, 1, &limits, 0).is_ok());
        assert!(t.consume(3, 1, &limits, 0).is_err());
        assert!(!t.consume(1, 1, &limits, 0).unwrap().admitted);
    }
}
