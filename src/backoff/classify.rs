//! Which outcomes a [`BackoffLayer`](super::BackoffLayer) retries, and which requests may
//! be sent twice.

use std::io;

use http::{HeaderMap, Method, StatusCode};

use crate::client::{BoxError, RetryError};

/// `Idempotency-Key`.
pub(crate) const IDEMPOTENCY_KEY: http::HeaderName =
    http::HeaderName::from_static("idempotency-key");

/// Statuses retried by default: 429, 500, 502, 503, 504. Never 501 or another 4xx.
pub const DEFAULT_RETRY_STATUSES: [StatusCode; 5] = [
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

/// Whether a request may be sent again without changing the outcome: an idempotent
/// method (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or an `Idempotency-Key`.
pub(crate) fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// Every error in `e`'s source chain.
fn chain(e: &BoxError) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    let first: &(dyn std::error::Error + 'static) = e.as_ref();
    std::iter::successors(Some(first), |e| e.source())
}

/// Whether an error says the request never reached the server (connection refused, no
/// route, address unavailable): safe to retry for any method.
pub(crate) fn never_sent(e: &BoxError) -> bool {
    chain(e).any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::AddrNotAvailable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
            )
        })
    })
}

/// Whether an error is a timeout (`tokio::time::error::Elapsed`, an `io::Error` of kind
/// `TimedOut`, or any error whose message says "timed out", such as `tower`'s).
pub(crate) fn is_timeout(e: &BoxError) -> bool {
    chain(e).any(|e| {
        e.is::<tokio::time::error::Elapsed>()
            || e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
            || e.to_string().contains("timed out")
    })
}

/// Whether an error is a retrying layer giving up (never retried again by another).
pub(crate) fn is_retry_error(e: &BoxError) -> bool {
    e.is::<RetryError>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency() {
        let none = HeaderMap::new();
        assert!(is_idempotent(&Method::GET, &none));
        assert!(is_idempotent(&Method::PUT, &none));
        assert!(!is_idempotent(&Method::POST, &none));
        assert!(!is_idempotent(&Method::PATCH, &none));
        let mut keyed = HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, "k1".parse().unwrap());
        assert!(is_idempotent(&Method::POST, &keyed));
    }

    #[test]
    fn error_classes() {
        let refused: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(never_sent(&refused) && !is_timeout(&refused));
        let reset: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!never_sent(&reset) && !is_timeout(&reset));
        let timed_out: BoxError = Box::new(io::Error::from(io::ErrorKind::TimedOut));
        assert!(is_timeout(&timed_out));
        let tower_style: BoxError = "request timed out".into();
        assert!(is_timeout(&tower_style));
        // Wrapped: the source chain is searched.
        let wrapped: BoxError = Box::new(RetryError::Exhausted {
            attempts: 1,
            last_status: None,
            hint: None,
            source: Some(refused),
        });
        assert!(never_sent(&wrapped) && is_retry_error(&wrapped));
    }
}
