//! Exponential backoff schedules with jitter.
//!
//! ```text
//! nominal(retry) = min(max_delay, base × factor^retry)     (retry 0 = first retry)
//! ```
//!
//! Jitter is applied on top of the nominal delay; see [`Jitter`] for each kind's range.

use std::fmt;
use std::time::Duration;

use crate::client::{duration_from_nanos, Rng};

/// How a delay is randomised around the nominal schedule. `d` below is
/// [`Backoff::nominal`] for the retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// `d/2` plus uniform in `[0, d/2]`, i.e. within `[d/2, d]`.
    Equal,
    /// AWS "decorrelated jitter": `min(max_delay, uniform in [base, max(base, prev × 3)])`
    /// where `prev` is the previous delay actually used (`base` before the first retry).
    /// Ignores `factor` and the retry number.
    Decorrelated,
    /// `d` plus uniform in `[0, extra]`. The cap applies to `d` only, so the result may
    /// exceed `max_delay` by up to `extra`.
    Additive(Duration),
}

/// Why a [`Backoff`] schedule or a [`BackoffLayer`](super::BackoffLayer) could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackoffError {
    /// The base delay was zero.
    ZeroBase,
    /// The factor was NaN, infinite or below 1.0.
    BadFactor,
    /// The maximum delay was below the base delay.
    MaxBelowBase,
    /// The layer's `max_elapsed` was zero: it would never retry.
    ZeroMaxElapsed,
    /// The layer's `grpc_retry_codes` listed `OK` or a code of
    /// [`NEVER_RETRIED_GRPC_CODES`](crate::NEVER_RETRIED_GRPC_CODES).
    UnretryableGrpcCode(crate::headers::GrpcCode),
    /// The layer's `max_response_bytes` was zero: no body would ever be read.
    ZeroMaxResponseBytes,
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let BackoffError::UnretryableGrpcCode(code) = self {
            return write!(f, "gRPC code {code} is never retried");
        }
        f.write_str(match self {
            BackoffError::ZeroBase => "backoff base delay must be longer than zero",
            BackoffError::BadFactor => "backoff factor must be finite and at least 1.0",
            BackoffError::MaxBelowBase => "backoff max delay must be at least the base delay",
            BackoffError::ZeroMaxElapsed => "backoff max_elapsed must be longer than zero",
            BackoffError::ZeroMaxResponseBytes => "backoff max_response_bytes must be above zero",
            BackoffError::UnretryableGrpcCode(_) => "gRPC code is never retried",
        })
    }
}

impl std::error::Error for BackoffError {}

/// The default cap on the exponential part of a delay: 60 s (raised to `base` when the
/// base is longer).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

/// An exponential backoff schedule: `min(max_delay, base × factor^retry)`, then jitter.
///
/// ```text
/// base 1 s, factor 2:            1 s, 2 s, 4 s, 8 s, …, 60 s, 60 s
/// base 5 s, factor 1.5, max 60 s: 5 s, 7.5 s, 11.25 s, …, 56.953125 s, 60 s
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    base: Duration,
    factor: f64,
    max_delay: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// `base × factor^retry`, capped at [`DEFAULT_MAX_DELAY`] (60 s, or `base` if that is
    /// longer), without jitter.
    ///
    /// Fails when `base` is zero or `factor` is NaN, infinite or below 1.0.
    pub fn exponential(base: Duration, factor: f64) -> Result<Backoff, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if !factor.is_finite() || factor < 1.0 {
            return Err(BackoffError::BadFactor);
        }
        Ok(Backoff {
            base,
            factor,
            max_delay: DEFAULT_MAX_DELAY.max(base),
            jitter: Jitter::None,
        })
    }

    /// Caps the exponential part at `max` ([`Duration::MAX`] means uncapped). Fails when
    /// `max` is below the base.
    pub fn max_delay(self, max: Duration) -> Result<Backoff, BackoffError> {
        if max < self.base {
            return Err(BackoffError::MaxBelowBase);
        }
        Ok(Backoff {
            max_delay: max,
            ..self
        })
    }

    /// Sets the jitter kind.
    pub fn jitter(self, jitter: Jitter) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// The delay before the first retry (before jitter).
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth factor per retry.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The cap on the exponential part.
    pub fn max(&self) -> Duration {
        self.max_delay
    }

    /// The jitter kind.
    pub fn jitter_kind(&self) -> Jitter {
        self.jitter
    }

    /// The un-jittered delay before retry number `retry` (0 = first retry):
    /// `min(max_delay, base × factor^retry)`.
    ///
    /// Computed in `f64` nanoseconds and rounded to the nearest nanosecond (exact whenever
    /// the product is exactly representable, e.g. 5 s × 1.5⁶ = 56.953125 s). Overflow,
    /// infinity and huge retry numbers saturate at `max_delay`; this never panics.
    pub fn nominal(&self, retry: u32) -> Duration {
        if retry == 0 {
            return self.base.min(self.max_delay);
        }
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let scaled = self.base.as_nanos() as f64 * self.factor.powi(exponent);
        let max_nanos = self.max_delay.as_nanos() as f64;
        if scaled.is_nan() || scaled >= max_nanos {
            return self.max_delay;
        }
        // `scaled` is finite and within `[0, max_nanos)`, so the cast cannot misbehave.
        duration_from_nanos(scaled.round() as u128).min(self.max_delay)
    }

    /// The delay before retry number `retry`, with jitter drawn from `rng`.
    ///
    /// `prev` is the previous delay actually used; only [`Jitter::Decorrelated`] reads it
    /// (pass `None` before the first retry). [`Jitter::None`], [`Jitter::Full`] and
    /// [`Jitter::Equal`] never exceed [`nominal`](Self::nominal); [`Jitter::Decorrelated`]
    /// stays within `[base, max_delay]`; [`Jitter::Additive`] adds its extra after the cap,
    /// so it may exceed `max_delay` by at most the extra.
    pub(crate) fn delay(&self, retry: u32, prev: Option<Duration>, rng: &mut Rng) -> Duration {
        let nominal = self.nominal(retry);
        match self.jitter {
            Jitter::None => nominal,
            Jitter::Full => rng.duration_up_to(nominal),
            Jitter::Equal => {
                let half = nominal / 2;
                half.saturating_add(rng.duration_up_to(nominal.saturating_sub(half)))
            }
            Jitter::Decorrelated => {
                let prev = prev.unwrap_or(self.base);
                let upper = prev.saturating_mul(3).max(self.base);
                let spread = rng.duration_up_to(upper.saturating_sub(self.base));
                self.base.saturating_add(spread).min(self.max_delay)
            }
            Jitter::Additive(extra) => nominal.saturating_add(rng.duration_up_to(extra)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn schedule(base: Duration, factor: f64, max: Duration, jitter: Jitter) -> Backoff {
        let b = Backoff::exponential(base, factor).unwrap();
        b.max_delay(max).unwrap().jitter(jitter)
    }

    fn nominals(b: &Backoff, retries: u32) -> Vec<Duration> {
        (0..retries).map(|r| b.nominal(r)).collect()
    }

    #[test]
    fn clerk_schedule() {
        let b = Backoff::exponential(secs(1), 2.0).unwrap();
        assert_eq!(b.max(), DEFAULT_MAX_DELAY);
        assert_eq!(b.jitter_kind(), Jitter::None);
        assert_eq!(nominals(&b, 3), [secs(1), secs(2), secs(4)]);
        let mut rng = Rng::seeded(1);
        assert_eq!(b.delay(2, None, &mut rng), secs(4));
        assert_eq!(b.nominal(6), secs(60));
    }

    #[test]
    fn clay_additive_jitter() {
        let b = schedule(secs(1), 2.0, secs(60), Jitter::Additive(ms(500)));
        let want = [1, 2, 4, 8, 16, 32, 60, 60].map(secs);
        assert_eq!(nominals(&b, 8), want);
        let mut rng = Rng::seeded(99);
        for _ in 0..200 {
            for (retry, &d) in (0u32..).zip(&want) {
                let got = b.delay(retry, None, &mut rng);
                assert!(got >= d && got <= d + ms(500), "{retry}: {got:?}");
            }
        }
        let run = |seed| {
            let mut rng = Rng::seeded(seed);
            (0..8)
                .map(|r| b.delay(r, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn clari_schedule_exact_to_the_nanosecond() {
        let b = schedule(secs(5), 1.5, secs(60), Jitter::None);
        // 5, 7.5, 11.25, 16.875, 25.3125, 37.96875, 56.953125, 60, 60 s, in microseconds.
        let want = [
            5000000, 7500000, 11250000, 16875000, 25312500, 37968750, 56953125, 60000000, 60000000,
        ]
        .map(Duration::from_micros);
        assert_eq!(want[6].as_nanos(), 56_953_125_000);
        assert_eq!(nominals(&b, 9), want);
    }

    #[test]
    fn invalid_parameters() {
        let err = |base, f| Backoff::exponential(base, f).unwrap_err();
        assert_eq!(err(Duration::ZERO, 2.0), BackoffError::ZeroBase);
        for f in [0.5, 0.0, -2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(err(secs(1), f), BackoffError::BadFactor, "{f}");
        }
        let b = Backoff::exponential(secs(2), 2.0).unwrap();
        let below = b.clone().max_delay(secs(1));
        assert_eq!(below, Err(BackoffError::MaxBelowBase));
        assert_eq!(b.max_delay(secs(2)).unwrap().nominal(3), secs(2));
        // A base above the 60 s default raises the default cap to the base.
        let long = Backoff::exponential(secs(120), 2.0).unwrap();
        assert_eq!((long.max(), long.nominal(4)), (secs(120), secs(120)));
        assert!(!BackoffError::BadFactor.to_string().is_empty());
    }

    #[test]
    fn huge_retry_numbers_saturate() {
        let b = Backoff::exponential(secs(1), 2.0).unwrap();
        assert_eq!(b.nominal(u32::MAX), secs(60));
        let uncapped = b.clone().max_delay(Duration::MAX).unwrap();
        assert_eq!(uncapped.nominal(u32::MAX), Duration::MAX);
        assert_eq!(uncapped.nominal(64), Duration::MAX);
        let flat = Backoff::exponential(ms(250), 1.0).unwrap();
        assert_eq!(flat.nominal(u32::MAX), ms(250));
        let biggest = Backoff::exponential(Duration::MAX, 1.0).unwrap();
        assert_eq!(biggest.nominal(u32::MAX), Duration::MAX);
        let mut rng = Rng::seeded(3);
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let j = uncapped.clone().jitter(jitter);
            let _ = j.delay(u32::MAX, Some(Duration::MAX), &mut rng);
        }
        let add = uncapped.jitter(Jitter::Additive(Duration::MAX));
        assert_eq!(add.delay(u32::MAX, None, &mut rng), Duration::MAX);
    }

    #[test]
    fn full_and_equal_bounds() {
        let b = Backoff::exponential(ms(100), 2.0).unwrap();
        let full = b.clone().jitter(Jitter::Full);
        let equal = b.clone().jitter(Jitter::Equal);
        let mut rng = Rng::seeded(11);
        for _ in 0..200 {
            for retry in 0..12 {
                let d = b.nominal(retry);
                assert!(full.delay(retry, None, &mut rng) <= d);
                let e = equal.delay(retry, None, &mut rng);
                assert!(e >= d / 2 && e <= d, "{retry}: {e:?}");
            }
        }
        // Odd nanosecond counts keep Equal within [d/2, d].
        let three = Duration::from_nanos(3);
        let odd = schedule(three, 1.0, three, Jitter::Equal);
        for _ in 0..100 {
            let e = odd.delay(0, None, &mut rng);
            assert!(e >= Duration::from_nanos(1) && e <= three);
        }
    }

    #[test]
    fn decorrelated_bounds() {
        let b = schedule(ms(100), 2.0, secs(10), Jitter::Decorrelated);
        let mut rng = Rng::seeded(5);
        for _ in 0..100 {
            let mut prev = None;
            for retry in 0..20 {
                let upper = prev.unwrap_or(b.base()).saturating_mul(3).min(b.max());
                let d = b.delay(retry, prev, &mut rng);
                assert!(d >= b.base() && d <= upper, "{retry}: {d:?} > {upper:?}");
                prev = Some(d);
            }
        }
        // A previous delay below base/3 still yields at least base.
        assert_eq!(b.delay(0, Some(Duration::ZERO), &mut rng), ms(100));
    }
}
