//! The [`Pacing`] service: wait for the turn, then send.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::error::PacingError;
use super::pacer::Pacer;
use crate::client::{BoxError, Endpoint, Error};
use crate::engine::store::{MemoryStore, Store};
use crate::headers::is_grpc;
use crate::telemetry;

/// The response future of [`Pacing`]: boxed, since it waits in several stages (turn,
/// limits, quotas) before the inner call; one allocation per request on the client side.
pub type PacingFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

/// Sends each request once its rules admit it, waiting in FIFO order per key.
pub struct Pacing<S, St = MemoryStore> {
    pub(crate) inner: S,
    pub(crate) pacer: Arc<Pacer>,
    pub(crate) store: St,
}

impl<S: Clone, St: Clone> Clone for Pacing<S, St> {
    fn clone(&self) -> Self {
        Pacing {
            inner: self.inner.clone(),
            pacer: Arc::clone(&self.pacer),
            store: self.store.clone(),
        }
    }
}

impl<S: std::fmt::Debug, St> std::fmt::Debug for Pacing<S, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacing")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Pacing<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    St: Store + Clone,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = Error;
    type Future = PacingFuture<Response<ResB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::new)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The ready service goes with the request; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pacer = Arc::clone(&self.pacer);
        let store = self.store.clone();
        Box::pin(async move {
            // A gRPC call's errors carry the status a gRPC caller reads.
            let grpc = is_grpc(req.headers());
            let fail = |e: PacingError| Error::from(if grpc { e.for_grpc_call() } else { e });
            let deadline = Instant::now() + pacer.max_queue_wait;
            let waited = telemetry::Timer::start();
            let planned = pacer.plan(&req).map_err(fail)?;
            let permits = pacer
                .acquire_permits(&planned, deadline)
                .await
                .map_err(fail)?;
            pacer
                .wait_for_limits(&store, &planned, deadline)
                .await
                .map_err(fail)?;
            let usage_keys = pacer.usage_keys(&req);
            let statuses = pacer.count_usage(&store, usage_keys).await.map_err(fail)?;
            let endpoint = pacer
                .adaptive
                .as_ref()
                .map(|_| Endpoint::new(req.uri(), req.headers().get(http::header::HOST)).key());
            if let Some(endpoint) = &endpoint {
                pacer
                    .wait_adaptive_slot(endpoint, deadline)
                    .await
                    .map_err(fail)?;
            }
            waited.pacing_wait();
            // Until an answer is observed, a failed or dropped call reopens the probe.
            let unanswered = Unanswered(&pacer, endpoint.as_deref());
            let mut res = inner.call(req).await.map_err(Error::new)?;
            std::mem::forget(unanswered);
            if let (Some(adaptive), Some(endpoint)) = (&pacer.adaptive, &endpoint) {
                adaptive.observe(endpoint, res.status(), res.headers());
            }
            drop(permits);
            if !statuses.is_empty() {
                res.extensions_mut().insert(statuses);
            }
            Ok(res)
        })
    }
}

/// Tells adaptive pacing that a sent request got no answer (an error, or the caller
/// dropped it) when dropped, so a probe that failed does not hold the others back.
struct Unanswered<'a>(&'a Pacer, Option<&'a str>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let (Some(adaptive), Some(endpoint)) = (&self.0.adaptive, self.1) {
            adaptive.failed(endpoint);
        }
    }
}
