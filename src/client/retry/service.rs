//! [`Retrying`]: the service of both retrying layers, generic over the policy.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::RetryFuture;
use super::Policy;
use crate::client::{BoxError, Error, ReplayBody};

/// Sends requests through `S`, retrying as the policy `P` decides: the service made by
/// [`BackoffLayer`](crate::BackoffLayer) (named
/// [`BackoffService<S>`](crate::backoff::BackoffService)) and by
/// [`RetryAfterLayer`](crate::RetryAfterLayer) (named
/// [`RetryAfter<S>`](crate::retry_after::RetryAfter)).
///
/// The inner service receives `Request<ReplayBody>`: the body is kept (up to a limit)
/// so that a retry sends it byte-identical. Errors are this crate's [`Error`] (a boxed error
/// in a concrete type); the layers' own failures inside are
/// [`RetryError`](crate::RetryError)s.
pub struct Retrying<S, P> {
    inner: S,
    policy: Arc<P>,
}

impl<S, P> Retrying<S, P> {
    pub(crate) fn new(inner: S, policy: Arc<P>) -> Self {
        Retrying { inner, policy }
    }
}

impl<S: Clone, P> Clone for Retrying<S, P> {
    fn clone(&self) -> Self {
        Retrying {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<S: std::fmt::Debug, P> std::fmt::Debug for Retrying<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrying")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, P, B, ResB> Service<Request<B>> for Retrying<S, P>
where
    S: Service<Request<ReplayBody>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = Error;
    type Future = RetryFuture<S, S::Future, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::new)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes with the request; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        RetryFuture::new(inner, req, Arc::clone(&self.policy))
    }
}
