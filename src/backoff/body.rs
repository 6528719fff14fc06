//! Retry decisions on the response body: [`BackoffLayerBuilder::retry_if_body`], and the
//! two kinds of [`BackoffLayer`]: one that reads only heads ([`HeadOnly`], the default)
//! and one that reads bodies ([`ReadsBody`]), whose responses carry a
//! [`BufferedBody`](crate::BufferedBody).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tower_layer::Layer;

use super::layer::{BackoffLayer, BackoffLayerBuilder, BackoffPolicy};
use super::BackoffError;
use crate::client::{BufferResponse, BufferSettings, Retrying};

/// What a [`retry_if_body`](BackoffLayerBuilder::retry_if_body) predicate decides about
/// a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDecision {
    /// Hand the response to the caller (unless the status or
    /// [`retry_if`](BackoffLayerBuilder::retry_if) asks for a retry).
    Return,
    /// Retry after the schedule's delay (or the response's `Retry-After`, as the
    /// [`hint_mode`](BackoffLayerBuilder::hint_mode) says).
    Retry,
    /// Retry after this delay, read from the body (a `Retry-After`-like field): it takes
    /// the place of a `Retry-After` header, so the hint mode applies to it alike, and it is
    /// capped at one day like a header's.
    RetryAfter(Duration),
}

/// The kind of [`BackoffLayer`] that decides on status and headers only (the default):
/// the response body goes through untouched and unread.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadOnly;

/// The kind of [`BackoffLayer`] that reads response bodies for
/// [`retry_if_body`](BackoffLayerBuilder::retry_if_body).
#[derive(Debug, Clone, Default)]
pub struct ReadsBody {
    settings: Arc<BufferSettings>,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::HeadOnly {}
    impl Sealed for super::ReadsBody {}
}

/// [`HeadOnly`] or [`ReadsBody`]: what a [`BackoffLayer`] reads of a response.
pub trait BodyMode: sealed::Sealed + std::fmt::Debug {
    #[doc(hidden)]
    fn into_reads_body(self) -> ReadsBody;
    #[doc(hidden)]
    fn check(&self) -> Result<(), BackoffError>;
}

impl BodyMode for HeadOnly {
    fn into_reads_body(self) -> ReadsBody {
        ReadsBody::default()
    }

    fn check(&self) -> Result<(), BackoffError> {
        Ok(())
    }
}

impl BodyMode for ReadsBody {
    fn into_reads_body(self) -> ReadsBody {
        self
    }

    fn check(&self) -> Result<(), BackoffError> {
        match self.settings.max_bytes {
            0 => Err(BackoffError::ZeroMaxResponseBytes),
            _ => Ok(()),
        }
    }
}

impl<R: BodyMode> BackoffLayerBuilder<R> {
    /// Also decides on the response **body**: the layer reads each response body whole,
    /// up to [`max_response_bytes`](BackoffLayerBuilder::max_response_bytes) (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`](super::DEFAULT_MAX_RESPONSE_BYTES), 64 KiB), and
    /// asks `decide(status, headers, body)` (e.g. polling a job until its JSON says it is
    /// done). A response is retried when its status is listed, when
    /// [`retry_if`](Self::retry_if) says so, or when `decide` does not return
    /// [`BodyDecision::Return`]; idempotency, the attempt limits and the budget apply as
    /// for any retry.
    ///
    /// The caller receives the same bytes, in a [`BufferedBody`](crate::BufferedBody). A
    /// body over the bound, or one that fails while it is read, is handed on as it came
    /// (the bytes read so far, then the rest or the error: never truncated) and `decide`
    /// is not asked about it: such a response is not retried for its body. Nor is a gRPC
    /// response's body read (gRPC's statuses decide), nor a `text/event-stream` one's
    /// unless [`read_body_when`](BackoffLayerBuilder::read_body_when) says otherwise.
    ///
    /// **Cost** (it is opt-in, and streaming responses must not be read by default):
    /// the caller gets the response when its body has arrived, not at its first byte;
    /// each response in flight holds up to the bound in memory; a body that came in
    /// several chunks is copied once into one buffer. Narrow the responses read with
    /// [`read_body_when`](BackoffLayerBuilder::read_body_when).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_throttle::backoff::{Backoff, BackoffLayer, BodyDecision};
    ///
    /// // Poll until the job's JSON says it is no longer pending.
    /// let layer = BackoffLayer::builder()
    ///     .backoff(Backoff::exponential(Duration::from_secs(5), 1.5)?)
    ///     .statuses([])
    ///     .max_retries(59)
    ///     .budget(None)
    ///     .retry_if_body(|status, _headers, body| {
    ///         let pending = status == 200
    ///             && serde_json::from_slice::<serde_json::Value>(body)
    ///                 .is_ok_and(|job| job["status"] == "PENDING");
    ///         match pending {
    ///             true => BodyDecision::Retry,
    ///             false => BodyDecision::Return,
    ///         }
    ///     })
    ///     .max_response_bytes(16 * 1024)
    ///     .build()?;
    /// # Ok::<(), tower_throttle::backoff::BackoffError>(())
    /// ```
    pub fn retry_if_body<F>(self, decide: F) -> BackoffLayerBuilder<ReadsBody>
    where
        F: Fn(StatusCode, &HeaderMap, &[u8]) -> BodyDecision + Send + Sync + 'static,
    {
        let BackoffLayerBuilder {
            mut settings,
            seed,
            mode,
        } = self;
        settings.retry_if_body = Some(Arc::new(decide));
        BackoffLayerBuilder {
            settings,
            seed,
            mode: mode.into_reads_body(),
        }
    }
}

impl BackoffLayerBuilder<ReadsBody> {
    /// Most bytes of a response body read for [`retry_if_body`](Self::retry_if_body)
    /// (default [`DEFAULT_MAX_RESPONSE_BYTES`](super::DEFAULT_MAX_RESPONSE_BYTES), 64 KiB;
    /// zero fails [`build`](Self::build)). A body declared longer (`Content-Length`) is not
    /// read at all; one that turns out longer is handed on as it came.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.mode.settings).max_bytes = bytes;
        self
    }

    /// Which responses have their body read, by status and headers (default: all but
    /// `text/event-stream`). A gRPC response's body is never read.
    pub fn read_body_when<F>(mut self, read: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.mode.settings).read_when = Some(Arc::new(read));
        self
    }
}

impl<S> Layer<S> for BackoffLayer<ReadsBody> {
    type Service = Retrying<BufferResponse<S>, BackoffPolicy>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = BufferResponse::new(inner, Arc::clone(&self.mode.settings));
        Retrying::new(inner, Arc::clone(&self.policy))
    }
}
