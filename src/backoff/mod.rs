//! `BackoffLayer`: exponential backoff with jitter, retry classification (HTTP statuses,
//! gRPC status codes), idempotency, a shared retry budget and request-body replay.

mod budget;
mod classify;
mod layer;
mod schedule;

pub use budget::{BudgetError, RetryBudget};
pub use classify::DEFAULT_RETRY_STATUSES;
pub use layer::{BackoffLayer, BackoffLayerBuilder, HintMode};
pub use schedule::{Backoff, BackoffError, Jitter, DEFAULT_MAX_DELAY};

/// The service made by [`BackoffLayer`].
pub type BackoffService<S> = crate::client::Retrying<S, layer::BackoffPolicy>;
