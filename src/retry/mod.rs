//! The retry machinery shared by [`RetryAfterLayer`](crate::retry_after::RetryAfterLayer)
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

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode};

pub mod error;
mod future;
mod service;

pub use error::{BoxError, Error, RetryError};
pub use future::RetryFuture;
pub use service::Retrying;

/// The attempt counter shared by stacked retrying layers, carried in request extensions.
#[derive(Debug, Clone)]
pub struct RetryContext {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    retries: AtomicU32,
    deposited: AtomicBool,
    idempotency_key: OnceLock<HeaderValue>,
}

impl RetryContext {
    pub(crate) fn new() -> Self {
        RetryContext {
            inner: Arc::new(ContextInner {
                retries: AtomicU32::new(0),
                deposited: AtomicBool::new(false),
                idempotency_key: OnceLock::new(),
            }),
        }
    }

    /// Retries made so far by every layer sharing this context.
    pub fn retries(&self) -> u32 {
        self.inner.retries.load(Ordering::Acquire)
    }

    /// True exactly once per original request, however many layers and attempts see it
    /// (a retry budget deposits once per request).
    pub fn first_deposit(&self) -> bool {
        !self.inner.deposited.swap(true, Ordering::AcqRel)
    }

    /// The request's idempotency key: made once by `make`, then the same for every attempt
    /// of every stacked layer.
    pub fn idempotency_key(&self, make: impl FnOnce() -> HeaderValue) -> HeaderValue {
        self.inner.idempotency_key.get_or_init(make).clone()
    }

    /// Claims one retry if fewer than `own_max` retries were made by all layers together.
    pub fn try_claim(&self, own_max: u32) -> bool {
        let max = own_max;
        self.inner
            .retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// What a policy sees of an attempt's outcome.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The service answered.
    Response {
        /// The response status.
        status: StatusCode,
        /// The response headers.
        headers: &'a HeaderMap,
    },
    /// The service failed.
    Error(&'a BoxError),
}

impl Outcome<'_> {
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
pub enum Step {
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

/// A retry policy: the part of a retrying layer that decides. Unlike `tower::retry`'s
/// policies, it sees the response's status and headers, so a delay can follow the
/// server's `Retry-After`.
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

    /// After an attempt. A policy that returns [`Step::Retry`] must have claimed the retry
    /// with [`RetryContext::try_claim`].
    fn decide(
        &self,
        head: &http::request::Parts,
        ctx: &RetryContext,
        info: AttemptInfo,
        outcome: &Outcome<'_>,
    ) -> Step;

    /// Most bytes of a request body kept for replay.
    fn max_replay_bytes(&self) -> usize;

    /// Whether [`decide`](Self::decide) reads [`AttemptInfo::elapsed`] (default true);
    /// when false, no attempt reads the clock for it.
    fn reads_elapsed(&self) -> bool {
        true
    }
}

fn outcome_of<B>(result: &Result<Response<B>, BoxError>) -> Outcome<'_> {
    match result {
        Ok(res) => Outcome::Response {
            status: res.status(),
            headers: res.headers(),
        },
        Err(e) => Outcome::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_shared_by_clones() {
        let ctx = RetryContext::new();
        let other = ctx.clone();
        assert!(ctx.first_deposit());
        assert!(!other.first_deposit());
        let key = ctx.idempotency_key(|| HeaderValue::from_static("k1"));
        assert_eq!(
            other.idempotency_key(|| HeaderValue::from_static("k2")),
            key
        );
        // Each layer retries while the shared total is below its own maximum.
        assert!(ctx.try_claim(2) && other.try_claim(5));
        assert!(
            !ctx.try_claim(2),
            "2 retries made: the layer allowing 2 stops"
        );
        assert!(other.try_claim(5) && other.try_claim(5) && other.try_claim(5));
        assert!(!other.try_claim(5));
        assert_eq!(ctx.retries(), 5);
    }
}
