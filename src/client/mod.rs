//! The client core shared by every client layer ([`RetryAfterLayer`](crate::RetryAfterLayer),
//! [`BackoffLayer`](crate::BackoffLayer), [`HeaderMonitorLayer`](crate::HeaderMonitorLayer)
//! and pacing): the retry loop, the replayable request body, the jitter random source, the
//! endpoint identity, the gRPC classification of responses ([`grpc`]) and the crate's
//! error types.
//!
//! The layers depend on this module and never on each other. Its user-facing items are
//! re-exported at the crate root ([`Error`](crate::Error), [`RetryError`](crate::RetryError),
//! [`BoxError`](crate::BoxError), [`ReplayBody`](crate::ReplayBody),
//! [`RetryContext`](crate::RetryContext), [`Retrying`](crate::Retrying),
//! [`RetryFuture`](crate::RetryFuture)); everything else is internal.

mod buffer;
mod endpoint;
mod error;
pub(crate) mod grpc;
mod replay;
pub(crate) mod retry;
mod rng;
mod stack;
#[cfg(feature = "tonic")]
mod tonic_body;

pub(crate) use buffer::{poll_bytes, BufferSettings, ResponseBytes};
pub use buffer::{BufferResponse, BufferResponseFuture, BufferedBody, DEFAULT_MAX_RESPONSE_BYTES};
pub(crate) use endpoint::Endpoint;
pub(crate) use error::{find_cause, into_box_error, poll_ready_boxed};
pub use error::{BoxError, Error, RetryError};
pub use grpc::{DEFAULT_GRPC_RETRY_CODES, NEVER_RETRIED_GRPC_CODES};
pub(crate) use replay::DEFAULT_MAX_REPLAY_BYTES;
pub use replay::{BodyNotReplayable, ReplayBody};
pub use retry::{RetryContext, RetryFuture, Retrying};
pub(crate) use rng::{duration_from_nanos, Rng};
pub use stack::{ClientInner, ClientService, ClientStack, ClientStackBuilder};
#[cfg(feature = "tonic")]
pub use tonic_body::{TonicBody, TonicBodyLayer};
