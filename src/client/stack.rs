//! [`ClientStack`]: the client layers in the one order in which retries are paced again,
//! as one [`Layer`].

use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::backoff::{BackoffLayer, BackoffService};
use crate::monitor::{HeaderMonitor, HeaderMonitorLayer, MonitorHandle};
use crate::rate_limit::pacing::{Pacing, PacingLayer};
use crate::retry_after::{RetryAfter, RetryAfterLayer};
use crate::store::MemoryStore;

/// The client layers in the documented order: Retry-After, backoff, pacing, monitor, then
/// the service it wraps.
///
/// # The order
///
/// Outermost first, and why each sits where it does:
///
/// 1. **[`RetryAfterLayer`]** (the Retry-After gate and its retries). Its gate holds a new
///    request to an endpoint the server blocked *before* it takes a pacing slot, and a
///    retry it schedules after a 429/503 goes down through pacing again, so the retry waits
///    for a slot like any other request. Outermost, it also owns the attempt count every
///    retrying layer below shares (stacking never multiplies attempts).
/// 2. **[`BackoffLayer`]** (transport errors and 500/502/504, jittered exponential delays;
///    429 and 503 are left to the Retry-After layer above). Inside
///    the Retry-After layer, so both count against one attempt total and a server's delay
///    is honored once; above pacing, so its retries are paced too.
/// 3. **[`PacingLayer`]** (the client's copy of the limit: rules, or adaptive pacing that
///    learns the server's limit from the first answer). Every attempt, first or retry,
///    waits here for a slot, so the server rarely has to refuse.
/// 4. **[`HeaderMonitorLayer`]** (innermost, next to the wire). It sees every answer the
///    server sent, including those a retry absorbed, and its per-endpoint snapshot is what
///    the server said last.
///
/// With pacing outermost instead (pacing, monitor, Retry-After), a retry skips pacing:
/// over real loopback HTTP, 400 requests from 20 tasks against 100 per 10 s drew 16–27
/// 429s and a caller got `RetryError::Exhausted`; in this order, 0–1 429s and 30.0–30.1 s
/// (the least the limit allows is 30 s).
///
/// The service the stack makes answers requests of one body type only, so
/// `svc.ready().await?` needs no type annotation (a bare `ServiceBuilder` stack of the
/// same layers accepts any body type, and `ready()` on it does not compile without one).
///
/// # Example
///
/// `B` is the request body type of the service it makes; it is inferred from the requests
/// sent.
///
/// ```
/// use std::time::Duration;
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, Service};
/// use tower_throttle::key::BearerToken;
/// use tower_throttle::{ClientStack, Quota, RateLimitLayer, ReplayBody, Rule};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let pacing = RateLimitLayer::builder()
///    .rule(Rule::new("api", Quota::new(100, Duration::from_secs(10))?).key(BearerToken))
///    .build()?
///    .pacing()
///    .build()?;
/// let stack = ClientStack::builder(pacing).build();
/// let monitor = stack.monitor_handle();
/// // Any `Service<Request<ReplayBody>>`: a hyper client in real code.
/// let http = tower::service_fn(|_req: Request<ReplayBody>| async {
///    Ok::<_, std::convert::Infallible>(Response::new("ok"))
/// });
/// let mut svc = ServiceBuilder::new().layer(stack).service(http);
/// // No type annotation needed:
/// let res = svc.ready().await?.call(Request::new(String::new())).await?;
/// assert_eq!(res.status(), 200);
/// assert_eq!(monitor.stats().responses, 1);
/// # Ok(())
/// # }
/// ```
///
/// The same layers stacked by hand need one (`ready::<Request<String>>()`):
///
/// ```compile_fail,E0283
/// # use http::{Request, Response};
/// # use tower::{ServiceBuilder, ServiceExt, Service};
/// # use tower_throttle::{BackoffLayer, RetryAfterLayer, ReplayBody};
/// # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let http = tower::service_fn(|_req: Request<ReplayBody>| async {
/// #     Ok::<_, std::convert::Infallible>(Response::new("ok"))
/// # });
/// let mut svc = ServiceBuilder::new()
///    .layer(RetryAfterLayer::builder().build()?)
///    .layer(BackoffLayer::builder().build()?)
///    .service(http);
/// svc.ready().await?; // error[E0283]: type annotations needed
/// # Ok(())
/// # }
/// ```
pub struct ClientStack<B, St = MemoryStore> {
    retry_after: RetryAfterLayer,
    backoff: BackoffLayer,
    pacing: PacingLayer<St>,
    monitor: HeaderMonitorLayer,
    body: PhantomData<fn(B)>,
}

impl<B, St: Clone> Clone for ClientStack<B, St> {
    fn clone(&self) -> Self {
        ClientStack {
            retry_after: self.retry_after.clone(),
            backoff: self.backoff.clone(),
            pacing: self.pacing.clone(),
            monitor: self.monitor.clone(),
            body: PhantomData,
        }
    }
}

impl<B, St> fmt::Debug for ClientStack<B, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStack")
            .field("retry_after", &self.retry_after)
            .field("backoff", &self.backoff)
            .field("pacing", &self.pacing)
            .field("monitor", &self.monitor)
            .finish()
    }
}

impl<St> ClientStack<(), St> {
    /// A stack around `pacing`, with the default [`RetryAfterLayer`], [`BackoffLayer`] and
    /// [`HeaderMonitorLayer`] until replaced.
    pub fn builder(pacing: PacingLayer<St>) -> ClientStackBuilder<St> {
        ClientStackBuilder {
            retry_after: None,
            backoff: None,
            pacing,
            monitor: None,
        }
    }
}

impl<B, St> ClientStack<B, St> {
    /// The Retry-After layer (its gate, for inspection).
    pub fn retry_after(&self) -> &RetryAfterLayer {
        &self.retry_after
    }

    /// The backoff layer (its budget, for inspection).
    pub fn backoff(&self) -> &BackoffLayer {
        &self.backoff
    }

    /// The pacing layer (its handle, usage warnings and adaptive rates).
    pub fn pacing(&self) -> &PacingLayer<St> {
        &self.pacing
    }

    /// The monitor's handle: what the server said, per endpoint.
    pub fn monitor_handle(&self) -> MonitorHandle {
        self.monitor.handle()
    }
}

/// Builds a [`ClientStack`]; every layer but pacing has a default.
pub struct ClientStackBuilder<St = MemoryStore> {
    retry_after: Option<RetryAfterLayer>,
    backoff: Option<BackoffLayer>,
    pacing: PacingLayer<St>,
    monitor: Option<HeaderMonitorLayer>,
}

impl<St> fmt::Debug for ClientStackBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStackBuilder")
            .field("retry_after", &self.retry_after)
            .field("backoff", &self.backoff)
            .field("pacing", &self.pacing)
            .field("monitor", &self.monitor)
            .finish()
    }
}

impl<St> ClientStackBuilder<St> {
    /// The Retry-After layer (default: `RetryAfterLayer::builder().build()`).
    pub fn retry_after(mut self, layer: RetryAfterLayer) -> Self {
        self.retry_after = Some(layer);
        self
    }

    /// The backoff layer (default: `BackoffLayer::builder()` with
    /// [`statuses`](crate::backoff::BackoffLayerBuilder::statuses) 500, 502 and 504: 429 and
    /// 503 are the Retry-After layer's, which honors the server's delay, spreads bare
    /// refusals and does not give up while the server admits others).
    pub fn backoff(mut self, layer: BackoffLayer) -> Self {
        self.backoff = Some(layer);
        self
    }

    /// The header monitor (default: [`HeaderMonitorLayer::new`]).
    pub fn monitor(mut self, layer: HeaderMonitorLayer) -> Self {
        self.monitor = Some(layer);
        self
    }

    /// The stack; its request body type `B` is inferred from the requests sent.
    pub fn build<B>(self) -> ClientStack<B, St> {
        ClientStack {
            retry_after: self.retry_after.unwrap_or_else(|| {
                RetryAfterLayer::builder()
                    .build()
                    .expect("the default settings are valid")
            }),
            backoff: self.backoff.unwrap_or_else(|| {
                BackoffLayer::builder()
                    .statuses(BACKOFF_STATUSES)
                    .build()
                    .expect("the default settings are valid")
            }),
            pacing: self.pacing,
            monitor: self.monitor.unwrap_or_default(),
            body: PhantomData,
        }
    }
}

/// The statuses the default backoff layer of a [`ClientStack`] retries.
const BACKOFF_STATUSES: [http::StatusCode; 3] = [
    http::StatusCode::INTERNAL_SERVER_ERROR,
    http::StatusCode::BAD_GATEWAY,
    http::StatusCode::GATEWAY_TIMEOUT,
];

/// The layers of a [`ClientStack`] around `S`, outermost first.
pub type ClientInner<S, St = MemoryStore> =
    RetryAfter<BackoffService<Pacing<HeaderMonitor<S>, St>>>;

impl<S, B, St: Clone> Layer<S> for ClientStack<B, St> {
    type Service = ClientService<S, B, St>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = self.monitor.layer(inner);
        let inner = self.pacing.layer(inner);
        let inner = self.backoff.layer(inner);
        ClientService {
            inner: self.retry_after.layer(inner),
            body: PhantomData,
        }
    }
}

/// The service a [`ClientStack`] makes: the stacked layers, for requests of body `B`.
pub struct ClientService<S, B, St = MemoryStore> {
    inner: ClientInner<S, St>,
    body: PhantomData<fn(B)>,
}

impl<S, B, St> Clone for ClientService<S, B, St>
where
    ClientInner<S, St>: Clone,
{
    fn clone(&self) -> Self {
        ClientService {
            inner: self.inner.clone(),
            body: PhantomData,
        }
    }
}

impl<S, B, St> fmt::Debug for ClientService<S, B, St>
where
    ClientInner<S, St>: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientService")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, B, St> ClientService<S, B, St> {
    /// The stacked services.
    pub fn get_ref(&self) -> &ClientInner<S, St> {
        &self.inner
    }
}

impl<S, B, St> Service<Request<B>> for ClientService<S, B, St>
where
    ClientInner<S, St>: Service<Request<B>>,
{
    type Response = <ClientInner<S, St> as Service<Request<B>>>::Response;
    type Error = <ClientInner<S, St> as Service<Request<B>>>::Error;
    type Future = <ClientInner<S, St> as Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}
