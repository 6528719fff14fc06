//! [`Pacer`]: the client mode's state, and the stages a request goes through before it is
//! sent (rules, concurrency permits, turn and limits, usage quotas, adaptive pacing).

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::adaptive::{AdaptiveRates, Slot};
use super::error::PacingError;
use super::queue::{KeyedPermit, KeyedSemaphores};
use super::usage::{CompiledUsageQuota, UsageStatus};
use crate::engine::clock::Clock;
use crate::engine::gcra::{checks_key, Check};
use crate::engine::store::{Store, Usage};
use crate::rate_limit::handle::{bump, Counter, RuleCounters};
use crate::rate_limit::rule_set::{Checks, Plan, RuleSet};
use crate::telemetry;

/// The client mode's state, shared by every clone of a layer and its services: the
/// rules (as in the server mode), the queues, the usage quotas and the adaptive rates.
pub(crate) struct Pacer {
    pub(crate) rules: RuleSet,
    pub(crate) max_queue_wait: Duration,
    pub(crate) turns: Arc<KeyedSemaphores>,
    pub(crate) permits: Arc<KeyedSemaphores>,
    pub(crate) usage_quotas: Box<[CompiledUsageQuota]>,
    pub(crate) adaptive: Option<AdaptiveRates>,
}

/// The rules that apply to a request: their checks, and the index of the rule of each.
pub(crate) struct Planned {
    checks: Vec<Check>,
    rules: Vec<usize>,
}

/// The usage key of each usage quota that applies to a request, in the quotas' order
/// (`Err` names a missing key).
pub(crate) type UsageKeys<'a> = Vec<(&'a CompiledUsageQuota, Result<u64, &'static str>)>;

impl Pacer {
    /// Which rules apply to `req`, with which keys (as in the server mode).
    pub(crate) fn plan<B>(&self, req: &Request<B>) -> Result<Planned, PacingError> {
        let mut checks = Checks::new();
        let matched = match self.rules.plan(req, &mut checks) {
            Plan::Pass => 0,
            Plan::BadPath(e) => return Err(PacingError::BadPath(e, None)),
            Plan::MissingKey { rule, what } => {
                return Err(PacingError::MissingKey {
                    rule: self.rules.rules[rule].name.clone(),
                    what,
                    source: None,
                })
            }
            Plan::Check { matched } => matched,
        };
        Ok(Planned {
            checks: checks.into_vec(),
            rules: (0..64).filter(|i| matched & (1 << i) != 0).collect(),
        })
    }

    fn timed_out(&self) -> PacingError {
        PacingError::QueueTimeout {
            waited: self.max_queue_wait,
            source: None,
        }
    }

    /// The concurrency slots of the request's keys, taken in rule order (a fixed order
    /// cannot deadlock).
    pub(crate) async fn acquire_permits(
        &self,
        planned: &Planned,
        deadline: Instant,
    ) -> Result<Vec<KeyedPermit>, PacingError> {
        let mut permits = Vec::new();
        for (check, &i) in planned.checks.iter().zip(&planned.rules) {
            if let Some(n) = self.rules.rules[i].concurrency {
                let permit = timeout_at(deadline, self.permits.acquire(check.key, n))
                    .await
                    .map_err(|_| self.timed_out())?;
                permits.push(permit);
            }
        }
        Ok(permits)
    }

    /// Waits for the request's turn (one request of a key set decides at a time, in
    /// arrival order), then until every limit admits it; counts the rules' `limited` (once,
    /// if it had to wait) and `admitted`.
    pub(crate) async fn wait_for_limits<St: Store>(
        &self,
        store: &St,
        planned: &Planned,
        deadline: Instant,
    ) -> Result<(), PacingError> {
        if planned.checks.is_empty() {
            return Ok(());
        }
        let _turn = timeout_at(deadline, self.turns.acquire(checks_key(&planned.checks), 1))
            .await
            .map_err(|_| self.timed_out())?;
        let mut waited = false;
        loop {
            let decision = store
                .check(self.rules.clock.now(), &planned.checks)
                .await
                .map_err(|e| PacingError::Store(e, None))?;
            if decision.admitted {
                break;
            }
            let wake = Instant::now() + decision.retry_after;
            if wake > deadline {
                let rule = planned.rules.get(decision.headline.index);
                return Err(self.wait_too_long(rule.copied(), decision.retry_after));
            }
            if !waited {
                waited = true;
                self.bump_rules(planned, |c| &c.limited);
            }
            sleep_until(wake).await;
        }
        self.bump_rules(planned, |c| &c.admitted);
        Ok(())
    }

    /// Bumps one counter of every rule that applies.
    fn bump_rules(&self, planned: &Planned, counter: impl Fn(&RuleCounters) -> &Counter) {
        for &i in &planned.rules {
            bump(counter(&self.rules.stats.rules[i]));
        }
    }

    fn wait_too_long(&self, rule: Option<usize>, wait: Duration) -> PacingError {
        let rule = rule.map_or_else(String::new, |i| self.rules.rules[i].name.clone());
        PacingError::WaitTooLong {
            rule,
            wait,
            source: None,
        }
    }

    /// The usage key of each usage quota that applies to `req`.
    pub(crate) fn usage_keys<B>(&self, req: &Request<B>) -> UsageKeys<'_> {
        if self.usage_quotas.is_empty() {
            return Vec::new();
        }
        // `plan` refused any path without a canonical form, so the fallback is never taken.
        let raw = req.uri().path();
        let path = crate::rules::path::canonicalize(raw).unwrap_or(Cow::Borrowed(raw));
        self.usage_quotas
            .iter()
            .filter_map(|q| q.key_of(req, &path).map(|key| (q, key)))
            .collect()
    }

    /// Counts one unit of each usage quota, in order, once the limits admit the request
    /// and just before it is sent; fails at the first missing key or exhausted quota.
    pub(crate) async fn count_usage<St: Store>(
        &self,
        store: &St,
        keys: UsageKeys<'_>,
    ) -> Result<Vec<UsageStatus>, PacingError> {
        let mut statuses = Vec::with_capacity(keys.len());
        for (q, key) in keys {
            let key = key.map_err(|what| PacingError::MissingKey {
                rule: q.name.clone(),
                what,
                source: None,
            })?;
            let usage = store
                .consume_usage(self.rules.clock.now(), key, 1, q.limits)
                .await
                .map_err(|e| PacingError::Store(e, None))?;
            statuses.push(usage_status(q, &usage)?);
        }
        Ok(statuses)
    }

    /// Waits for the endpoint's next adaptive send slot, in arrival order.
    pub(crate) async fn wait_adaptive_slot(
        &self,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<(), PacingError> {
        let Some(adaptive) = &self.adaptive else {
            return Ok(());
        };
        let slot = loop {
            // Registered before reserving, so a probe answered in between is not missed.
            let answered = adaptive.answered();
            tokio::pin!(answered);
            answered.as_mut().enable();
            match adaptive.reserve(endpoint) {
                Slot::At(slot) => break slot,
                Slot::AfterProbe => {
                    if timeout_at(deadline, answered).await.is_err() {
                        return Err(PacingError::WaitTooLong {
                            rule: "adaptive".to_owned(),
                            wait: self.max_queue_wait,
                            source: None,
                        });
                    }
                }
            }
        };
        if slot > deadline {
            return Err(PacingError::WaitTooLong {
                rule: "adaptive".to_owned(),
                wait: slot - Instant::now(),
                source: None,
            });
        }
        sleep_until(slot).await;
        Ok(())
    }
}

/// The request's standing in usage quota `q` after `usage` was counted; logs (and counts)
/// a crossed warning threshold, fails when the quota is used up.
fn usage_status(q: &CompiledUsageQuota, usage: &Usage) -> Result<UsageStatus, PacingError> {
    if !usage.admitted {
        tracing::error!(quota = %q.name, used = usage.lifetime_used, "usage quota exhausted");
        return Err(PacingError::UsageExhausted {
            usage_quota: q.name.clone(),
            lifetime_used: usage.lifetime_used,
            window_remaining: usage.window_remaining(&q.limits),
            window_resets_after: usage.window_resets_after,
            source: None,
        });
    }
    telemetry::usage_used(&q.name, usage.lifetime_used);
    let warned = q
        .warn_at
        .is_some_and(|w| usage.lifetime_used >= w && usage.lifetime_used - 1 < w);
    if warned {
        q.warnings.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            quota = %q.name,
            used = usage.lifetime_used,
            limit = q.limits.lifetime,
            "usage quota reached its warning threshold"
        );
    }
    Ok(UsageStatus {
        usage_quota: q.name.clone(),
        lifetime_used: usage.lifetime_used,
        lifetime_remaining: usage.lifetime_remaining(&q.limits),
        window_remaining: usage.window_remaining(&q.limits),
        warned,
    })
}
