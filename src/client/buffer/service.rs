//! [`BufferResponse`]: the service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{BufferResponseFuture, BufferSettings, BufferedBody};

/// Reads each response body whole, up to a bound, and hands it on as a [`BufferedBody`]:
/// the service under a body-reading [`BackoffLayer`](crate::backoff::BackoffLayer) (made
/// by [`retry_if_body`](crate::backoff::BackoffLayerBuilder::retry_if_body), whose docs
/// say what it costs).
pub struct BufferResponse<S> {
    inner: S,
    settings: Arc<BufferSettings>,
}

impl<S> BufferResponse<S> {
    pub(crate) fn new(inner: S, settings: Arc<BufferSettings>) -> Self {
        BufferResponse { inner, settings }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> Clone for BufferResponse<S> {
    fn clone(&self) -> Self {
        BufferResponse {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for BufferResponse<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferResponse")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S, ReqB, B> Service<Request<ReqB>> for BufferResponse<S>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    B: http_body::Body,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response<BufferedBody<B>>;
    type Error = S::Error;
    type Future = BufferResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        BufferResponseFuture::new(self.inner.call(req), Arc::clone(&self.settings))
    }
}
