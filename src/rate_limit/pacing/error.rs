//! [`PacingError`]: why a paced request was not sent.

use std::fmt;
use std::time::Duration;

use crate::engine::store::StoreError;

/// Why the client-mode rate limiter did not send a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum PacingError {
    /// The request waited `max_queue_wait` without getting its turn.
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The limits would admit the request only after `max_queue_wait` has passed.
    WaitTooLong {
        /// The rule with the longest wait.
        rule: String,
        /// Until the request would be admitted.
        wait: Duration,
    },
    /// A rule with `MissingKey::Reject`, or a usage quota, found no key in the request.
    MissingKey {
        /// The rule (or usage quota).
        rule: String,
        /// What was missing.
        what: &'static str,
    },
    /// A usage quota is used up.
    UsageExhausted {
        /// The usage quota's name.
        usage_quota: String,
        /// Units used over the key's lifetime.
        lifetime_used: u64,
        /// Units left in the current window, when the quota has a window.
        window_remaining: Option<u64>,
        /// Until the window ends, when the window is what is used up.
        window_resets_after: Option<Duration>,
    },
    /// The store failed.
    Store(StoreError),
    /// The request path has no canonical form (see [`crate::rules::path`]).
    BadPath(crate::rules::path::PathError),
}

impl fmt::Display for PacingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacingError::QueueTimeout { waited } => {
                write!(f, "request not sent: waited {waited:?} for its turn")
            }
            PacingError::WaitTooLong { rule, wait } => write!(
                f,
                "request not sent: rule {rule:?} would admit it only in {wait:?}, past max_queue_wait"
            ),
            PacingError::MissingKey { rule, what } => {
                write!(f, "request not sent: rule {rule:?} needs {what}")
            }
            PacingError::UsageExhausted {
                usage_quota,
                lifetime_used,
                ..
            } => write!(
                f,
                "request not sent: usage quota {usage_quota:?} exhausted ({lifetime_used} used)"
            ),
            PacingError::Store(e) => write!(f, "request not sent: rate-limit store failed: {e}"),
            PacingError::BadPath(e) => write!(f, "request not sent: {e}"),
        }
    }
}

impl std::error::Error for PacingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PacingError::Store(e) => Some(e),
            PacingError::BadPath(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PacingError> for crate::client::Error {
    fn from(e: PacingError) -> Self {
        crate::client::Error::new(e)
    }
}
