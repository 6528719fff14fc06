//! The server side of `RateLimitLayer`: keyed limits; refused requests are answered by a
//! [`Responder`] (by default [`AutoResponder`]: 429 with a problem document, or for gRPC
//! calls a trailers-only response with `grpc-status` 8, RESOURCE_EXHAUSTED).
//!
//! See [`RateLimitLayer`] for an example, [`Rule`](crate::Rule) for matching and keys.

// Inside, a `RuleSet` (rule_set.rs: the compiled rules, which apply to a request and with
// which keys) serves both modes: the server mode's `Limiter` (limiter.rs) adds the
// responder and the headers, the client mode's `Pacer` (pacing/pacer.rs) its queues and
// usage quotas.

mod body;
mod future;
mod handle;
mod layer;
mod limiter;
pub mod pacing;
mod reload;
mod responder;
mod rule_set;
mod service;

pub use body::{BodyMode, RateLimitBody, Unwrapped, Wrapped};
pub use future::ResponseFuture;
pub use handle::{RateLimitHandle, RuleStats};
pub use layer::{BuildError, RateLimitLayer, RateLimitLayerBuilder};
pub use limiter::StoreFailure;
pub use reload::ReloadReport;
pub use responder::{
    AutoResponder, GrpcResponder, HttpResponder, Rejection, RejectionReason, Responder,
};
pub use service::RateLimit;

/// Validates rules and exempt routes as a layer's build would (config files check them
/// when they are read).
#[cfg(feature = "serde")]
pub(crate) fn validate(
    rules: Vec<crate::Rule>,
    exempt: &[crate::Route],
    path_matching: crate::PathMatching,
) -> Result<(), BuildError> {
    rule_set::check_count(rules.len())?;
    rule_set::RuleSet::compile_with_keys(rules, exempt, path_matching, (0, 0)).map(drop)
}
