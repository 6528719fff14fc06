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

    /// Logs the event with `tracing`, at WARN for news and DEBUG for more of the same:
    /// a paced client lives at the edge of its quota (remaining near 0 on almost every
    /// answer), and one WARN per response would bury everything else in its logs.
    ///
    /// - `LowRemaining`: WARN when remaining falls under the threshold (the endpoint's
    ///   previous answer was not low), DEBUG while it stays there.
    /// - `Hit` by a refusal (429, gRPC RESOURCE_EXHAUSTED): WARN for the first refusal of a
    ///   run, DEBUG for refusals that follow one.
    /// - `Hit` by remaining 0 on an admitted answer: WARN when quota runs out (the
    ///   previous answer was not low), DEBUG while it stays out.
    /// - `Malformed`: DEBUG.
    pub(crate) fn trace(&self, before: Before) {
        match self {
            MonitorEvent::LowRemaining {
                endpoint,
                remaining,
                limit,
            } => {
                if before.low {
                    tracing::debug!(endpoint = %endpoint, remaining, limit = ?limit, "rate-limit quota still low");
                } else {
                    tracing::warn!(endpoint = %endpoint, remaining, limit = ?limit, "rate-limit quota is running low");
                }
            }
            MonitorEvent::Hit {
                endpoint,
                status,
                grpc_status,
                remaining,
            } => {
                let refused = is_refusal(*status, *grpc_status);
                let news = if refused {
                    !before.refused
                } else {
                    !before.low
                };
                let (status, grpc_status) = (status.as_u16(), grpc_status.map(GrpcCode::as_u8));
                match (news, refused) {
                    (true, true) => {
                        tracing::warn!(endpoint = %endpoint, status, grpc_status, remaining = ?remaining, "rate limit hit: request refused")
                    }
                    (true, false) => {
                        tracing::warn!(endpoint = %endpoint, status, remaining = ?remaining, "rate-limit quota used up")
                    }
                    (false, true) => {
                        tracing::debug!(endpoint = %endpoint, status, grpc_status, remaining = ?remaining, "rate limit hit again: request refused")
                    }
                    (false, false) => {
                        tracing::debug!(endpoint = %endpoint, status, remaining = ?remaining, "rate-limit quota still used up")
                    }
                }
            }
            MonitorEvent::Malformed { endpoint, count } => tracing::debug!(
                endpoint = %endpoint,
                count,
                "malformed rate-limit header fields ignored"
            ),
        }
    }
}

/// A refusal for the rate limit: `429`, or a gRPC `RESOURCE_EXHAUSTED`.
pub(crate) fn is_refusal(status: StatusCode, grpc: Option<GrpcCode>) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || grpc == Some(GrpcCode::ResourceExhausted)
}

/// What the endpoint's previous answer said, for the level of this answer's log line.
/// An endpoint never seen before (or forgotten) was neither low nor refused.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Before {
    /// Its remaining was low or 0.
    pub(crate) low: bool,
    /// It was a refusal.
    pub(crate) refused: bool,
}
