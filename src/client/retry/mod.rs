//! The retry loop shared by [`RetryAfterLayer`](crate::retry_after::RetryAfterLayer)
//! and [`BackoffLayer`](crate::backoff::BackoffLayer): one future that sends a request,
//! asks a policy what to do with the outcome (the policy sees the response, so it can
//! honor `Retry-After`), waits, and sends the replayed request again.
//!
//! **Stacking never multiplies attempts.** The outermost retrying layer puts a shared
//! attempt counter ([`RetryContext`]) in the request's extensions; an inner retrying layer
//! finds it and counts its retries against the same total. Each layer retries only while
//! the total is below its own maximum, so the total never exceeds the largest maximum in
//! the stack (never their product), and backoff schedules continue where the other layer
//! left them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use super::{BoxError, ResponseBytes, RetryError};

mod context;
mod future;
mod service;

pub use context::RetryContext;
pub use future::RetryFuture;
pub use service::Retrying;

/// What a policy sees of an attempt's outcome.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The service answered.
    Response {
        /// The response status.
        status: StatusCode,
        /// The response headers.
        headers: &'a HeaderMap,
        /// The response body, when a [`BufferResponse`](crate::BufferResponse) under the
        /// layer read it whole (within its bound).
        body: Option<&'a Bytes>,
    },
    /// The service failed.
    Error(&'a BoxError),
}

impl Outcome<'_> {
    /// Why an attempt with this outcome is retried, for logs and metrics: `"error"` (the
    /// service failed: connection, timeout), `"pushback"` (a gRPC `grpc-retry-pushback-ms`
    /// asked for it) or `"status"` (the response's status or gRPC status).
    pub(crate) fn retry_reason(&self) -> &'static str {
        match self {
            Outcome::Error(_) => "error",
            Outcome::Response { headers, .. } => match crate::headers::grpc_pushback(headers) {
                crate::headers::GrpcPushback::After(_) => "pushback",
                _ => "status",
            },
        }
    }

    /// The status, when the service answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Outcome::Response { status, .. } => Some(*status),
            Outcome::Error(_) => None,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug)]
pub enum Verdict {
    /// Hand the outcome to the caller.
    Return,
    /// Send the request again after this delay.
    Retry(Duration),
    /// Stop: every allowed attempt was made ([`RetryError::Exhausted`], carrying the last
    /// attempt's error as its source).
    GiveUp {
        /// The server's last hint.
        hint: Option<Duration>,
    },
    /// Stop with this error.
    Fail(RetryError),
}

/// Where a request's attempts stand.
#[derive(Debug, Clone, Copy)]
pub struct AttemptInfo {
    /// Attempts made so far (1 after the first).
    pub attempts: u32,
    /// Time since the first attempt was sent (zero when the policy's
    /// [`reads_elapsed`](Policy::reads_elapsed) is false: the clock is not read then).
    pub elapsed: Duration,
    /// The previous retry delay, if any.
    pub prev_delay: Option<Duration>,
    /// Whether the request body can still be sent again.
    pub replayable: bool,
}

/// A retry policy: the part of a retrying layer that decides. Like `tower::retry`'s
/// `Policy::retry`, it sees each attempt's result (status and headers), so a delay can
/// follow the server's `Retry-After`; unlike it, the request body is replayed without
/// `Clone` (see [`ReplayBody`](crate::ReplayBody)) and stacked layers share one attempt
/// count and one elapsed time (the [`RetryContext`]).
pub trait Policy: Send + Sync + 'static {
    /// Before a request is first sent through this layer: adjust its head (e.g. add an
    /// idempotency key). With stacked layers this runs for every attempt of an outer
    /// layer; `ctx` is shared by all of them.
    fn prepare(&self, head: &mut http::request::Parts, ctx: &RetryContext) {
        let _ = (head, ctx);
    }

    /// Before a new request is first sent: how long to wait (an endpoint gate), or fail.
    /// By default it goes at once.
    fn admit(&self, head: &http::request::Parts) -> Result<Option<Duration>, RetryError> {
        let _ = head;
        Ok(None)
    }

    /// After an attempt. A policy that returns [`Verdict::Retry`] must have claimed the retry
    /// with [`RetryContext::try_claim`].
    fn decide(
        &self,
        head: &http::request::Parts,
        ctx: &RetryContext,
        info: AttemptInfo,
        outcome: &Outcome<'_>,
    ) -> Verdict;

    /// Most bytes of a request body kept for replay.
    fn max_replay_bytes(&self) -> usize;

    /// Whether [`decide`](Self::decide) reads [`AttemptInfo::elapsed`] (default true);
    /// when false, no attempt reads the clock for it.
    fn reads_elapsed(&self) -> bool {
        true
    }
}

pub(crate) fn outcome_of<B>(result: &Result<Response<B>, BoxError>) -> Outcome<'_> {
    match result {
        Ok(res) => Outcome::Response {
            status: res.status(),
            headers: res.headers(),
            body: res.extensions().get::<ResponseBytes>().map(|b| &b.0),
        },
        Err(e) => Outcome::Error(e),
    }
}
