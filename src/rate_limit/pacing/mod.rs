//! The client mode of the rate limiter: instead of answering 429, a request **waits**
//! until its key may proceed, then is sent.
//!
//! Build the rules exactly as for the server side, then turn the layer into a
//! [`PacingLayer`] with [`RateLimitLayer::pacing`](crate::RateLimitLayer::pacing):
//!
//! ```
//! use std::time::Duration;
//! use tower_throttle::key::Header;
//! use tower_throttle::pacing::UsageQuota;
//! use tower_throttle::{Quota, RateLimitLayer, Rule};
//!
//! // Clay: at most 10 per second one at a time, 1,000 per hour, and 50,000 submissions per
//! // webhook over its lifetime (warn at 45,000).
//! let webhook = || Header::new(http::HeaderName::from_static("x-webhook-id"));
//! let pacing = RateLimitLayer::builder()
//!     .rule(Rule::new("per_second", Quota::per_second(10)?).concurrency(1))
//!     .rule(Rule::new("per_hour", Quota::per_hour(1000)?))
//!     .build()?
//!     .pacing()
//!     .max_queue_wait(Duration::from_secs(3600))
//!     .usage_quota(UsageQuota::lifetime("submissions", 50_000).warn_at(45_000).key(webhook()))
//!     .build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - **FIFO per key**: requests of one key (one set of rule keys) take turns in arrival
//!   order; a cancelled (dropped) request leaves the queue and gives its place back.
//! - **Several limits at once**, decided atomically by the store as on the server side.
//! - **Keyed concurrency** ([`Rule::concurrency`](crate::Rule::concurrency)).
//! - **Maximum queue wait**: past it, or when the wait needed is already longer, the
//!   request fails with [`PacingError`] and is not sent.
//! - **gRPC calls** (a gRPC `content-type`): pacing is body-generic, so it goes straight
//!   over a tonic `Channel` (no `TonicBodyLayer`). An unsent call fails with the gRPC code
//!   of [`PacingError::grpc_code`]; with feature `tonic` the error's source is that
//!   `tonic::Status`, with the wait as `grpc-retry-pushback-ms` when one is known, so a
//!   tonic caller reads `RESOURCE_EXHAUSTED` (or `INVALID_ARGUMENT`, `UNAVAILABLE`),
//!   not `UNKNOWN`.
//! - **Usage quotas** ([`UsageQuota`]): lifetime or per-window counters kept in the store,
//!   with a warning threshold and [`PacingError::UsageExhausted`] once used up.
//! - **Adaptive pacing** (opt-in, [`Aimd`]): per endpoint, spreads the remaining quota the
//!   server reports over the time to its reset, halves the rate on a 429 or a gRPC
//!   `RESOURCE_EXHAUSTED` (held for its `grpc-retry-pushback-ms`) and recovers gradually.
//! - State (store, queues, permits, counters, adaptive rates) is shared by every clone.

mod adaptive;
mod error;
mod layer;
mod learned;
mod pacer;
mod queue;
mod service;
mod usage;

pub use adaptive::{AdaptiveError, Aimd};
pub use error::PacingError;
pub use layer::{PacingLayer, PacingLayerBuilder};
pub use service::{Pacing, PacingFuture};
pub use usage::{UsageQuota, UsageStatus};
