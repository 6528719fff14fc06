//! Replacing a running layer's rules: [`RateLimitHandle::reload`] and its [`ReloadReport`].
//!
//! The server mode's services read the rules in force through one [`Live`] per layer: an
//! `ArcSwap` of the [`Limiter`], loaded once per request (a lock-free read that writes no
//! shared cache line), so a request is decided, counted and answered by one rule set from
//! start to end, the old one or the new one, never a mix.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::handle::{RateLimitHandle, Source, Stats};
use super::layer::{BuildError, RateLimitLayerBuilder};
use super::limiter::Limiter;
use super::rule_set::{self, RuleSet};

/// The rules in force of one server-mode layer, shared by its clones, services and handles.
pub(crate) struct Live {
    pub(crate) current: ArcSwap<Limiter>,
    /// One reload at a time: each builds on the set the last one left.
    reloading: Mutex<()>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    pub(crate) fn new(limiter: Arc<Limiter>) -> Arc<Live> {
        Arc::new(Live {
            current: ArcSwap::new(limiter),
            reloading: Mutex::new(()),
        })
    }
}

/// What a [reload](RateLimitHandle::reload) changed, rule by rule (names in the order of
/// the new rules, removed ones in the order of the old).
///
/// Its `Display` is one line for a log: `kept 9, changed 1 (instance), added 0, removed 0`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Rules whose settings did not change: they keep their buckets and counters.
    pub kept: Vec<String>,
    /// Rules whose settings changed: they start with fresh buckets and counters.
    pub changed: Vec<String>,
    /// New rules.
    pub added: Vec<String>,
    /// Rules no longer in force.
    pub removed: Vec<String>,
}

impl ReloadReport {
    /// Whether any rule was changed, added or removed.
    pub fn rules_changed(&self) -> bool {
        !(self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty())
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            ("kept", &self.kept, false),
            ("changed", &self.changed, true),
            ("added", &self.added, true),
            ("removed", &self.removed, true),
        ];
        for (i, (what, names, listed)) in parts.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{what} {}", names.len())?;
            if listed && !names.is_empty() {
                write!(f, " ({})", names.join(", "))?;
            }
        }
        Ok(())
    }
}

impl RateLimitHandle {
    /// Replaces the layer's rules, exempt routes, path matching, header dialects and
    /// store-failure policy with `builder`'s, without a restart; every clone of the layer
    /// and every service it made switches at once. The builder's store is not used (the
    /// layer keeps its own), nor its responder unless one was set on it; without a
    /// [`key_secret`](RateLimitLayerBuilder::key_secret) the layer's current secret stays.
    ///
    /// A rule keeps its state (its buckets in the store and its counters here) when a
    /// rule of the same name had exactly the same settings (quota, burst, routes,
    /// carve-outs, key, block, shadow, missing-key policy, concurrency) under the same
    /// key secret; a rule whose settings changed starts afresh. A request in flight is
    /// decided by the old rules or the new ones, never by a mix.
    ///
    /// A builder that does not validate is refused with its [`BuildError`], and the rules
    /// in force stay. The handle of a [`PacingLayer`](crate::pacing::PacingLayer) cannot
    /// reload ([`BuildError::NotReloadable`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_throttle::{Quota, RateLimitLayer, Route, Rule};
    ///
    /// let rules = |sign_in: u32| -> Result<_, tower_throttle::QuotaError> {
    ///     Ok(RateLimitLayer::builder()
    ///         .rule(Rule::new("sign_in", Quota::new(sign_in, Duration::from_secs(10))?)
    ///             .route(Route::post("/v1/sign_ins")))
    ///         .rule(Rule::new("global", Quota::per_second(100)?)))
    /// };
    /// let layer = rules(5)?.build()?;
    /// let handle = layer.handle();
    /// let report = handle.reload(rules(10)?)?;
    /// assert_eq!(report.kept, ["global"]);
    /// assert_eq!(report.changed, ["sign_in"]);
    /// assert_eq!(report.to_string(), "kept 1, changed 1 (sign_in), added 0, removed 0");
    /// // A bad set is refused; the rules in force stay.
    /// assert!(handle.reload(RateLimitLayer::builder()).is_err());
    /// assert_eq!(handle.rules().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload<St>(
        &self,
        builder: RateLimitLayerBuilder<St>,
    ) -> Result<ReloadReport, BuildError> {
        let Source::Live(live) = &self.source else {
            return Err(BuildError::NotReloadable);
        };
        let _one_at_a_time = live
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = live.current.load_full();
        let parts = builder.into_parts();
        rule_set::check_count(parts.rules.len())?;
        let keys = match parts.key_secret {
            Some(secret) => rule_set::sip_keys(secret),
            None => old.rules.key_secret,
        };
        // (A shared store was checked for a secret when the layer was built: the one
        // kept is that secret.)
        let mut rules =
            RuleSet::compile_with_keys(parts.rules, &parts.exempt, parts.path_matching, keys)?;
        let report = carry_state(&old.rules, &mut rules);
        live.current.store(Arc::new(Limiter {
            rules,
            dialects: parts.dialects,
            responder: parts
                .responder
                .unwrap_or_else(|| Arc::clone(&old.responder)),
            store_failure: parts.store_failure,
        }));
        Ok(report)
    }
}

/// Hands the counters of every unchanged rule of `old` (same name, same fingerprint:
/// same store id, so the same buckets) and the layer's own counters to `new`.
fn carry_state(old: &RuleSet, new: &mut RuleSet) -> ReloadReport {
    let mut report = ReloadReport::default();
    let mut counters = Vec::with_capacity(new.rules.len());
    for (i, rule) in new.rules.iter().enumerate() {
        let before = old.rules.iter().position(|r| r.name == rule.name);
        match before {
            Some(j)
                if old.rules[j].fingerprint == rule.fingerprint
                    && old.key_secret == new.key_secret =>
            {
                report.kept.push(rule.name.clone());
                counters.push(old.stats.rules[j].clone());
            }
            Some(_) => {
                report.changed.push(rule.name.clone());
                counters.push(new.stats.rules[i].clone());
            }
            None => {
                report.added.push(rule.name.clone());
                counters.push(new.stats.rules[i].clone());
            }
        }
    }
    report.removed = old
        .rules
        .iter()
        .filter(|r| !new.rules.iter().any(|n| n.name == r.name))
        .map(|r| r.name.clone())
        .collect();
    new.stats = Arc::new(Stats {
        names: new.stats.names.clone(),
        rules: counters.into_boxed_slice(),
        exempted: old.stats.exempted.clone(),
        store_errors: old.stats.store_errors.clone(),
        bad_paths: old.stats.bad_paths.clone(),
        store_failing: Arc::clone(&old.stats.store_failing),
        // The recorder keys series by name and labels: handles resolved anew for the new
        // set continue the series of kept rules.
        metrics: crate::telemetry::ServerMetrics::new(&new.stats.names),
    });
    report
}
