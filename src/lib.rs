#![forbid(unsafe_code)]
#![warn(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`): badge every feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
//!
//! # How the crate is built
//!
//! Each folder depends only on the ones above it:
//!
//! | folder | holds | knows of |
//! | --- | --- | --- |
//! | `engine/` | [`Quota`], the GCRA decision ([`gcra`]), the [`clock`], the [`Store`] trait, [`MemoryStore`] and the Redis store | nothing else: no tower, no HTTP |
//! | `rules/` | [`Rule`], [`Route`], the [`key`] extractors, canonical [`path`]s | the engine, `http` requests |
//! | `headers/` | writing and reading rate-limit headers and gRPC's status fields ([`headers`]) | the engine |
//! | `client/` | what the client layers share: the retry loop, the replay body, jitter, the endpoint identity, the gRPC classification of responses, [`Error`] (and `TonicBodyLayer`, feature `tonic`) | headers |
//! | `rate_limit/`, `retry_after/`, `backoff/`, `monitor/` | the layers: tower glue over the folders above | the folders above; never a sibling layer |
//!
//! [`pacing`] is the rate limiter's client mode and lives in `rate_limit/`.

mod client;
mod engine;
mod rules;

pub mod backoff;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
pub mod headers;
pub mod monitor;
pub mod rate_limit;
pub mod retry_after;
pub mod telemetry;

pub use engine::{clock, gcra, quota, store};
pub use rate_limit::pacing;
pub use rules::{key, path};
pub use rules::{MissingKey, MissingKeyParseError, PathMatching, Route, RouteParseError, Rule};

pub use backoff::BackoffLayer;
pub use client::{
    BodyNotReplayable, BoxError, Error, ReplayBody, RetryContext, RetryError, RetryFuture, Retrying,
};
pub use client::{BufferResponse, BufferResponseFuture, BufferedBody};
pub use client::{ClientInner, ClientService, ClientStack, ClientStackBuilder};
#[cfg(feature = "tonic")]
pub use client::{TonicBody, TonicBodyLayer};
pub use client::{DEFAULT_GRPC_RETRY_CODES, NEVER_RETRIED_GRPC_CODES};
pub use monitor::{HeaderMonitorLayer, MonitorHandle};
pub use quota::{Quota, QuotaError, QuotaParseError};
pub use rate_limit::{
    AutoResponder, BuildError, GrpcResponder, HttpResponder, RateLimit, RateLimitHandle,
    RateLimitLayer, RateLimitLayerBuilder, Rejection, RejectionReason, ReloadReport, Responder,
    RuleStats, StoreFailure,
};
pub use retry_after::RetryAfterLayer;
pub use store::{MemoryStore, Store};
