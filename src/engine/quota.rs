//! [`Quota`]: how many requests per period, with how much burst.

use std::fmt;
use std::time::Duration;

mod parse;

#[cfg(feature = "serde")]
pub(crate) use parse::parse_duration;
pub use parse::QuotaParseError;

/// The longest period a [`Quota`] accepts: 366 days.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// A rate limit: `count` requests per `period`, with a burst capacity.
///
/// The quota replenishes continuously (GCRA, a virtual-time token bucket): one request's
/// worth of capacity returns every `period / count`. The burst is how many requests may
/// arrive at the same instant after a quiet spell; it defaults to `count`, so
/// `Quota::new(5, 10 s)` admits 5 requests at once, then one more every 2 s.
///
/// Every constructor validates its input and returns a [`QuotaError`] instead of panicking.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::Quota;
///
/// // Clerk's sign-in limit: 5 requests per 10 seconds.
/// let q = Quota::new(5, Duration::from_secs(10))?;
/// assert_eq!(q.emission_interval(), Duration::from_secs(2));
/// assert_eq!(q.burst(), 5);
///
/// // Clerk's Free plan: 20 per 10 s with a burst of 40.
/// let free = Quota::new(20, Duration::from_secs(10))?.with_burst(40)?;
/// assert_eq!(free.burst(), 40);
///
/// assert!(Quota::new(0, Duration::from_secs(1)).is_err());
/// # Ok::<(), tower_throttle::QuotaError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
    interval_ns: u64,
}

/// Why a [`Quota`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// The count was zero: a quota must admit at least one request per period.
    ZeroCount,
    /// The period was zero.
    ZeroPeriod,
    /// The burst was zero: at least one request must be admissible.
    ZeroBurst,
    /// The period was longer than [`MAX_PERIOD`].
    PeriodTooLong,
    /// `period / count` is shorter than one nanosecond.
    IntervalTooShort,
    /// `burst × period / count` is longer than 2^60 ns (about 36 years).
    BurstTooLarge,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaError::ZeroCount => "quota count must be at least 1",
            QuotaError::ZeroPeriod => "quota period must be longer than zero",
            QuotaError::ZeroBurst => "quota burst must be at least 1",
            QuotaError::PeriodTooLong => "quota period must be at most 366 days",
            QuotaError::IntervalTooShort => "quota period / count must be at least 1 ns",
            QuotaError::BurstTooLarge => {
                "quota burst × interval must be at most 2^60 ns (36 years)"
            }
        })
    }
}

impl std::error::Error for QuotaError {}

impl Quota {
    /// `count` requests per `period`, burst = `count`.
    pub fn new(count: u32, period: Duration) -> Result<Quota, QuotaError> {
        if count == 0 {
            return Err(QuotaError::ZeroCount);
        }
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        if period > MAX_PERIOD {
            return Err(QuotaError::PeriodTooLong);
        }
        // MAX_PERIOD in ns fits u64 comfortably (3.2e16 < 1.8e19).
        let interval_ns = (period.as_nanos() / u128::from(count)) as u64;
        if interval_ns == 0 {
            return Err(QuotaError::IntervalTooShort);
        }
        Quota {
            count,
            period,
            burst: count,
            interval_ns,
        }
        .with_burst(count)
    }

    /// `count` requests per second.
    pub fn per_second(count: u32) -> Result<Quota, QuotaError> {
        Quota::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub fn per_minute(count: u32) -> Result<Quota, QuotaError> {
        Quota::new(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    pub fn per_hour(count: u32) -> Result<Quota, QuotaError> {
        Quota::new(count, Duration::from_secs(3600))
    }

    /// Replaces the burst: how many requests may arrive at one instant.
    pub fn with_burst(self, burst: u32) -> Result<Quota, QuotaError> {
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        // The state word's bound (see `engine::state`).
        let total = u128::from(burst) * u128::from(self.interval_ns);
        if total > u128::from(crate::engine::state::MAX_LIMIT_NS) {
            return Err(QuotaError::BurstTooLarge);
        }
        Ok(Quota { burst, ..self })
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period over which `count` requests are allowed.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Requests admissible at one instant.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time for one request's worth of capacity to return: `period / count`
    /// (rounded down to whole nanoseconds).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    pub(crate) fn interval_ns(&self) -> u64 {
        self.interval_ns
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("count", &self.count)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .finish()
    }
}

/// The short form: `count/period`, then ` burst N` when the burst is not the count
/// (`"5/10s"`, `"25/h"`, `"20/10s burst 40"`); [`FromStr`](std::str::FromStr) reads it back.
impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.count)?;
        parse::write_period(f, self.period)?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_input() {
        let s = Duration::from_secs(1);
        assert_eq!(Quota::new(0, s), Err(QuotaError::ZeroCount));
        assert_eq!(Quota::new(1, Duration::ZERO), Err(QuotaError::ZeroPeriod));
        assert_eq!(
            Quota::new(1, s).unwrap().with_burst(0),
            Err(QuotaError::ZeroBurst)
        );
        assert_eq!(
            Quota::new(1, MAX_PERIOD + Duration::from_secs(1)),
            Err(QuotaError::PeriodTooLong)
        );
        assert_eq!(
            Quota::new(2, Duration::from_nanos(1)),
            Err(QuotaError::IntervalTooShort)
        );
        assert_eq!(
            Quota::new(1, MAX_PERIOD).unwrap().with_burst(u32::MAX),
            Err(QuotaError::BurstTooLarge)
        );
    }

    #[test]
    fn milliseconds_to_hours() {
        let ms = Quota::new(10, Duration::from_millis(100)).unwrap();
        assert_eq!(ms.emission_interval(), Duration::from_millis(10));
        let hour = Quota::per_hour(25).unwrap();
        assert_eq!(hour.emission_interval(), Duration::from_secs(144));
        assert_eq!(hour.burst(), 25);
        let third = Quota::new(3, Duration::from_secs(10)).unwrap();
        assert_eq!(
            third.emission_interval(),
            Duration::from_nanos(3_333_333_333)
        );
    }
}
