//! The server side of `RateLimitLayer`: keyed limits answered with 429.
//!
//! See [`RateLimitLayer`] for an example, [`Rule`](crate::Rule) for matching and keys.

mod body;
mod future;
pub(crate) mod handle;
pub(crate) mod layer;
pub mod pacing;
pub(crate) mod plan;
mod response;
mod service;

pub use body::{BodyMode, RateLimitBody, Unwrapped, Wrapped};
pub use future::ResponseFuture;
pub use handle::{RateLimitHandle, RuleStats};
pub use layer::{BuildError, RateLimitLayer, RateLimitLayerBuilder};
pub use response::{Rejection, RejectionReason, StoreFailure};
pub use service::RateLimit;
