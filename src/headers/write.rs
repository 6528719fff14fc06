//! Writing rate-limit headers on responses (server side).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use sfv::{Integer, ItemSerializer, KeyRef, ListSerializer, StringRef};

use super::{
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use crate::engine::quota::Quota;

/// Which rate-limit header dialects a layer writes: on admitted responses, and on refusals
/// through [`Rejection::write_rate_limit_headers`](crate::Rejection::write_rate_limit_headers).
/// `Retry-After` is not one of them (the default responder writes it on every 429).
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

/// Whole seconds in `d`, rounded up (saturating at `u64::MAX` for `Duration::MAX`).
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
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
    int_value(ceil_secs(wait).max(1))
}

/// The state of one limit to report.
#[derive(Debug, Clone, Copy)]
pub struct LimitSnapshot<'a> {
    /// Policy name (the rule's name), a valid Structured Field String.
    pub policy: &'a str,
    /// The limit.
    pub quota: &'a Quota,
    /// Requests still admissible now (units of cost: a request costs one).
    pub remaining: u64,
    /// Until the quota is fully restored.
    pub reset_after: Duration,
}

const SF_MAX: u64 = 999_999_999_999_999;

/// The largest `X-RateLimit-Reset` written: 999,999,999 s (31.7 years). Readers take
/// larger plain numbers for epoch times (see [`parse_reset`](super::parse_reset)), so a
/// longer reset (a quota may hold up to 36 years of burst) is written as this, which every
/// reader caps far below anyway.
pub const LEGACY_RESET_MAX: u64 = 999_999_999;

/// `0` to `99` written back to back: every value under 100 is a `'static` slice of it, so
/// its header value needs no allocation.
const SMALL: &str = "0123456789101112131415161718192021222324252627282930313233343536373839\
                     404142434445464748495051525354555657585960616263646566676869\
                     707172737475767778798081828384858687888990919293949596979899";

/// `n` in decimal as a header value: a static one under 100, else a single allocation
/// (`HeaderValue::from(u64)` takes two: a 20-byte buffer, then a shared header for it).
pub(crate) fn int_value(n: u64) -> HeaderValue {
    match usize::try_from(n) {
        Ok(n @ 0..10) => HeaderValue::from_static(&SMALL[n..n + 1]),
        Ok(n @ 10..100) => HeaderValue::from_static(&SMALL[2 * n - 10..2 * n - 8]),
        _ => {
            let mut buf = itoa::Buffer::new();
            HeaderValue::from_bytes(buf.format(n).as_bytes())
                .expect("decimal digits are a valid header value")
        }
    }
}

/// The IETF policy's quota and window in whole seconds: the quota's count and period when
/// the period is whole seconds, else the same rate over the period rounded up to whole
/// seconds (`10 per 100 ms` is published as `q=100;w=1`).
pub(crate) fn policy_window(quota: &Quota) -> (u64, u64) {
    let period = quota.period();
    if period.subsec_nanos() == 0 {
        return (u64::from(quota.count()), period.as_secs());
    }
    let w = ceil_secs(period);
    let q = u128::from(quota.count()) * u128::from(w) * 1_000_000_000 / period.as_nanos();
    (u64::try_from(q).unwrap_or(u64::MAX), w)
}

/// Everything about one limit's headers that does not change between responses, prepared
/// once (per rule, when a layer is built): the constant values are cloned onto responses
/// (a reference count, no copy) and the variable ones written with plain integer
/// formatting around a pre-serialized policy name.
#[derive(Debug, Clone)]
pub(crate) struct LimitHeaders {
    /// `X-RateLimit-Limit`.
    limit: HeaderValue,
    /// `None` when the policy name is not a valid Structured Field String (no IETF fields).
    ietf: Option<IetfHeaders>,
}

#[derive(Debug, Clone)]
struct IetfHeaders {
    /// The whole `RateLimit-Policy` value.
    policy: HeaderValue,
    /// The start of the `RateLimit` value: the serialized name and `;r=`.
    state_prefix: Box<[u8]>,
}

impl LimitHeaders {
    /// Prepares the headers of the limit `quota` published under the name `policy`.
    pub(crate) fn new(policy: &str, quota: &Quota) -> Self {
        let ietf = StringRef::from_str(policy).ok().and_then(|name| {
            let (q, w) = policy_window(quota);
            let mut list = ListSerializer::new();
            list.bare_item(name)
                .parameter(KeyRef::constant("q"), sf_int(q))
                .parameter(KeyRef::constant("w"), sf_int(w));
            let policy = HeaderValue::try_from(list.finish()?).ok()?;
            let mut state_prefix = ItemSerializer::new().bare_item(name).finish();
            state_prefix.push_str(";r=");
            Some(IetfHeaders {
                policy,
                state_prefix: state_prefix.into_bytes().into_boxed_slice(),
            })
        });
        LimitHeaders {
            limit: int_value(u64::from(quota.count())),
            ietf,
        }
    }

    /// Writes the chosen dialects into `headers`, replacing earlier values: see
    /// [`write_limit_headers`].
    pub(crate) fn write(
        &self,
        headers: &mut HeaderMap,
        dialects: HeaderDialects,
        remaining: u64,
        reset_after: Duration,
    ) {
        let reset = ceil_secs(reset_after);
        let ietf = self.ietf.as_ref().filter(|_| dialects.ietf);
        let fields = if dialects.legacy { 3 } else { 0 } + if ietf.is_some() { 2 } else { 0 };
        if fields > 0 {
            // One growth of the map at most, instead of one per insert past its capacity;
            // with room for one header more, since servers add `Content-Length` after
            // us (axum does, for every response): were our fields to fill the map, that
            // insert would grow it again and rehash every entry.
            headers.reserve(fields + 1);
        }
        match (dialects.legacy, ietf) {
            (true, Some(ietf)) => {
                // Both dialects: the legacy numbers are the digits inside `RateLimit`
                // (when not clamped), so they share its allocation.
                let (state, remaining_v, reset_v) = match ietf.state_shared(remaining, reset) {
                    Some(shared) => shared,
                    None => (
                        ietf.state(remaining, reset),
                        int_value(remaining),
                        int_value(reset.min(LEGACY_RESET_MAX)),
                    ),
                };
                headers.insert(X_RATELIMIT_LIMIT, self.limit.clone());
                headers.insert(X_RATELIMIT_REMAINING, remaining_v);
                headers.insert(X_RATELIMIT_RESET, reset_v);
                headers.insert(RATELIMIT_POLICY, ietf.policy.clone());
                headers.insert(RATELIMIT, state);
            }
            (true, None) => {
                headers.insert(X_RATELIMIT_LIMIT, self.limit.clone());
                headers.insert(X_RATELIMIT_REMAINING, int_value(remaining));
                headers.insert(X_RATELIMIT_RESET, int_value(reset.min(LEGACY_RESET_MAX)));
            }
            (false, Some(ietf)) => {
                headers.insert(RATELIMIT_POLICY, ietf.policy.clone());
                headers.insert(RATELIMIT, ietf.state(remaining, reset));
            }
            (false, None) => {}
        }
    }
}

/// The longest `RateLimit` value [`IetfHeaders::state_shared`] builds in place.
const INLINE_STATE: usize = 160;

/// A `RateLimit` value built in place, owned by a [`Bytes`] that its slices share.
struct InlineState {
    len: usize,
    buf: [u8; INLINE_STATE],
}

impl InlineState {
    fn push(&mut self, bytes: &[u8]) -> std::ops::Range<usize> {
        let start = self.len;
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        start..self.len
    }
}

impl AsRef<[u8]> for InlineState {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl IetfHeaders {
    /// The `RateLimit` value and the legacy `X-RateLimit-Remaining` and `-Reset` values,
    /// in one allocation: the legacy ones (when not under 100, which are static) are
    /// slices of the first. `None` when a number is clamped (to the Structured Field
    /// maximum, or the reset to [`LEGACY_RESET_MAX`]: the legacy value then differs) or
    /// the value does not fit.
    fn state_shared(
        &self,
        remaining: u64,
        reset: u64,
    ) -> Option<(HeaderValue, HeaderValue, HeaderValue)> {
        if remaining > SF_MAX
            || reset > LEGACY_RESET_MAX
            || self.state_prefix.len() + 40 > INLINE_STATE
        {
            return None;
        }
        let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut v = InlineState {
            len: 0,
            buf: [0; INLINE_STATE],
        };
        v.push(&self.state_prefix);
        let r = v.push(r.format(remaining).as_bytes());
        v.push(b";t=");
        let t = v.push(t.format(reset).as_bytes());
        let all = Bytes::from_owner(v);
        let part = |n: u64, range| {
            if n < 100 {
                int_value(n)
            } else {
                HeaderValue::from_maybe_shared(all.slice(range)).expect("decimal digits")
            }
        };
        let (remaining, reset) = (part(remaining, r), part(reset, t));
        let state = HeaderValue::from_maybe_shared(all)
            .expect("a serialized Structured Field is a valid header value");
        Some((state, remaining, reset))
    }

    /// The `RateLimit` value `"name";r=R;t=T`, in one exactly sized allocation.
    fn state(&self, remaining: u64, reset: u64) -> HeaderValue {
        let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (r, t) = (r.format(remaining.min(SF_MAX)), t.format(reset.min(SF_MAX)));
        let mut v = Vec::with_capacity(self.state_prefix.len() + r.len() + 3 + t.len());
        v.extend_from_slice(&self.state_prefix);
        v.extend_from_slice(r.as_bytes());
        v.extend_from_slice(b";t=");
        v.extend_from_slice(t.as_bytes());
        HeaderValue::try_from(v).expect("a serialized Structured Field is a valid header value")
    }
}

fn sf_int(v: u64) -> Integer {
    Integer::try_from(v.min(SF_MAX)).unwrap_or(Integer::MAX)
}

/// Writes the chosen dialects for `snap` into `headers`, replacing earlier values.
///
/// Limit and remaining follow the quota's count and true remaining capacity (which can
/// exceed the count when the burst is larger). Reset is the time until the quota is fully
/// restored, in whole seconds rounded up (the legacy one at most [`LEGACY_RESET_MAX`]).
#[cfg(test)]
pub(crate) fn write_limit_headers(
    headers: &mut HeaderMap,
    dialects: HeaderDialects,
    snap: &LimitSnapshot<'_>,
) {
    LimitHeaders::new(snap.policy, snap.quota).write(
        headers,
        dialects,
        snap.remaining,
        snap.reset_after,
    );
}

#[cfg(test)]
mod tests;
