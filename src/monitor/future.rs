//! [`ResponseFuture`] of the [`HeaderMonitor`](super::HeaderMonitor) service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::state::{PendingKey, Shared};

pin_project! {
    /// Response future of [`HeaderMonitor`](super::HeaderMonitor): the inner future,
    /// recording the response's rate-limit headers when it resolves `Ok`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Taken when the response is recorded.
        pending: Option<(Arc<Shared>, PendingKey)>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, shared: Arc<Shared>, endpoint: PendingKey) -> Self {
        ResponseFuture {
            inner,
            pending: Some((shared, endpoint)),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(res), Some((shared, endpoint))) = (&result, this.pending.take()) {
            shared.record(endpoint, res.status(), res.headers());
        }
        Poll::Ready(result)
    }
}
