//! The server's limit as adaptive pacing learns it from rate-limit headers: a local copy of
//! the server's bucket (GCRA: one send every `interval`, bursts of up to `limit`), set from
//! the first response that states the limit and corrected by every later one.
//!
//! **Where the figures come from** (the headline of [`RateLimitInfo`], the most restrictive
//! dimension):
//! - `RateLimit-Policy` (or a `X-RateLimit-Limit` item) with a window `w` for quota `q`:
//!   `interval = w / q`.
//! - `X-RateLimit-Limit` + `X-RateLimit-Reset` without a window: `interval = reset /
//!   (limit - remaining)`, exact for a GCRA or sliding limit (the reset is the time until
//!   the quota is whole again) and slower than needed for a fixed window (safe).
//!
//! **Corrections never send more than the server said:** a response saying `remaining`
//! moves the local bucket to at most that many sends now (requests sent since are already
//! counted locally, so the local state is kept when it is stricter).

use std::time::Duration;

use tokio::time::Instant;

use crate::headers::ratelimit::RateLimitInfo;

/// What one response says about the server's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stated {
    /// The quota (requests in a burst).
    pub(crate) limit: u64,
    /// Requests left after the one answered.
    pub(crate) remaining: u64,
    /// The time the server takes to earn back one request.
    pub(crate) interval: Duration,
}

impl Stated {
    /// The headline limit of `info`, when it carries enough to learn the rate from.
    pub(crate) fn of(info: &RateLimitInfo) -> Option<Stated> {
        let (limit, remaining) = (info.limit?, info.remaining?);
        if limit == 0 {
            return None;
        }
        let remaining = remaining.min(limit);
        let window = info
            .policies
            .iter()
            .find(|p| p.quota == limit && p.window.is_some_and(|w| !w.is_zero()))
            .and_then(|p| p.window);
        let interval = match (window, info.reset_after) {
            (Some(w), _) => w / u32::try_from(limit).unwrap_or(u32::MAX),
            (None, Some(reset)) if remaining < limit && !reset.is_zero() => {
                reset / u32::try_from(limit - remaining).unwrap_or(u32::MAX)
            }
            _ => return None,
        };
        (!interval.is_zero()).then_some(Stated {
            limit,
            remaining,
            interval,
        })
    }
}

/// The local copy of the server's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Learned {
    interval: Duration,
    /// How far the theoretical arrival time may run ahead of now: `(limit - 1) * interval`.
    tolerance: Duration,
    /// The theoretical arrival time of the next send.
    tat: Instant,
}

impl Learned {
    /// The bucket as `stated` at `now`.
    pub(crate) fn new(now: Instant, stated: Stated) -> Learned {
        let mut learned = Learned {
            interval: stated.interval,
            tolerance: Duration::ZERO,
            tat: now,
        };
        learned.correct(now, stated);
        learned
    }

    /// A later response: the limit as stated, at most `remaining` sends from now.
    pub(crate) fn correct(&mut self, now: Instant, stated: Stated) {
        self.interval = stated.interval;
        self.tolerance = times(stated.interval, stated.limit - 1);
        self.tat = self
            .tat
            .max(now + times(stated.interval, stated.limit - stated.remaining));
    }

    /// A refusal: nothing before `now + hold` (the server's delay, else one interval).
    pub(crate) fn refused(&mut self, now: Instant, hold: Option<Duration>) {
        let at = now + hold.unwrap_or(self.interval);
        self.tat = self.tat.max(at + self.tolerance);
    }

    /// Reserves the next send: when it may go.
    pub(crate) fn reserve(&mut self, now: Instant) -> Instant {
        let slot = now.max(self.tat.checked_sub(self.tolerance).unwrap_or(now));
        self.tat = self.tat.max(slot) + self.interval;
        slot
    }

    /// The learned rate, in requests per second.
    pub(crate) fn per_second(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }
}

/// `d * n`, saturating at about 36 years (a bucket never needs more).
fn times(d: Duration, n: u64) -> Duration {
    d.checked_mul(u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(Duration::from_secs(1 << 30))
        .min(Duration::from_secs(1 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::ratelimit::parse_rate_limit;
    use http::HeaderMap;
    use std::time::SystemTime;

    fn stated(fields: &[(&'static str, &'static str)]) -> Option<Stated> {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        Stated::of(&parse_rate_limit(&h, SystemTime::now()))
    }

    #[test]
    fn the_rate_is_read_from_the_policy_or_the_legacy_reset() {
        let ms = Duration::from_millis;
        let ietf = stated(&[
            ("ratelimit-policy", "\"api\";q=100;w=10"),
            ("ratelimit", "\"api\";r=99;t=1"),
        ]);
        assert_eq!(
            ietf,
            Some(Stated {
                limit: 100,
                remaining: 99,
                interval: ms(100)
            })
        );
        let legacy = stated(&[
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-remaining", "90"),
            ("x-ratelimit-reset", "1"),
        ]);
        assert_eq!(legacy.map(|s| s.interval), Some(ms(100)));
        // Nothing to learn from: no limit, a full quota without a window, a zero limit.
        assert_eq!(stated(&[("x-ratelimit-remaining", "5")]), None);
        assert_eq!(
            stated(&[
                ("x-ratelimit-limit", "100"),
                ("x-ratelimit-remaining", "100"),
                ("x-ratelimit-reset", "10"),
            ]),
            None
        );
        assert_eq!(
            stated(&[
                ("x-ratelimit-limit", "0"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "10"),
            ]),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_burst_left_goes_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Learned::new(
            t0,
            Stated {
                limit: 100,
                remaining: 3,
                interval: ms(100),
            },
        );
        assert_eq!(b.per_second(), 10.0);
        let slots: Vec<_> = (0..5).map(|_| b.reserve(t0) - t0).collect();
        assert_eq!(slots, [ms(0), ms(0), ms(0), ms(100), ms(200)]);
        // A stale answer (it says 3 left, 5 were sent since) changes nothing.
        let before = b;
        b.correct(
            t0,
            Stated {
                limit: 100,
                remaining: 3,
                interval: ms(100),
            },
        );
        assert_eq!(b, before);
        // A refusal with a delay of 2 s: the next send 2 s from now.
        b.refused(t0, Some(Duration::from_secs(2)));
        assert_eq!(b.reserve(t0) - t0, ms(2000));
        assert_eq!(b.reserve(t0) - t0, ms(2100));
    }
}
