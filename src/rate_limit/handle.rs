//! Counters shared by every clone of a layer, read through [`RateLimitHandle`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct RuleCounters {
    pub(crate) admitted: AtomicU64,
    pub(crate) limited: AtomicU64,
    pub(crate) shadow_limited: AtomicU64,
    pub(crate) missing_key: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) names: Box<[String]>,
    pub(crate) rules: Box<[RuleCounters]>,
    pub(crate) exempted: AtomicU64,
    pub(crate) store_errors: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of one rule's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleStats {
    /// The rule's name.
    pub name: String,
    /// Requests the rule matched that were admitted.
    pub admitted: u64,
    /// Requests this rule refused (an enforced rule over its limit).
    pub limited: u64,
    /// Requests this shadow rule would have refused.
    pub shadow_limited: u64,
    /// Requests in which the rule's key was missing.
    pub missing_key: u64,
}

/// Reads a layer's counters; cheap to clone, shared with every clone of the layer.
#[derive(Debug, Clone)]
pub struct RateLimitHandle {
    pub(crate) stats: Arc<Stats>,
}

impl RateLimitHandle {
    /// Counters of every rule, in the order the rules were added.
    pub fn rules(&self) -> Vec<RuleStats> {
        (0..self.stats.rules.len()).map(|i| self.at(i)).collect()
    }

    /// Counters of the rule called `name`.
    pub fn rule(&self, name: &str) -> Option<RuleStats> {
        let i = self.stats.names.iter().position(|n| n == name)?;
        Some(self.at(i))
    }

    /// Requests that matched an exempt route.
    pub fn exempted(&self) -> u64 {
        self.stats.exempted.load(Ordering::Relaxed)
    }

    /// Store failures (always 0 for the in-memory store).
    pub fn store_errors(&self) -> u64 {
        self.stats.store_errors.load(Ordering::Relaxed)
    }

    fn at(&self, i: usize) -> RuleStats {
        let c = &self.stats.rules[i];
        RuleStats {
            name: self.stats.names[i].clone(),
            admitted: c.admitted.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
            shadow_limited: c.shadow_limited.load(Ordering::Relaxed),
            missing_key: c.missing_key.load(Ordering::Relaxed),
        }
    }
}
