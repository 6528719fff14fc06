//! The server mode's metric handles, resolved once per rule set (in `RuleSet::compile`).

#[cfg(feature = "metrics")]
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use super::Timer;
#[cfg(feature = "metrics")]
use super::{
    BAD_PATHS_TOTAL, EXEMPTED_TOTAL, REQUESTS_TOTAL, STORE_DURATION_SECONDS, STORE_ERRORS_TOTAL,
    STORE_FAILING,
};

/// One rule's handles: `tower_throttle_requests_total{rule, outcome}`.
#[derive(Debug)]
pub(crate) struct RuleMetrics {
    #[cfg(feature = "metrics")]
    admitted: Counter,
    #[cfg(feature = "metrics")]
    limited: Counter,
    #[cfg(feature = "metrics")]
    shadow_limited: Counter,
    #[cfg(feature = "metrics")]
    missing_key: Counter,
}

impl RuleMetrics {
    fn new(_rule: &str) -> RuleMetrics {
        #[cfg(feature = "metrics")]
        let outcome = |outcome: &'static str| counter!(REQUESTS_TOTAL, "rule" => _rule.to_owned(), "outcome" => outcome);
        RuleMetrics {
            #[cfg(feature = "metrics")]
            admitted: outcome("admitted"),
            #[cfg(feature = "metrics")]
            limited: outcome("limited"),
            #[cfg(feature = "metrics")]
            shadow_limited: outcome("shadow_limited"),
            #[cfg(feature = "metrics")]
            missing_key: outcome("missing_key"),
        }
    }

    #[inline]
    pub(crate) fn admitted(&self) {
        #[cfg(feature = "metrics")]
        self.admitted.increment(1);
    }

    #[inline]
    pub(crate) fn limited(&self) {
        #[cfg(feature = "metrics")]
        self.limited.increment(1);
    }

    #[inline]
    pub(crate) fn shadow_limited(&self) {
        #[cfg(feature = "metrics")]
        self.shadow_limited.increment(1);
    }

    #[inline]
    pub(crate) fn missing_key(&self) {
        #[cfg(feature = "metrics")]
        self.missing_key.increment(1);
    }
}

/// A rule set's handles: one [`RuleMetrics`] per rule (same index) and the layer-wide ones.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    rules: Box<[RuleMetrics]>,
    #[cfg(feature = "metrics")]
    exempted: Counter,
    #[cfg(feature = "metrics")]
    bad_paths: Counter,
    #[cfg(feature = "metrics")]
    store_errors: Counter,
    #[cfg(feature = "metrics")]
    store_duration: Histogram,
    #[cfg(feature = "metrics")]
    store_failing: Gauge,
}

impl ServerMetrics {
    /// Resolves the handles of rules named `names` through the installed recorder.
    pub(crate) fn new(names: &[String]) -> ServerMetrics {
        ServerMetrics {
            rules: names.iter().map(|n| RuleMetrics::new(n)).collect(),
            #[cfg(feature = "metrics")]
            exempted: counter!(EXEMPTED_TOTAL),
            #[cfg(feature = "metrics")]
            bad_paths: counter!(BAD_PATHS_TOTAL),
            #[cfg(feature = "metrics")]
            store_errors: counter!(STORE_ERRORS_TOTAL),
            #[cfg(feature = "metrics")]
            store_duration: histogram!(STORE_DURATION_SECONDS),
            #[cfg(feature = "metrics")]
            store_failing: gauge!(STORE_FAILING),
        }
    }

    /// Rule `i`'s handles.
    #[inline]
    pub(crate) fn rule(&self, i: usize) -> &RuleMetrics {
        &self.rules[i]
    }

    #[inline]
    pub(crate) fn exempted(&self) {
        #[cfg(feature = "metrics")]
        self.exempted.increment(1);
    }

    #[inline]
    pub(crate) fn bad_path(&self) {
        #[cfg(feature = "metrics")]
        self.bad_paths.increment(1);
    }

    #[inline]
    pub(crate) fn store_error(&self) {
        #[cfg(feature = "metrics")]
        self.store_errors.increment(1);
    }

    /// Records a store call timed from `_timer`.
    #[inline]
    pub(crate) fn store_done(&self, _timer: Timer) {
        #[cfg(feature = "metrics")]
        self.store_duration.record(_timer.start.elapsed());
    }

    /// The store's failing state changed to `_failing`.
    #[inline]
    pub(crate) fn store_failing(&self, _failing: bool) {
        #[cfg(feature = "metrics")]
        self.store_failing.set(f64::from(u8::from(_failing)));
    }
}

/// The Redis store's fallback state changed to `_down` (rare: resolved per call).
#[cfg(feature = "redis")]
#[inline]
pub(crate) fn redis_fallback(_down: bool) {
    #[cfg(feature = "metrics")]
    gauge!(super::REDIS_FALLBACK).set(f64::from(u8::from(_down)));
}
