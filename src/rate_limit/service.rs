//! The [`RateLimit`] service: matches rules, asks the store, answers or forwards.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use tower_service::Service;

use super::body::{BodyMode, Wrapped};
use super::future::ResponseFuture;
use super::handle::bump;
use super::limiter::Settled;
use super::reload::Live;
use super::responder::RejectionReason;
use super::rule_set::{Checks, Plan};
use crate::engine::clock::Clock;
use crate::engine::store::{MemoryStore, Store};
use crate::telemetry::Timer;

/// Enforces a [`RateLimitLayer`](super::RateLimitLayer)'s rules in front of `S`.
///
/// A request matching no rule, or an exempt route, goes straight to `S`. Otherwise all
/// matching rules are decided at once; a refused request is answered by the layer's
/// [responder](super::RateLimitLayerBuilder::responder) (by default `429 Too Many
/// Requests`, or for a gRPC call a trailers-only `RESOURCE_EXHAUSTED`: a response, not an
/// error, so axum's and tonic's `Infallible` services work) and never reaches `S`.
///
/// With the `tonic` feature, a `RateLimit` around a tonic service is a
/// `tonic::server::NamedService` of the same name, so one service can be layered:
/// `Server::builder().add_service(layer.layer(GreeterServer::new(..)))`. Applied to the
/// whole server (`Server::builder().layer(layer)`), it sees every call.
///
/// `M` is the [`BodyMode`]: by default responses carry a
/// [`RateLimitBody`](super::RateLimitBody); see
/// [`RateLimitLayer::unwrapped_body`](super::RateLimitLayer::unwrapped_body).
pub struct RateLimit<S, St = MemoryStore, M = Wrapped> {
    pub(crate) inner: S,
    /// The rules in force: loaded once per request, so one set decides it.
    pub(crate) live: Arc<Live>,
    pub(crate) store: St,
    pub(crate) mode: PhantomData<fn() -> M>,
}

impl<S: Clone, St: Clone, M> Clone for RateLimit<S, St, M> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            live: Arc::clone(&self.live),
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
        // One rule set for the whole request, even if a reload replaces it meanwhile.
        let limiter = &self.live.current.load();
        let mut checks = Checks::new();
        let matched = match limiter.rules.plan(&req, &mut checks) {
            Plan::Pass => return ResponseFuture::calling(self.inner.call(req), None),
            Plan::BadPath(e) => {
                bump(&limiter.rules.stats.bad_paths);
                limiter.rules.stats.metrics.bad_path();
                let reason = RejectionReason::BadPath(e.what());
                return ResponseFuture::respond(limiter.reject(reason, None, &req));
            }
            Plan::MissingKey { rule, what } => {
                let reason = RejectionReason::MissingKey(what);
                return ResponseFuture::respond(limiter.reject(reason, Some(rule), &req));
            }
            Plan::Check { matched } => matched,
        };
        let now = limiter.rules.clock.now();
        let timer = Timer::start();
        let mut check = self.store.check(now, checks.as_slice());
        // Stores that decide synchronously (the in-memory one) are settled right here,
        // without cloning the inner service.
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut check).poll(&mut cx) {
            Poll::Ready(result) => match limiter.settled(timer).settle(matched, result, &req) {
                Settled::Admit(headline) => {
                    let headers = headline.map(|h| (Arc::clone(limiter), h));
                    ResponseFuture::calling(self.inner.call(req), headers)
                }
                Settled::Reject(res) => ResponseFuture::respond(res),
            },
            Poll::Pending => {
                // The ready service goes with the request; this one takes a fresh clone.
                let limiter = Arc::clone(limiter);
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, inner, req, limiter, matched, timer)
            }
        }
    }
}

#[cfg(feature = "tonic")]
impl<S, St, M> tonic::server::NamedService for RateLimit<S, St, M>
where
    S: tonic::server::NamedService,
{
    const NAME: &'static str = S::NAME;
}
