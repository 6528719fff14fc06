//! `HeaderMonitorLayer`: watch the rate-limit headers a server sends back (client side).
//!
//! Every response passes through unchanged; its rate-limit headers (any dialect
//! [`parse_rate_limit`](crate::headers::ratelimit::parse_rate_limit) understands) update a
//! per-endpoint [`EndpointSnapshot`], counters, and [`MonitorEvent`]s sent to `tracing` and
//! to an optional callback. Read them through a [`MonitorHandle`].
//!
//! See [`HeaderMonitorLayer`] for an example.

mod event;
mod future;
mod handle;
mod layer;
mod service;
mod state;

pub use event::{MonitorEvent, Threshold};
pub use future::ResponseFuture;
pub use handle::{MonitorHandle, MonitorStats};
pub use layer::{
    default_key, HeaderMonitorLayer, HeaderMonitorLayerBuilder, MonitorConfigError,
    DEFAULT_MAX_ENDPOINTS,
};
pub use service::HeaderMonitor;
pub use state::EndpointSnapshot;
