//! [`PacingError`]: why a paced request was not sent, and the gRPC status a gRPC caller
//! reads for it.

use std::fmt;
use std::time::Duration;

use crate::client::grpc::local_status;
use crate::client::{find_cause, BoxError};
use crate::engine::store::StoreError;
use crate::headers::GrpcCode;

/// Why the client-mode rate limiter did not send a request.
///
/// **gRPC calls.** The last field of each variant (`source`) is the status a gRPC caller
/// reads: when the request is a gRPC call (its `content-type` is gRPC's, see
/// [`is_grpc`](crate::headers::is_grpc)) and feature `tonic` is on, it holds a
/// `tonic::Status` of code [`grpc_code`](Self::grpc_code), with this error's message and,
/// when a wait is known ([`retry_pushback`](Self::retry_pushback)), that wait as
/// `grpc-retry-pushback-ms` metadata; it is then the error's
/// [`source`](std::error::Error::source), which tonic's `Status::from_error` finds, so a
/// tonic client gets that code rather than `UNKNOWN`. Otherwise it is `None`.
#[derive(Debug)]
#[non_exhaustive]
pub enum PacingError {
    /// The request waited `max_queue_wait` without getting its turn.
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
        /// The gRPC status of a gRPC call (see the type's docs).
        source: Option<BoxError>,
    },
    /// The limits would admit the request only after `max_queue_wait` has passed.
    WaitTooLong {
        /// The rule with the longest wait.
        rule: String,
        /// Until the request would be admitted.
        wait: Duration,
        /// The gRPC status of a gRPC call (see the type's docs).
        source: Option<BoxError>,
    },
    /// A rule with `MissingKey::Reject`, or a usage quota, found no key in the request.
    MissingKey {
        /// The rule (or usage quota).
        rule: String,
        /// What was missing.
        what: &'static str,
        /// The gRPC status of a gRPC call (see the type's docs).
        source: Option<BoxError>,
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
        /// The gRPC status of a gRPC call (see the type's docs).
        source: Option<BoxError>,
    },
    /// The store failed. The second field is the gRPC status of a gRPC call (see the
    /// type's docs); when it is `None`, the error's source is the [`StoreError`].
    Store(StoreError, Option<BoxError>),
    /// The request path has no canonical form (see [`crate::rules::path`]). The second
    /// field is the gRPC status of a gRPC call (see the type's docs); when it is `None`,
    /// the error's source is the path error.
    BadPath(crate::rules::path::PathError, Option<BoxError>),
}

impl PacingError {
    /// The gRPC status code a gRPC call fails with (whatever the features: any gRPC
    /// client library can map the error with it):
    ///
    /// | error | code |
    /// | --- | --- |
    /// | `QueueTimeout`, `WaitTooLong`, `UsageExhausted` | `RESOURCE_EXHAUSTED` |
    /// | `MissingKey` | `INVALID_ARGUMENT` |
    /// | `Store` | `UNAVAILABLE` |
    /// | `BadPath` | `INVALID_ARGUMENT` |
    ///
    /// A missing key is the call's own defect (it lacks the metadata the client's rules
    /// key on), which no retry mends: `INVALID_ARGUMENT`, never retried by gRPC retry
    /// policies. Not `UNAUTHENTICATED`: no server judged any credentials, and the key may
    /// be anything but a credential (a tenant, a webhook id); a caller that refreshes
    /// tokens on `UNAUTHENTICATED` would refresh in vain. Not `FAILED_PRECONDITION`
    /// either: no state of the system changes the answer for this call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_throttle::headers::GrpcCode;
    /// use tower_throttle::pacing::PacingError;
    ///
    /// let err = PacingError::WaitTooLong {
    ///     rule: "per_key".into(),
    ///     wait: Duration::from_millis(2500),
    ///     source: None,
    /// };
    /// assert_eq!(err.grpc_code(), GrpcCode::ResourceExhausted);
    /// assert_eq!(err.retry_pushback(), Some(Duration::from_millis(2500)));
    /// ```
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            PacingError::QueueTimeout { .. }
            | PacingError::WaitTooLong { .. }
            | PacingError::UsageExhausted { .. } => GrpcCode::ResourceExhausted,
            PacingError::MissingKey { .. } | PacingError::BadPath(..) => GrpcCode::InvalidArgument,
            PacingError::Store(..) => GrpcCode::Unavailable,
        }
    }

    /// The wait after which the same call could be sent, when one is known: a
    /// `WaitTooLong`'s `wait`, and a used-up window's `window_resets_after`. A gRPC call's
    /// status carries it as `grpc-retry-pushback-ms`. `None` for every other error (a queue
    /// timeout knows no wait; a used-up lifetime never resets).
    pub fn retry_pushback(&self) -> Option<Duration> {
        match self {
            PacingError::WaitTooLong { wait, .. } => Some(*wait),
            PacingError::UsageExhausted {
                window_resets_after,
                ..
            } => *window_resets_after,
            _ => None,
        }
    }

    /// This error of a gRPC call: with feature `tonic`, its status slot holds the
    /// `tonic::Status` a tonic caller reads (see the type's docs); without, it is
    /// unchanged.
    pub(crate) fn for_grpc_call(mut self) -> PacingError {
        let status = local_status(self.grpc_code(), &self, self.retry_pushback());
        *self.status_slot() = status;
        self
    }

    fn status_slot(&mut self) -> &mut Option<BoxError> {
        match self {
            PacingError::QueueTimeout { source, .. }
            | PacingError::WaitTooLong { source, .. }
            | PacingError::MissingKey { source, .. }
            | PacingError::UsageExhausted { source, .. }
            | PacingError::Store(_, source)
            | PacingError::BadPath(_, source) => source,
        }
    }
}

impl fmt::Display for PacingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacingError::QueueTimeout { waited, .. } => {
                write!(f, "request not sent: waited {waited:?} for its turn")
            }
            PacingError::WaitTooLong { rule, wait, .. } => write!(
                f,
                "request not sent: rule {rule:?} would admit it only in {wait:?}, past max_queue_wait"
            ),
            PacingError::MissingKey { rule, what, .. } => {
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
            PacingError::Store(e, _) => {
                write!(f, "request not sent: rate-limit store failed: {e}")
            }
            PacingError::BadPath(e, _) => write!(f, "request not sent: {e}"),
        }
    }
}

impl std::error::Error for PacingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PacingError::Store(e, None) => Some(e),
            PacingError::BadPath(e, None) => Some(e),
            PacingError::QueueTimeout { source, .. }
            | PacingError::WaitTooLong { source, .. }
            | PacingError::MissingKey { source, .. }
            | PacingError::UsageExhausted { source, .. }
            | PacingError::Store(_, source)
            | PacingError::BadPath(_, source) => source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
        }
    }
}

impl From<PacingError> for crate::client::Error {
    fn from(e: PacingError) -> Self {
        crate::client::Error::new(e)
    }
}

impl PacingError {
    /// The first `PacingError` in `err`'s source chain, `err` included, also inside this
    /// crate's [`Error`](crate::Error): one call from the `Box<dyn Error>` an
    /// application's `?` made of the client stack's error to the typed refusal.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a PacingError> {
        find_cause(err)
    }
}

impl crate::Error {
    /// The pacing layer's refusal, when this error is one (also when it is further down
    /// the error's source chain).
    pub fn pacing_error(&self) -> Option<&PacingError> {
        find_cause(self.get_ref())
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::rules::path::canonicalize;

    fn errors() -> Vec<PacingError> {
        let bad_path = canonicalize("/a/../b").unwrap_err();
        vec![
            PacingError::QueueTimeout {
                waited: Duration::from_secs(3),
                source: None,
            },
            PacingError::WaitTooLong {
                rule: "per_key".into(),
                wait: Duration::from_micros(2_500_001),
                source: None,
            },
            PacingError::MissingKey {
                rule: "per_key".into(),
                what: "header",
                source: None,
            },
            PacingError::UsageExhausted {
                usage_quota: "daily".into(),
                lifetime_used: 7,
                window_remaining: Some(0),
                window_resets_after: Some(Duration::from_secs(60)),
                source: None,
            },
            PacingError::UsageExhausted {
                usage_quota: "lifetime".into(),
                lifetime_used: 9,
                window_remaining: None,
                window_resets_after: None,
                source: None,
            },
            PacingError::Store(StoreError::new("connection refused"), None),
            PacingError::BadPath(bad_path, None),
        ]
    }

    #[test]
    fn codes_and_pushbacks() {
        let got: Vec<_> = errors()
            .iter()
            .map(|e| (e.grpc_code(), e.retry_pushback()))
            .collect();
        assert_eq!(
            got,
            [
                (GrpcCode::ResourceExhausted, None),
                (
                    GrpcCode::ResourceExhausted,
                    Some(Duration::from_micros(2_500_001))
                ),
                (GrpcCode::InvalidArgument, None),
                (GrpcCode::ResourceExhausted, Some(Duration::from_secs(60))),
                (GrpcCode::ResourceExhausted, None),
                (GrpcCode::Unavailable, None),
                (GrpcCode::InvalidArgument, None),
            ]
        );
    }

    #[test]
    fn an_http_call_keeps_its_sources() {
        let [.., store, bad_path] = <[PacingError; 7]>::try_from(errors()).unwrap();
        assert!(store.source().unwrap().is::<StoreError>());
        assert!(bad_path
            .source()
            .unwrap()
            .is::<crate::rules::path::PathError>());
        for e in errors().into_iter().take(5) {
            assert!(e.source().is_none(), "{e:?}");
        }
    }

    #[cfg(not(feature = "tonic"))]
    #[test]
    fn without_tonic_a_grpc_call_changes_nothing() {
        for e in errors() {
            let before = format!("{e:?}");
            assert_eq!(format!("{:?}", e.for_grpc_call()), before);
        }
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn with_tonic_a_grpc_call_carries_its_status() {
        use tonic::Code;
        let want = [
            (Code::ResourceExhausted, None),
            (Code::ResourceExhausted, Some("2501")),
            (Code::InvalidArgument, None),
            (Code::ResourceExhausted, Some("60000")),
            (Code::ResourceExhausted, None),
            (Code::Unavailable, None),
            (Code::InvalidArgument, None),
        ];
        for (e, (code, pushback)) in errors().into_iter().zip(want) {
            let message = e.to_string();
            let e = e.for_grpc_call();
            let status = e
                .source()
                .and_then(|s| s.downcast_ref::<tonic::Status>())
                .unwrap_or_else(|| panic!("no status in {e:?}"));
            assert_eq!((status.code(), status.message()), (code, &*message));
            let got = status.metadata().get("grpc-retry-pushback-ms");
            assert_eq!(got.map(|v| v.to_str().unwrap()), pushback, "{e:?}");
            // As tonic reads our client error: the status, not UNKNOWN.
            let read = tonic::Status::from_error(Box::new(crate::client::Error::from(e)));
            assert_eq!((read.code(), read.message()), (code, &*message));
        }
    }

    #[test]
    fn pacing_error_is_one_call_away_before_and_after_boxing() {
        let err = crate::Error::from(PacingError::QueueTimeout {
            waited: Duration::from_secs(3),
            source: None,
        });
        assert!(matches!(
            err.pacing_error(),
            Some(PacingError::QueueTimeout { waited, .. }) if *waited == Duration::from_secs(3)
        ));
        assert!(err.retry_error().is_none());
        let boxed: BoxError = Box::new(err);
        assert!(matches!(
            PacingError::find(&*boxed),
            Some(PacingError::QueueTimeout { .. })
        ));
    }
}
