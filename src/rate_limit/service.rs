//! The [`RateLimit`] service: matches rules, asks the store, answers or forwards.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::body::{BodyMode, Wrapped};
use super::future::{Headline, ResponseFuture};
use super::handle::{bump, bump_at, my_stripe};
use super::layer::Shared;
use super::plan::{Checks, Plan};
use super::response::{RejectionReason, StoreFailure};
use crate::engine::clock::Clock;
use crate::engine::gcra::Decision;
use crate::engine::store::{MemoryStore, Store, StoreError};
use crate::headers::HeaderDialects;

/// Enforces a [`RateLimitLayer`](super::RateLimitLayer)'s rules in front of `S`.
///
/// A request matching no rule, or an exempt route, goes straight to `S`. Otherwise all
/// matching rules are decided at once; a refused request is answered with
/// `429 Too Many Requests` (an HTTP response, not an error, so axum's `Infallible` services
/// work) and never reaches `S`.
///
/// `M` is the [`BodyMode`]: by default responses carry a
/// [`RateLimitBody`](super::RateLimitBody); see
/// [`RateLimitLayer::unwrapped_body`](super::RateLimitLayer::unwrapped_body).
pub struct RateLimit<S, St = MemoryStore, M = Wrapped> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: St,
    pub(crate) mode: PhantomData<fn() -> M>,
}

impl<S: Clone, St: Clone, M> Clone for RateLimit<S, St, M> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            store: self.store.clone(),
            mode: PhantomData,
        }
    }
}

impl<S: std::fmt::Debug, St, M> std::fmt::Debug for RateLimit<S, St, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Counts a decision and turns it into what to do with the request.
    pub(crate) fn settle(&self, matched: u64, result: Result<Decision, StoreError>) -> Settled {
        let decision = match result {
            Ok(d) => {
                // One relaxed load per request while the store works; the swap (a write
                // to a shared line) happens only on the request that sees it recover.
                if self.stats.store_failing.load(Ordering::Relaxed)
                    && self.stats.store_failing.swap(false, Ordering::Relaxed)
                {
                    tracing::info!(
                        transition = "recovered",
                        store_errors = self.stats.store_errors.load(),
                        "rate-limit store answers again"
                    );
                }
                d
            }
            Err(error) => {
                bump(&self.stats.store_errors);
                if self.stats.store_failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(%error, "rate-limit store failed");
                } else {
                    tracing::warn!(
                        transition = "failing",
                        %error,
                        policy = ?self.store_failure,
                        "rate-limit store failing: requests follow the layer's StoreFailure \
                         policy until it answers again"
                    );
                }
                return match self.store_failure {
                    StoreFailure::Admit => Settled::Admit(None),
                    StoreFailure::Reject(status) => Settled::Reject(self.reject(
                        status,
                        RejectionReason::StoreUnavailable,
                        None,
                        None,
                        None,
                    )),
                };
            }
        };
        let mut headline_rule = 0;
        if decision.admitted && decision.denied_mask == 0 {
            // The common case, every limit admitting: one admitted count per rule, the
            // thread's counter stripe looked up once.
            let stripe = my_stripe();
            for (k, i) in rule_indices(matched).enumerate() {
                if k == decision.headline.index {
                    headline_rule = i;
                }
                bump_at(&self.stats.rules[i].admitted, stripe);
            }
            let writes = self.dialects != HeaderDialects::NONE;
            return Settled::Admit(writes.then_some(Headline {
                rule: headline_rule,
                state: decision.headline,
            }));
        }
        for (k, i) in rule_indices(matched).enumerate() {
            let rule = &self.rules[i];
            let counters = &self.stats.rules[i];
            let denied = decision.denied_mask & (1 << k) != 0;
            if k == decision.headline.index {
                headline_rule = i;
            }
            if denied && rule.shadow {
                bump(&counters.shadow_limited);
                tracing::info!(rule = %rule.name, "shadow rule would have refused a request");
            } else if denied {
                bump(&counters.limited);
            } else if decision.admitted {
                bump(&counters.admitted);
            }
        }
        let headline = Headline {
            rule: headline_rule,
            state: decision.headline,
        };
        if decision.admitted {
            // No headline (so no `Arc` clone and no header pass on the response) when the
            // layer writes no rate-limit headers.
            let writes = self.dialects != HeaderDialects::NONE;
            return Settled::Admit(writes.then_some(headline));
        }
        tracing::debug!(
            rule = %self.rules[headline_rule].name,
            retry_after_ms = decision.retry_after.as_millis() as u64,
            "rate limited"
        );
        Settled::Reject(self.reject(
            StatusCode::TOO_MANY_REQUESTS,
            RejectionReason::RateLimited,
            Some(headline_rule),
            Some(&decision.headline),
            Some(decision.retry_after),
        ))
    }
}

/// A decision turned into what to do with the request.
pub(crate) enum Settled {
    /// Forward the request; write this rule's headers on the response (`None`: no
    /// headers to write).
    Admit(Option<Headline>),
    /// Answer with this response.
    Reject(Response<bytes::Bytes>),
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

impl<S, St, M, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, St, M>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    St: Store,
    M: BodyMode<ResB>,
{
    type Response = Response<M::Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St::CheckFuture, S, ReqB, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let mut checks = Checks::new();
        let matched = match self.shared.plan(&req, &mut checks) {
            Plan::Pass => return ResponseFuture::calling(self.inner.call(req), None),
            Plan::BadPath(e) => {
                bump(&self.shared.stats.bad_paths);
                return ResponseFuture::respond(self.shared.reject(
                    StatusCode::BAD_REQUEST,
                    RejectionReason::BadPath(e.what()),
                    None,
                    None,
                    None,
                ));
            }
            Plan::MissingKey { rule, status, what } => {
                return ResponseFuture::respond(self.shared.reject(
                    status,
                    RejectionReason::MissingKey(what),
                    Some(rule),
                    None,
                    None,
                ))
            }
            Plan::Check { matched } => matched,
        };
        let now = self.shared.clock.now();
        let mut check = self.store.check(now, checks.as_slice());
        // Stores that decide synchronously (the in-memory one) are settled right here,
        // without cloning the inner service.
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut check).poll(&mut cx) {
            Poll::Ready(result) => match self.shared.settle(matched, result) {
                Settled::Admit(headline) => {
                    let shared = headline.map(|h| (Arc::clone(&self.shared), h));
                    ResponseFuture::calling(self.inner.call(req), shared)
                }
                Settled::Reject(res) => ResponseFuture::respond(res),
            },
            Poll::Pending => {
                // The ready service goes with the request; this one takes a fresh clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, inner, req, Arc::clone(&self.shared), matched)
            }
        }
    }
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
