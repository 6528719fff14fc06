//! [`RetryError`]: why a retrying layer gave up.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use tower_service::Service;

/// `Box<dyn Error + Send + Sync>`, the error type of the retrying layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a retrying layer (`RetryAfterLayer`, `BackoffLayer`) stopped without a usable
/// response. Convert from a [`BoxError`] with `err.downcast_ref::<RetryError>()`.
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

impl std::error::Error for RetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RetryError::Exhausted {
                source: Some(e), ..
            } => Some(e.as_ref()),
            _ => None,
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
    svc.poll_ready(cx).map_err(Into::into)
}
