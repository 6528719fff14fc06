//! [`Limiter`]: the server mode's state, shared by every clone of a layer. It turns a
//! store's decision into what to do with the request, counts it, and has refusals answered
//! by the [`Responder`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use super::handle::{bump, bump_at, my_stripe};
use super::responder::{Rejection, RejectionReason, Responder};
use super::rule_set::RuleSet;
use crate::engine::gcra::{Decision, LimitState};
use crate::engine::store::StoreError;
use crate::headers::HeaderDialects;
use crate::telemetry::Timer;

/// What a layer does when its store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFailure {
    /// Admit the request (fail open). The default.
    #[default]
    Admit,
    /// Refuse the request (fail closed) with
    /// [`RejectionReason::StoreUnavailable`](crate::RejectionReason::StoreUnavailable):
    /// the [`HttpResponder`](super::HttpResponder) answers 503 (see its
    /// [`store_failure_status`](super::HttpResponder::store_failure_status)), without a
    /// misleading `Retry-After`; the [`GrpcResponder`](super::GrpcResponder) answers gRPC
    /// calls `UNAVAILABLE` (see its
    /// [`store_failure_code`](super::GrpcResponder::store_failure_code)), without pushback.
    Reject,
}

/// The rules and how the server mode answers: everything a request needs except the store.
pub(crate) struct Limiter {
    pub(crate) rules: RuleSet,
    pub(crate) dialects: HeaderDialects,
    pub(crate) responder: Arc<dyn Responder>,
    pub(crate) store_failure: StoreFailure,
}

/// Which rule's state to write into an admitted response's headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Headline {
    pub(crate) rule: usize,
    pub(crate) state: LimitState,
}

/// A decision turned into what to do with the request.
pub(crate) enum Settled {
    /// Forward the request; write this rule's headers on the response (`None`: no
    /// headers to write).
    Admit(Option<Headline>),
    /// Answer with this response.
    Reject(Response<Bytes>),
}

impl Limiter {
    /// Records the store call timed by `timer` (feature `metrics`); returns `self`.
    #[inline]
    pub(crate) fn settled(&self, timer: Timer) -> &Self {
        self.rules.stats.metrics.store_done(timer);
        self
    }

    /// Counts the store's answer for the rules in `matched` and turns it into what to do
    /// with `req`.
    pub(crate) fn settle<B>(
        &self,
        matched: u64,
        result: Result<Decision, StoreError>,
        req: &Request<B>,
    ) -> Settled {
        let decision = match result {
            Ok(decision) => {
                self.store_answered();
                decision
            }
            Err(error) => return self.store_failed(&error, req),
        };
        let headline = Headline {
            rule: self.count(matched, &decision),
            state: decision.headline,
        };
        if decision.admitted {
            // No headline (so no `Arc` clone and no header pass on the response) when the
            // layer writes no rate-limit headers.
            let writes = self.dialects != HeaderDialects::NONE;
            return Settled::Admit(writes.then_some(headline));
        }
        let rule = &self.rules.rules[headline.rule];
        tracing::debug!(
            rule = %rule.name,
            retry_after_ms = decision.retry_after.as_millis() as u64,
            "rate limited"
        );
        let rejection =
            Rejection::new(RejectionReason::RateLimited, Some(rule), self.dialects, req)
                .limited(decision.headline, decision.retry_after);
        Settled::Reject(self.responder.respond(&rejection))
    }

    /// Bumps each matched rule's counter for `decision`; returns the index of the rule
    /// whose limit is the decision's headline.
    // `#[inline]` on the stages of every request: the generic `settle` is compiled in the
    // user's crate, and calls into this crate are not inlined without it.
    #[inline]
    fn count(&self, matched: u64, decision: &Decision) -> usize {
        let stats = &self.rules.stats;
        // The thread's counter stripe, looked up once for every rule.
        let stripe = my_stripe();
        let mut headline_rule = 0;
        for (k, i) in rule_indices(matched).enumerate() {
            if k == decision.headline.index {
                headline_rule = i;
            }
            let counters = &stats.rules[i];
            let denied = decision.denied_mask & (1 << k) != 0;
            if !denied {
                if decision.admitted {
                    bump_at(&counters.admitted, stripe);
                    stats.metrics.rule(i).admitted();
                }
            } else if self.rules.rules[i].shadow {
                bump_at(&counters.shadow_limited, stripe);
                stats.metrics.rule(i).shadow_limited();
                let rule = &self.rules.rules[i].name;
                tracing::info!(rule = %rule, "shadow rule would have refused a request");
            } else {
                bump_at(&counters.limited, stripe);
                stats.metrics.rule(i).limited();
            }
        }
        headline_rule
    }

    /// Notes that the store answered: logs its recovery if it was failing.
    #[inline]
    fn store_answered(&self) {
        let stats = &self.rules.stats;
        // One relaxed load per request while the store works; the swap (a write to a
        // shared line) happens only on the request that sees it recover.
        if stats.store_failing.load(Ordering::Relaxed)
            && stats.store_failing.swap(false, Ordering::Relaxed)
        {
            stats.metrics.store_failing(false);
            tracing::info!(
                transition = "recovered",
                store_errors = stats.store_errors.load(),
                "rate-limit store answers again"
            );
        }
    }

    /// Counts and logs a store failure (once per transition to failing), then applies the
    /// [`StoreFailure`] policy.
    #[cold]
    fn store_failed<B>(&self, error: &StoreError, req: &Request<B>) -> Settled {
        let stats = &self.rules.stats;
        bump(&stats.store_errors);
        stats.metrics.store_error();
        if stats.store_failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(%error, "rate-limit store failed");
        } else {
            stats.metrics.store_failing(true);
            tracing::warn!(
                transition = "failing",
                %error,
                policy = ?self.store_failure,
                "rate-limit store failing: requests follow the layer's StoreFailure \
                 policy until it answers again"
            );
        }
        match self.store_failure {
            StoreFailure::Admit => Settled::Admit(None),
            StoreFailure::Reject => {
                Settled::Reject(self.reject(RejectionReason::StoreUnavailable, None, req))
            }
        }
    }

    /// The responder's answer to `req`, refused for `reason` (by rule `rule`) before any
    /// limit was decided.
    pub(crate) fn reject<B>(
        &self,
        reason: RejectionReason,
        rule: Option<usize>,
        req: &Request<B>,
    ) -> Response<Bytes> {
        let rule = rule.and_then(|i| self.rules.rules.get(i));
        self.responder
            .respond(&Rejection::new(reason, rule, self.dialects, req))
    }

    /// Writes the headline rule's headers on an admitted response.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap, headline: &Headline) {
        let state = &headline.state;
        if let Some(r) = self.rules.rules.get(headline.rule) {
            r.headers
                .write(headers, self.dialects, state.remaining, state.reset_after);
        }
    }
}

/// Indices of the set bits of `mask`, ascending.
fn rule_indices(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

#[cfg(test)]
mod tests {
    use super::rule_indices;

    #[test]
    fn rule_indices_walks_set_bits() {
        assert_eq!(rule_indices(0b1010_0001).collect::<Vec<_>>(), [0, 5, 7]);
        assert_eq!(rule_indices(0).count(), 0);
        assert_eq!(rule_indices(1 << 63).collect::<Vec<_>>(), [63]);
    }
}
