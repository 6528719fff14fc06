//! Writing rate-limit headers on responses (server side).

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use sfv::{Integer, KeyRef, ListSerializer, StringRef};

use super::{
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use crate::quota::Quota;

/// Which header dialects a layer writes. `Retry-After` is always written on 429.
///
/// ```
/// use tower_throttle::headers::HeaderDialects;
/// let only_ietf = HeaderDialects::ALL.legacy(false);
/// assert_eq!(only_ietf, HeaderDialects::IETF);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderDialects {
    legacy: bool,
    ietf: bool,
}

impl HeaderDialects {
    /// No rate-limit headers (only `Retry-After` on refusals).
    pub const NONE: HeaderDialects = HeaderDialects {
        legacy: false,
        ietf: false,
    };
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    pub const LEGACY: HeaderDialects = HeaderDialects {
        legacy: true,
        ietf: false,
    };
    /// IETF draft-11 `RateLimit-Policy` and `RateLimit`.
    pub const IETF: HeaderDialects = HeaderDialects {
        legacy: false,
        ietf: true,
    };
    /// Both dialects (the default).
    pub const ALL: HeaderDialects = HeaderDialects {
        legacy: true,
        ietf: true,
    };

    /// Turns the legacy dialect on or off.
    pub fn legacy(self, on: bool) -> Self {
        HeaderDialects { legacy: on, ..self }
    }

    /// Turns the IETF dialect on or off.
    pub fn ietf(self, on: bool) -> Self {
        HeaderDialects { ietf: on, ..self }
    }
}

impl Default for HeaderDialects {
    fn default() -> Self {
        Self::ALL
    }
}

/// Whole seconds in `d`, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A `Retry-After` value for a wait: whole seconds rounded up, at least 1, so a client
/// that honors it never comes back before it would be admitted.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::headers::retry_after_value;
/// assert_eq!(retry_after_value(Duration::from_millis(1)), "1");
/// assert_eq!(retry_after_value(Duration::from_millis(2001)), "3");
/// ```
pub fn retry_after_value(wait: Duration) -> HeaderValue {
    HeaderValue::from(ceil_secs(wait).max(1))
}

/// The state of one limit to report.
#[derive(Debug, Clone, Copy)]
pub struct LimitSnapshot<'a> {
    /// Policy name (the rule's name), a valid Structured Field String.
    pub policy: &'a str,
    /// The limit.
    pub quota: &'a Quota,
    /// Requests still admissible now.
    pub remaining: u64,
    /// Until the quota is fully restored.
    pub reset_after: Duration,
}

const SF_MAX: u64 = 999_999_999_999_999;

fn sf_int(v: u64) -> Integer {
    Integer::try_from(v.min(SF_MAX)).unwrap_or(Integer::MAX)
}

/// The IETF policy's quota and window in whole seconds: the quota's count and period when
/// the period is whole seconds, else the same rate over the period rounded up to whole
/// seconds (`10 per 100 ms` is published as `q=100;w=1`).
pub fn policy_window(quota: &Quota) -> (u64, u64) {
    let period = quota.period();
    if period.subsec_nanos() == 0 {
        return (u64::from(quota.count()), period.as_secs());
    }
    let w = ceil_secs(period);
    let q = u128::from(quota.count()) * u128::from(w) * 1_000_000_000 / period.as_nanos();
    (u64::try_from(q).unwrap_or(u64::MAX), w)
}

/// Writes the chosen dialects for `snap` into `headers`, replacing earlier values.
///
/// Limit and remaining follow the quota's count and true remaining capacity (which can
/// exceed the count when the burst is larger). Reset is the time until the quota is fully
/// restored, in whole seconds rounded up.
pub fn write_limit_headers(
    headers: &mut HeaderMap,
    dialects: HeaderDialects,
    snap: &LimitSnapshot<'_>,
) {
    let reset = ceil_secs(snap.reset_after);
    if dialects.legacy {
        headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(snap.quota.count()));
        headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(snap.remaining));
        headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
    }
    if dialects.ietf {
        let Ok(name) = StringRef::from_str(snap.policy) else {
            return;
        };
        let (q, w) = policy_window(snap.quota);
        let mut policy = ListSerializer::new();
        policy
            .bare_item(name)
            .parameter(KeyRef::constant("q"), sf_int(q))
            .parameter(KeyRef::constant("w"), sf_int(w));
        let mut state = ListSerializer::new();
        state
            .bare_item(name)
            .parameter(KeyRef::constant("r"), sf_int(snap.remaining))
            .parameter(KeyRef::constant("t"), sf_int(reset));
        for (field, value) in [
            (RATELIMIT_POLICY, policy.finish()),
            (RATELIMIT, state.finish()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
                headers.insert(field, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_both_dialects() {
        let quota = Quota::new(5, Duration::from_secs(10)).unwrap();
        let mut h = HeaderMap::new();
        let snap = LimitSnapshot {
            policy: "sign_in",
            quota: &quota,
            remaining: 0,
            reset_after: Duration::from_millis(9_500),
        };
        write_limit_headers(&mut h, HeaderDialects::ALL, &snap);
        assert_eq!(h[X_RATELIMIT_LIMIT], "5");
        assert_eq!(h[X_RATELIMIT_REMAINING], "0");
        assert_eq!(h[X_RATELIMIT_RESET], "10");
        assert_eq!(h[RATELIMIT_POLICY], r#""sign_in";q=5;w=10"#);
        assert_eq!(h[RATELIMIT], r#""sign_in";r=0;t=10"#);
        // Round trip through a real Structured Field parser.
        let parsed = sfv::Parser::new(h[RATELIMIT].as_bytes())
            .parse::<sfv::List>()
            .unwrap();
        assert_eq!(parsed.len(), 1);

        let mut only_legacy = HeaderMap::new();
        write_limit_headers(&mut only_legacy, HeaderDialects::LEGACY, &snap);
        assert!(only_legacy.get(RATELIMIT).is_none());
        let mut none = HeaderMap::new();
        write_limit_headers(&mut none, HeaderDialects::NONE, &snap);
        assert!(none.is_empty());
    }

    #[test]
    fn sub_second_windows_publish_the_same_rate() {
        let q = Quota::new(10, Duration::from_millis(100)).unwrap();
        assert_eq!(policy_window(&q), (100, 1));
        let q = Quota::new(3, Duration::from_millis(1500)).unwrap();
        assert_eq!(policy_window(&q), (4, 2));
        assert_eq!(policy_window(&Quota::per_hour(25).unwrap()), (25, 3600));
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_value(Duration::ZERO), "1");
        assert_eq!(retry_after_value(Duration::from_nanos(1)), "1");
        assert_eq!(retry_after_value(Duration::from_secs(2)), "2");
        assert_eq!(retry_after_value(Duration::from_nanos(2_000_000_001)), "3");
        assert_eq!(retry_after_value(Duration::from_secs(144)), "144");
    }
}
