#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]

mod engine;
mod rules;

pub mod backoff;
pub mod headers;
pub mod monitor;
pub mod rate_limit;
pub mod retry;
pub mod retry_after;

pub use engine::{clock, gcra, quota, store};
pub use rate_limit::pacing;
pub use rules::{key, path};
pub use rules::{MissingKey, PathMatching, Route, Rule};

pub use backoff::BackoffLayer;
pub use monitor::{HeaderMonitorLayer, MonitorHandle};
pub use quota::{Quota, QuotaError};
pub use rate_limit::{
    BuildError, HttpResponder, RateLimit, RateLimitHandle, RateLimitLayer, RateLimitLayerBuilder,
    Rejection, RejectionReason, Responder, RuleStats, StoreFailure,
};
pub use retry::{Error, RetryError};
pub use retry_after::RetryAfterLayer;
pub use store::{MemoryStore, Store};
