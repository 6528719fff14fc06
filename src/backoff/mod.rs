//! `BackoffLayer`: exponential backoff with jitter, retry classification (HTTP statuses,
//! gRPC status codes), idempotency, a shared retry budget and request-body replay.

mod body;
mod budget;
mod classify;
mod layer;
mod schedule;

pub use crate::client::DEFAULT_MAX_RESPONSE_BYTES;
pub use body::{BodyDecision, BodyMode, HeadOnly, ReadsBody};
pub use budget::{BudgetError, RetryBudget};
pub use classify::DEFAULT_RETRY_STATUSES;
pub use layer::{BackoffLayer, BackoffLayerBuilder, HintMode};
pub use schedule::{Backoff, BackoffError, Jitter, DEFAULT_MAX_DELAY};

/// The service made by [`BackoffLayer`].
pub type BackoffService<S> = crate::client::Retrying<S, layer::BackoffPolicy>;

/// The service made by a body-reading [`BackoffLayer`] (see
/// [`retry_if_body`](BackoffLayerBuilder::retry_if_body)): its responses carry a
/// [`BufferedBody`](crate::BufferedBody).
pub type BodyBackoffService<S> =
    crate::client::Retrying<crate::client::BufferResponse<S>, layer::BackoffPolicy>;
