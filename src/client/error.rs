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
/// [`RetryError`] and [`PacingError`](crate::rate_limit::pacing::PacingError): reach them in
/// one call with [`retry_error`](Self::retry_error) and
/// [`pacing_error`](Self::pacing_error). After `?` has turned this error into a
/// `Box<dyn Error>`, [`RetryError::find`] and
/// [`PacingError::find`](crate::rate_limit::pacing::PacingError::find) look through the box
/// (and through any error chain) instead of a double downcast:
///
/// ```
/// use tower_throttle::{Error, RetryError};
///
/// let err = Error::from(RetryError::BudgetExhausted {
///     attempts: 2,
///     last_status: Some(http::StatusCode::TOO_MANY_REQUESTS),
///     source: None,
/// });
/// assert_eq!(err.retry_error().map(RetryError::attempts), Some(2));
///
/// // What an application's `?` made of it:
/// let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
/// let cause = RetryError::find(&*boxed).expect("a give-up");
/// assert_eq!(cause.last_status(), Some(http::StatusCode::TOO_MANY_REQUESTS));
/// assert_eq!(
///     boxed.to_string(),
///     "retry budget exhausted after 2 attempts; last: 429 Too Many Requests"
/// );
/// ```
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

    /// The retrying layers' give-up, when this error is one (also when it is further down
    /// the error's source chain).
    pub fn retry_error(&self) -> Option<&RetryError> {
        find_cause(self.get_ref())
    }
}

/// The first `T` in `err`'s source chain, `err` included, looking inside this crate's
/// [`Error`] wherever the chain holds one. Bounded: a chain longer than 64 links (a cycle
/// a hostile `source` implementation could build) is not followed further.
pub(crate) fn find_cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(err);
    for _ in 0..64 {
        let e = next?;
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = match e.downcast_ref::<Error>() {
            // `Error::source` skips the wrapped error itself: look at it first.
            Some(ours) => Some(ours.get_ref() as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
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
    /// The first `RetryError` in `err`'s source chain, `err` included, also inside this
    /// crate's [`Error`]: one call from the `Box<dyn Error>` an application's `?` made of
    /// the client stack's error to the typed give-up.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a RetryError> {
        find_cause(err)
    }

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
        match self {
            RetryError::Exhausted {
                attempts,
                last_status,
                source,
                ..
            } => {
                write!(f, "gave up after {attempts} attempts; ")?;
                write_last(f, *last_status, source.as_deref())
            }
            RetryError::BudgetExhausted {
                attempts,
                last_status,
                source,
            } => {
                write!(f, "retry budget exhausted after {attempts} attempts; ")?;
                write_last(f, *last_status, source.as_deref())
            }
            RetryError::WaitTooLong { hint, max_wait, .. } => write!(
                f,
                "server asked to wait {hint:?}, longer than max_wait {max_wait:?}"
            ),
        }
    }
}

/// What the last attempt got: its status, else its error's own text.
fn write_last(
    f: &mut fmt::Formatter<'_>,
    status: Option<StatusCode>,
    error: Option<&(dyn std::error::Error + Send + Sync)>,
) -> fmt::Result {
    match (status, error) {
        (Some(status), _) => write!(f, "last: {status}"),
        (None, Some(error)) => write!(f, "last attempt failed: {error}"),
        (None, None) => f.write_str("last attempt failed"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exhausted(source: Option<BoxError>) -> RetryError {
        RetryError::Exhausted {
            attempts: 4,
            last_status: None,
            hint: None,
            source,
        }
    }

    #[test]
    fn give_up_names_the_last_status_or_the_last_error() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            exhausted(Some(Box::new(refused))).to_string(),
            "gave up after 4 attempts; last attempt failed: refused"
        );
        assert_eq!(
            exhausted(None).to_string(),
            "gave up after 4 attempts; last attempt failed"
        );
        let limited = RetryError::Exhausted {
            attempts: 4,
            last_status: Some(StatusCode::TOO_MANY_REQUESTS),
            hint: None,
            source: None,
        };
        assert_eq!(
            limited.to_string(),
            "gave up after 4 attempts; last: 429 Too Many Requests"
        );
    }

    /// An error wrapping another, as an application's own error type would.
    #[derive(Debug)]
    struct Wrapper(BoxError);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("calling the API")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn find_looks_through_boxes_wrappers_and_our_error() {
        let ours = Error::from(exhausted(None));
        assert_eq!(ours.retry_error().map(RetryError::attempts), Some(4));
        let boxed: BoxError = Box::new(Error::from(exhausted(None)));
        assert_eq!(RetryError::find(&*boxed).map(RetryError::attempts), Some(4));
        let wrapped = Wrapper(Box::new(Error::from(exhausted(None))));
        assert_eq!(
            RetryError::find(&wrapped).map(RetryError::attempts),
            Some(4)
        );
        let other: BoxError = Box::new(std::io::Error::other("no"));
        assert!(RetryError::find(&*other).is_none());
        assert!(Error::new(other).retry_error().is_none());
    }

    /// A hostile `source` that returns itself forever.
    #[derive(Debug)]
    struct Cycle;

    impl fmt::Display for Cycle {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cycle")
        }
    }

    impl std::error::Error for Cycle {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn a_cyclic_chain_ends_the_search() {
        assert!(RetryError::find(&Cycle).is_none());
    }
}
