#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]

pub mod backoff;
pub mod clock;
pub mod gcra;
pub mod headers;
pub mod key;
pub mod monitor;
pub mod pacing;
pub mod path;
pub mod quota;
pub mod rate_limit;
pub mod retry;
pub mod retry_after;
pub mod rule;
pub mod store;

pub use backoff::BackoffLayer;
pub use monitor::{HeaderMonitorLayer, MonitorHandle};
pub use quota::{Quota, QuotaError};
pub use rate_limit::{
    BuildError, RateLimit, RateLimitHandle, RateLimitLayer, RateLimitLayerBuilder, Rejection,
    RejectionReason, RuleStats, StoreFailure,
};
pub use retry::{Error, RetryError};
pub use retry_after::RetryAfterLayer;
pub use rule::{MissingKey, Route, Rule};
pub use store::{MemoryStore, Store};
