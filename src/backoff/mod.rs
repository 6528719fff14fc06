//! `BackoffLayer`: exponential backoff with jitter, retry classification, idempotency,
//! a shared retry budget and request-body replay.

pub mod budget;
pub mod classify;
mod layer;
pub mod replay;
pub mod schedule;

pub use budget::{BudgetError, RetryBudget};
pub use layer::{BackoffLayer, BackoffLayerBuilder, BackoffPolicy, HintMode};
pub use replay::ReplayBody;
pub use schedule::{Backoff, BackoffError, Jitter, Rng};

/// The service made by [`BackoffLayer`].
pub type BackoffService<S> = crate::retry::Retrying<S, BackoffPolicy>;
