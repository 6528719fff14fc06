//! [`RetryError`]: why a retrying layer gave up.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use tower_service::Service;

/// `Box<dyn Error + Send + Sync>`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of the client-side services (retrying and pacing): a [`BoxError`] in a
/// concrete type.
///
/// A concrete type, not a bare `BoxError`, because stacking services whose error is
/// `Box<dyn Error>` makes their futures fail rustc's `Send` check inside `async` blocks
/// ("implementation of `From` is not general enough"); with this type, stacks of these
/// layers can be spawned and used in axum handlers. The crate's own failures inside are
/// [`RetryError`] and [`PacingError`](crate::rate_limit::pacing::PacingError): find them with
/// [`downcast_ref`](Self::downcast_ref).
#[derive(Debug)]
pub struct Error {
    inner: BoxError,
}

impl Error {
    /// Wraps an error; a [`BoxError`] that already holds an `Error` is unwrapped.
    pub fn new(error: impl Into<BoxError>) -> Error {
        Error {
            inner: into_box_error(error),
        }
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }

    /// The wrapped error, borrowed.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.inner.as_ref()
    }

    /// The wrapped error as a `T`, if it is one.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// Whether the wrapped error is a `T`.
    pub fn is<T: std::error::Error + 'static>(&self) -> bool {
        self.inner.is::<T>()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl From<RetryError> for Error {
    fn from(e: RetryError) -> Self {
        Error { inner: Box::new(e) }
    }
}

/// Boxes an error, unwrapping this crate's [`Error`] so that the layers' checks (is this a
/// `RetryError`? a connection error?) see the real error.
pub(crate) fn into_box_error(error: impl Into<BoxError>) -> BoxError {
    let boxed: BoxError = error.into();
    match boxed.downcast::<Error>() {
        Ok(ours) => ours.inner,
        Err(other) => other,
    }
}

/// Why a retrying layer (`RetryAfterLayer`, `BackoffLayer`) stopped without a usable
/// response. Convert from a [`BoxError`] with `err.downcast_ref::<RetryError>()`.
///
/// A gRPC call never gets this error when a response is at hand: when a layer gives up
/// on a gRPC call (the request's `content-type` is gRPC's, or the response carries
/// `grpc-status`), the caller receives the last response itself, so that a gRPC client
/// reads the server's own status, message and metadata. A gRPC call gets a `RetryError`
/// only when there is no response to return: an endpoint gate refused to send it
/// ([`WaitTooLong`](Self::WaitTooLong), whose source is then a `tonic::Status` with
/// feature `tonic`), or the last attempt failed (the failure is the source, so that a
/// transport error still reads as `UNAVAILABLE`).
#[derive(Debug)]
#[non_exhaustive]
pub enum RetryError {
    /// Every allowed attempt was made and the last one still asked for a retry.
    Exhausted {
        /// Attempts made, the first included.
        attempts: u32,
        /// Status of the last response (none when the last attempt failed).
        last_status: Option<StatusCode>,
        /// The server's last `Retry-After` (or equivalent) hint.
        hint: Option<Duration>,
        /// The last attempt's error, if it failed.
        source: Option<BoxError>,
    },
    /// The retry budget (shared by all clones of the layer) had no retry left.
    BudgetExhausted {
        /// Attempts made, the first included.
        attempts: u32,
        /// Status of the last response (none when the last attempt failed).
        last_status: Option<StatusCode>,
        /// The last attempt's error, if it failed.
        source: Option<BoxError>,
    },
    /// The server asked to wait longer than the layer's `max_wait`.
    WaitTooLong {
        /// What the server asked for (capped at one day).
        hint: Duration,
        /// The configured maximum.
        max_wait: Duration,
        /// Status of the response that carried the hint, none when a gate blocked a new
        /// request.
        last_status: Option<StatusCode>,
        /// When a gate refused a gRPC call and feature `tonic` is on: a `tonic::Status`
        /// `RESOURCE_EXHAUSTED` whose metadata carry the block left as
        /// `grpc-retry-pushback-ms`; tonic's `Status::from_error` finds it, so the caller
        /// reads that code rather than `UNKNOWN`. Otherwise none.
        source: Option<BoxError>,
    },
}

impl RetryError {
    /// Attempts made before giving up (0 when a gate refused to send).
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::Exhausted { attempts, .. }
            | RetryError::BudgetExhausted { attempts, .. } => *attempts,
            RetryError::WaitTooLong { last_status, .. } => u32::from(last_status.is_some()),
        }
    }

    /// The server's hint, when there was one.
    pub fn hint(&self) -> Option<Duration> {
        match self {
            RetryError::Exhausted { hint, .. } => *hint,
            RetryError::WaitTooLong { hint, .. } => Some(*hint),
            RetryError::BudgetExhausted { .. } => None,
        }
    }

    /// The status of the last response, when there was one.
    pub fn last_status(&self) -> Option<StatusCode> {
        match self {
            RetryError::Exhausted { last_status, .. }
            | RetryError::BudgetExhausted { last_status, .. }
            | RetryError::WaitTooLong { last_status, .. } => *last_status,
        }
    }
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = |s: &Option<StatusCode>| s.map_or("an error".to_owned(), |s| s.to_string());
        match self {
            RetryError::Exhausted {
                attempts,
                last_status,
                ..
            } => write!(
                f,
                "gave up after {attempts} attempts; last: {}",
                status(last_status)
            ),
            RetryError::BudgetExhausted {
                attempts,
                last_status,
                ..
            } => write!(
                f,
                "retry budget exhausted after {attempts} attempts; last: {}",
                status(last_status)
            ),
            RetryError::WaitTooLong { hint, max_wait, .. } => write!(
                f,
                "server asked to wait {hint:?}, longer than max_wait {max_wait:?}"
            ),
        }
    }
}

impl RetryError {
    /// Keeps the last attempt's error as the source of a give-up that has none yet.
    pub(crate) fn caused_by(mut self, error: BoxError) -> RetryError {
        let slot = match &mut self {
            RetryError::Exhausted { source, .. }
            | RetryError::BudgetExhausted { source, .. }
            | RetryError::WaitTooLong { source, .. } => source,
        };
        if slot.is_none() {
            *slot = Some(error);
        }
        self
    }
}

impl std::error::Error for RetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RetryError::Exhausted { source, .. }
            | RetryError::BudgetExhausted { source, .. }
            | RetryError::WaitTooLong { source, .. } => source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
        }
    }
}

/// Polls readiness of a service whose error converts into [`BoxError`].
pub(crate) fn poll_ready_boxed<S, R>(
    svc: &mut S,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Result<(), BoxError>>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    svc.poll_ready(cx).map_err(into_box_error)
}
