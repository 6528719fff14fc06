//! The [`HeaderMonitor`] service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::state::{PendingKey, Shared};

/// Records the rate-limit headers of `S`'s responses; made by
/// [`HeaderMonitorLayer`](super::HeaderMonitorLayer).
///
/// Requests and responses pass through unchanged, errors too (they are not recorded).
pub struct HeaderMonitor<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for HeaderMonitor<S> {
    fn clone(&self) -> Self {
        HeaderMonitor {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for HeaderMonitor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderMonitor")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> HeaderMonitor<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for HeaderMonitor<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The key is taken before sending (the default one is only built when a response
        // needs it, from parts read in place); a user's key function gets the head, so the
        // request is split and rejoined for it (moves only).
        let (endpoint, req) = match &self.shared.key {
            Some(key) => {
                let (head, body) = req.into_parts();
                (
                    PendingKey::Built(key(&head)),
                    Request::from_parts(head, body),
                )
            }
            None => {
                let uri = req.uri();
                let host = uri
                    .authority()
                    .is_none()
                    .then(|| req.headers().get(http::header::HOST).cloned())
                    .flatten();
                let uri = uri.clone();
                (PendingKey::Default { uri, host }, req)
            }
        };
        let fut = self.inner.call(req);
        ResponseFuture::new(fut, Arc::clone(&self.shared), endpoint)
    }
}
