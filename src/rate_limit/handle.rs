//! Counters shared by every clone of a layer, read through [`RateLimitHandle`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::reload::Live;

/// One stripe of a [`Counter`], on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A counter bumped on every request by every worker thread. A single shared atomic would
/// make every core write the same cache line per request; instead each thread adds to its
/// own stripe (threads take stripes round-robin), and reads sum the stripes. Clones share
/// the count (a reload hands the counters of unchanged rules to the new rule set).
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    stripes: Arc<[Stripe]>,
}

/// Stripes per counter: the available parallelism, rounded up to a power of two, at most
/// 64 (so a rule's four counters cost at most 32 KiB).
fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .next_power_of_two()
            .min(64)
    })
}

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
pub(crate) fn my_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    STRIPE
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            s.get()
        })
        .unwrap_or(0)
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            stripes: (0..stripe_count()).map(|_| Stripe::default()).collect(),
        }
    }
}

impl Counter {
    pub(crate) fn load(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RuleCounters {
    pub(crate) admitted: Counter,
    pub(crate) limited: Counter,
    pub(crate) shadow_limited: Counter,
    pub(crate) missing_key: Counter,
}

#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) names: Box<[String]>,
    pub(crate) rules: Box<[RuleCounters]>,
    pub(crate) exempted: Counter,
    pub(crate) store_errors: Counter,
    pub(crate) bad_paths: Counter,
    /// Whether the last store call failed: store failures are logged once per
    /// transition (failing, then recovered), not once per request.
    pub(crate) store_failing: Arc<std::sync::atomic::AtomicBool>,
    /// The same counts for the metrics recorder (feature `metrics`; else zero-sized).
    pub(crate) metrics: crate::telemetry::ServerMetrics,
}

#[inline]
pub(crate) fn bump(c: &Counter) {
    bump_at(c, my_stripe());
}

/// [`bump`] with the thread's [`my_stripe`] already read.
#[inline]
pub(crate) fn bump_at(c: &Counter, stripe: usize) {
    // The stripe count is a power of two.
    let stripe = &c.stripes[stripe & (c.stripes.len() - 1)];
    stripe.0.fetch_add(1, Ordering::Relaxed);
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

/// Reads a layer's counters, and [reloads](Self::reload) its rules; cheap to clone,
/// shared with every clone of the layer.
#[derive(Debug, Clone)]
pub struct RateLimitHandle {
    pub(crate) source: Source,
}

/// Where a handle finds the counters.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// Rules that never change (the client mode's).
    Fixed(Arc<Stats>),
    /// The server mode's rules, which a reload may replace.
    Live(Arc<Live>),
}

impl RateLimitHandle {
    /// A handle on counters that no reload replaces.
    pub(crate) fn fixed(stats: Arc<Stats>) -> Self {
        RateLimitHandle {
            source: Source::Fixed(stats),
        }
    }

    /// The counters of the rules in force.
    pub(crate) fn stats(&self) -> Arc<Stats> {
        match &self.source {
            Source::Fixed(stats) => Arc::clone(stats),
            Source::Live(live) => Arc::clone(&live.current.load().rules.stats),
        }
    }

    /// Counters of every rule in force, in the order the rules were added.
    pub fn rules(&self) -> Vec<RuleStats> {
        let stats = self.stats();
        (0..stats.rules.len()).map(|i| at(&stats, i)).collect()
    }

    /// Counters of the rule called `name`, if it is in force.
    pub fn rule(&self, name: &str) -> Option<RuleStats> {
        let stats = self.stats();
        let i = stats.names.iter().position(|n| n == name)?;
        Some(at(&stats, i))
    }

    /// Requests that matched an exempt route.
    pub fn exempted(&self) -> u64 {
        self.stats().exempted.load()
    }

    /// Store failures (always 0 for the in-memory store).
    pub fn store_errors(&self) -> u64 {
        self.stats().store_errors.load()
    }

    /// Requests refused with `400 Bad Request` before any rule because their path has no
    /// canonical form (dot segments: see [`crate::rules::path`]).
    pub fn bad_paths(&self) -> u64 {
        self.stats().bad_paths.load()
    }
}

fn at(stats: &Stats, i: usize) -> RuleStats {
    let c = &stats.rules[i];
    RuleStats {
        name: stats.names[i].clone(),
        admitted: c.admitted.load(),
        limited: c.limited.load(),
        shadow_limited: c.shadow_limited.load(),
        missing_key: c.missing_key.load(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counter_sums_every_thread() {
        let c = Arc::new(Counter::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        bump(&c);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.load(), 80_000);
        assert!(c.stripes.len().is_power_of_two());
    }
}
