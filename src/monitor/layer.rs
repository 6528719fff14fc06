//! [`HeaderMonitorLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::event::{MonitorEvent, Threshold};
use super::handle::MonitorHandle;
use super::state::{EventFn, KeyFn, Shared};
use super::HeaderMonitor;
use crate::client::Endpoint;
use crate::headers::ratelimit::DEFAULT_RESET_CAP;

/// Default bound on the number of endpoints with a snapshot.
pub const DEFAULT_MAX_ENDPOINTS: usize = 10_000;

/// The default endpoint key: the request's authority (or, for a relative URI, its `Host`
/// header) followed by its path, without the query: `"api.example.com/v1/users"`. It is the
/// endpoint every client layer uses: pacing's adaptive rates are kept by the same key, and
/// the Retry-After gate's [`default_endpoint`](crate::retry_after::default_endpoint) is
/// this key after the method.
///
/// A gRPC call's path is its method: the key is `host:port/pkg.Service/Method` when the
/// client sends absolute URIs (tonic's `Grpc::with_origin`, a generated client's
/// `with_origin(stack, origin)`), and `/pkg.Service/Method` with tonic's default
/// relative URIs (`Grpc::new`: the channel adds its origin below the layers). Use
/// `with_origin` when one monitor serves channels to several servers.
///
/// ```
/// let req = http::Request::get("https://api.example.com/v1/users?page=2").body(())?;
/// let (head, _) = req.into_parts();
/// assert_eq!(tower_throttle::monitor::default_key(&head), "api.example.com/v1/users");
/// # Ok::<(), http::Error>(())
/// ```
pub fn default_key(head: &http::request::Parts) -> String {
    Endpoint::of(head).key()
}

/// Why a [`HeaderMonitorLayer`] could not be built.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MonitorConfigError {
    /// A [`Threshold::Fraction`] that is not a finite number within `0.0..=1.0`.
    BadFraction(f64),
}

impl fmt::Display for MonitorConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorConfigError::BadFraction(x) => {
                write!(f, "threshold fraction {x} is not within 0.0..=1.0")
            }
        }
    }
}

impl std::error::Error for MonitorConfigError {}

/// Applies [`HeaderMonitor`] to a client service: watches the rate-limit headers the
/// server sends back, per endpoint, and warns before the quota runs out.
///
/// Cheap to clone; every clone, every service it makes and every [`MonitorHandle`] share
/// the same snapshots, counters and callback.
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::{Arc, Mutex};
/// use tower::{Layer, ServiceExt};
/// use tower_throttle::monitor::{HeaderMonitorLayer, MonitorEvent, Threshold};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let events = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&events);
/// let layer = HeaderMonitorLayer::builder()
///     .threshold(Threshold::Fraction(0.10))
///     .on_event(move |e: &MonitorEvent| sink.lock().unwrap().push(e.clone()))
///     .build()?;
/// let handle = layer.handle();
///
/// // Any `Service<Request<B>, Response = Response<ResB>>`, e.g. a hyper client.
/// let client = layer.layer(tower::service_fn(|_req: http::Request<String>| async {
///     let res = http::Response::builder()
///         .header("x-ratelimit-limit", "100")
///         .header("x-ratelimit-remaining", "7")
///         .body(String::new());
///     Ok::<_, Infallible>(res.unwrap())
/// }));
/// let req = http::Request::get("https://api.example.com/v1/users?page=2").body(String::new())?;
/// client.oneshot(req).await?;
///
/// let snapshot = handle.snapshot("api.example.com/v1/users").unwrap();
/// assert_eq!((snapshot.limit, snapshot.remaining), (Some(100), Some(7)));
/// assert_eq!(handle.stats().warnings, 1);
/// assert!(matches!(events.lock().unwrap()[0], MonitorEvent::LowRemaining { remaining: 7, .. }));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HeaderMonitorLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for HeaderMonitorLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderMonitorLayer")
            .field("threshold", &self.shared.threshold)
            .finish_non_exhaustive()
    }
}

impl Default for HeaderMonitorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderMonitorLayer {
    /// A layer with the defaults: [`Threshold::Fraction(0.10)`](Threshold::Fraction),
    /// [`default_key`], 10,000 endpoints, no callback.
    pub fn new() -> Self {
        HeaderMonitorLayer {
            shared: Arc::new(Shared::new(
                Threshold::default(),
                None,
                DEFAULT_MAX_ENDPOINTS,
                None,
                DEFAULT_RESET_CAP,
            )),
        }
    }

    /// Starts a layer with the defaults of [`new`](Self::new).
    pub fn builder() -> HeaderMonitorLayerBuilder {
        HeaderMonitorLayerBuilder {
            threshold: Threshold::default(),
            key: None,
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            on_event: None,
            reset_cap: DEFAULT_RESET_CAP,
        }
    }

    /// Reads the snapshots and counters (shared with every clone).
    pub fn handle(&self) -> MonitorHandle {
        MonitorHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> Layer<S> for HeaderMonitorLayer {
    type Service = HeaderMonitor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderMonitor {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Configures a [`HeaderMonitorLayer`]; [`build`](Self::build) validates the threshold.
pub struct HeaderMonitorLayerBuilder {
    threshold: Threshold,
    /// `None`: [`default_key`].
    key: Option<KeyFn>,
    max_endpoints: usize,
    on_event: Option<EventFn>,
    reset_cap: Duration,
}

impl fmt::Debug for HeaderMonitorLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderMonitorLayerBuilder")
            .field("threshold", &self.threshold)
            .field("max_endpoints", &self.max_endpoints)
            .field("reset_cap", &self.reset_cap)
            .finish_non_exhaustive()
    }
}

impl HeaderMonitorLayerBuilder {
    /// When remaining quota counts as low (default `Fraction(0.10)`).
    pub fn threshold(mut self, threshold: Threshold) -> Self {
        self.threshold = threshold;
        self
    }

    /// How requests map to endpoints (default [`default_key`]: authority and path). Called
    /// once per request, before it is sent.
    pub fn endpoint_key<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> String + Send + Sync + 'static,
    {
        self.key = Some(Arc::new(f));
        self
    }

    /// Most endpoints with a snapshot (default 10,000); beyond it the least recently seen
    /// is dropped. `0` keeps no snapshots (counters and events still work).
    pub fn max_endpoints(mut self, n: usize) -> Self {
        self.max_endpoints = n;
        self
    }

    /// Also sends every [`MonitorEvent`] to `f` (they always go to `tracing`). Called on
    /// the task that polls the response future, after the snapshot is updated.
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: Fn(&MonitorEvent) + Send + Sync + 'static,
    {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// The longest reset (or retry-after) a snapshot believes (default 1 day,
    /// [`DEFAULT_RESET_CAP`], the cap of retry hints): a server asking for longer is read
    /// as asking for `cap`, and the snapshot says so
    /// ([`EndpointSnapshot::capped`](super::EndpointSnapshot::capped)).
    ///
    /// Readings of the legacy `X-RateLimit-Reset` cannot exceed 999,999,999 s (31.7
    /// years: larger numbers are epoch times, see
    /// [`parse_reset`](crate::headers::parse_reset)).
    pub fn reset_cap(mut self, cap: Duration) -> Self {
        self.reset_cap = cap;
        self
    }

    /// Validates the configuration and builds the layer.
    pub fn build(self) -> Result<HeaderMonitorLayer, MonitorConfigError> {
        if let Threshold::Fraction(f) = self.threshold {
            if !self.threshold.is_valid() {
                return Err(MonitorConfigError::BadFraction(f));
            }
        }
        Ok(HeaderMonitorLayer {
            shared: Arc::new(Shared::new(
                self.threshold,
                self.key,
                self.max_endpoints,
                self.on_event,
                self.reset_cap,
            )),
        })
    }
}
