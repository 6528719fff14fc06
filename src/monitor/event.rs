//! [`Threshold`] and [`MonitorEvent`]: when the monitor speaks up, and what it says.

use http::StatusCode;

use crate::headers::GrpcCode;

/// When remaining quota counts as low.
///
/// The default is `Fraction(0.10)`: warn once fewer than 10% of the limit remain (with a
/// limit of 100, remaining 10 is fine and 9 warns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Low when `remaining < fraction × limit`. Needs a limit in the headers; a response
    /// without one never warns. Must be finite and within `0.0..=1.0` (`0.0` never warns).
    Fraction(f64),
    /// Low when `remaining < n` (`0` never warns).
    Remaining(u64),
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::Fraction(0.10)
    }
}

impl Threshold {
    /// True when `remaining` (out of `limit`, if known) is below this threshold.
    pub fn is_low(&self, remaining: u64, limit: Option<u64>) -> bool {
        match *self {
            // Precision loss above 2^53 is irrelevant for a warning.
            Threshold::Fraction(f) => limit.is_some_and(|l| (remaining as f64) < f * l as f64),
            Threshold::Remaining(n) => remaining < n,
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        match *self {
            Threshold::Fraction(f) => (0.0..=1.0).contains(&f),
            Threshold::Remaining(_) => true,
        }
    }
}

/// Something the monitor noticed in a response. A response yields at most one
/// `Malformed` followed by at most one `Hit` or `LowRemaining`, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// Remaining quota fell below the [`Threshold`] (but not to 0: that is a `Hit`).
    LowRemaining {
        /// The endpoint key.
        endpoint: String,
        /// What the server said remains.
        remaining: u64,
        /// The limit, if the server sent one.
        limit: Option<u64>,
    },
    /// The limit was hit: the status was `429 Too Many Requests`, the headers carried the
    /// gRPC status `RESOURCE_EXHAUSTED` (a trailers-only refusal), or remaining reached 0.
    Hit {
        /// The endpoint key.
        endpoint: String,
        /// The response status (`200` for a gRPC refusal).
        status: StatusCode,
        /// The gRPC status code in the response's headers, if any.
        grpc_status: Option<GrpcCode>,
        /// What the server said remains, if it said.
        remaining: Option<u64>,
    },
    /// Some rate-limit header fields could not be parsed (and were ignored).
    Malformed {
        /// The endpoint key.
        endpoint: String,
        /// How many fields.
        count: u32,
    },
}

impl MonitorEvent {
    /// The endpoint key the event is about.
    pub fn endpoint(&self) -> &str {
        match self {
            MonitorEvent::LowRemaining { endpoint, .. }
            | MonitorEvent::Hit { endpoint, .. }
            | MonitorEvent::Malformed { endpoint, .. } => endpoint,
        }
    }

    /// Logs the event with `tracing`.
    pub(crate) fn trace(&self) {
        match self {
            MonitorEvent::LowRemaining {
                endpoint,
                remaining,
                limit,
            } => tracing::warn!(
                endpoint = %endpoint,
                remaining,
                limit = ?limit,
                "rate-limit quota is running low"
            ),
            MonitorEvent::Hit {
                endpoint,
                status,
                grpc_status,
                remaining,
            } => tracing::warn!(
                endpoint = %endpoint,
                status = status.as_u16(),
                grpc_status = grpc_status.map(GrpcCode::as_u8),
                remaining = ?remaining,
                "rate limit hit"
            ),
            MonitorEvent::Malformed { endpoint, count } => tracing::debug!(
                endpoint = %endpoint,
                count,
                "malformed rate-limit header fields ignored"
            ),
        }
    }
}
