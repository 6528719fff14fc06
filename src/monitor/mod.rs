//! `HeaderMonitorLayer`: watch the rate-limit headers a server sends back (client side).
//!
//! Every response passes through unchanged; its rate-limit headers (any dialect
//! [`parse_rate_limit`](crate::headers::ratelimit::parse_rate_limit) understands) update a
//! per-endpoint [`EndpointSnapshot`], counters, and [`MonitorEvent`]s sent to `tracing` and
//! to an optional callback. Read them through a [`MonitorHandle`].
//!
//! gRPC: a gRPC response's metadata are its headers, so the same dialects are read (and
//! `grpc-retry-pushback-ms` as a retry-after); a `grpc-status` of `RESOURCE_EXHAUSTED` in
//! the headers (a trailers-only refusal, HTTP 200) counts as a hit, like a `429`. The
//! monitor is generic over the body, so it runs over a tonic `Channel` as it is. Metadata
//! sent in the trailers of a response with a body are not read.
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
