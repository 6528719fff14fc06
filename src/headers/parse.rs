//! Reading a server's retry guidance from response headers (client side).
//!
//! Understood fields, in order of precedence:
//!
//! 1. `retry-after-ms`: milliseconds, integer or decimal (`"1500"`, `"2.5"`).
//! 2. `x-amz-retry-after`: milliseconds, integer or decimal.
//! 3. `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
//! 4. `grpc-retry-pushback-ms`: a non-negative integer of milliseconds. A negative or
//!    malformed value means "do not retry" (see [`grpc_forbids_retry`]).
//!
//! Every delay is a [`Duration`]; numbers too large for one saturate at [`Duration::MAX`]
//! before being capped.

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, DATE, RETRY_AFTER};
use http::HeaderMap;

pub(crate) const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
pub(crate) const X_AMZ_RETRY_AFTER: HeaderName = HeaderName::from_static("x-amz-retry-after");
/// `grpc-retry-pushback-ms`.
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// Where a hint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintSource {
    /// `retry-after-ms` (milliseconds).
    RetryAfterMs,
    /// `x-amz-retry-after` (milliseconds).
    AmzRetryAfter,
    /// `Retry-After` (delay-seconds or HTTP-date).
    RetryAfter,
    /// `grpc-retry-pushback-ms` (milliseconds).
    GrpcRetryPushbackMs,
}

/// The server's retry guidance from one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryHint {
    /// How long to wait, already capped at the caller's cap.
    pub delay: Duration,
    /// Which header the hint came from.
    pub source: HintSource,
    /// `true` when the server asked for more than the cap.
    pub capped: bool,
    /// What the server asked for before capping (saturating at [`Duration::MAX`]).
    pub requested: Duration,
}

/// Default cap on server-requested delays: 1 day.
pub const DEFAULT_HINT_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// The unit of a numeric header value.
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
}

/// `value` without the optional whitespace of RFC 9110 §5.6.3 (`OWS = *( SP / HTAB )`) at
/// either end: the one trim of every header reader of the crate. Other bytes (vertical tab,
/// form feed, NBSP and other Unicode spaces) are never padding.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// [`trim_ows`] of a `str`.
pub(crate) fn trim_ows_str(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

/// Parses `DIGITS[.DIGITS]` (surrounding SP and HTAB allowed) as a count of `unit`.
///
/// At least one digit is required; signs, exponents and inner whitespace are rejected.
/// Fractional digits finer than a nanosecond are truncated. An integer part too large
/// for a `u64` saturates at [`Duration::MAX`].
fn parse_decimal(value: &[u8], unit: Unit) -> Option<Duration> {
    let value = trim_ows(value);
    let (int_part, frac_part) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (value.get(..dot)?, value.get(dot + 1..)?),
        None => (value, &[][..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
        return None;
    }
    let mut int: u64 = 0;
    let mut saturated = false;
    for &b in int_part {
        match int
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
        {
            Some(n) => int = n,
            None => saturated = true,
        }
    }
    if saturated {
        return Some(Duration::MAX);
    }
    // Fractional digits that still matter at nanosecond resolution.
    let frac_digits: u32 = match unit {
        Unit::Seconds => 9,
        Unit::Millis => 6,
    };
    let mut frac: u64 = 0;
    let mut used: u32 = 0;
    for &b in frac_part.iter().take(frac_digits as usize) {
        frac = frac * 10 + u64::from(b - b'0');
        used += 1;
    }
    frac *= 10u64.pow(frac_digits - used);
    let whole = match unit {
        Unit::Seconds => Duration::from_secs(int),
        Unit::Millis => Duration::from_millis(int),
    };
    Some(
        whole
            .checked_add(Duration::from_nanos(frac))
            .unwrap_or(Duration::MAX),
    )
}

/// Parses an HTTP-date (any of the three RFC 9110 forms), surrounding SP and HTAB allowed.
pub(crate) fn parse_date(value: &[u8]) -> Option<SystemTime> {
    let value = trim_ows(value);
    // `httpdate` trims every ASCII space itself: what is left at either end is no padding.
    let ends = [value.first(), value.last()];
    if ends
        .into_iter()
        .flatten()
        .any(|&b| char::from(b).is_whitespace())
    {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    httpdate::parse_http_date(text).ok()
}

/// Parses a `Retry-After` value.
///
/// Accepts delay-seconds (a non-negative integer, or tolerantly a decimal such as `"2.0"`
/// or `"1.5"` meaning 1.5 s; surrounding SP and HTAB are ignored, no other space) or an HTTP-date in any of
/// the three RFC 9110 forms (IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT`, asctime `Sun Nov  6 08:49:37 1994`).
///
/// A date is measured against `reference` (the response's `Date` header time when the
/// caller has it, else the local clock); a date at or before `reference` yields
/// [`Duration::ZERO`]. Negative numbers, `NaN`, garbage and empty values yield `None`.
/// Numbers too large for a [`Duration`] saturate at [`Duration::MAX`].
pub fn parse_retry_after(value: &[u8], reference: SystemTime) -> Option<Duration> {
    if let Some(delay) = parse_decimal(value, Unit::Seconds) {
        return Some(delay);
    }
    let date = parse_date(value)?;
    Some(date.duration_since(reference).unwrap_or(Duration::ZERO))
}

/// Parses a `grpc-retry-pushback-ms` value: a non-negative integer of milliseconds.
pub(super) fn parse_pushback(value: &[u8]) -> Option<Duration> {
    let trimmed = trim_ows(value);
    if trimmed.contains(&b'.') {
        return None;
    }
    parse_decimal(trimmed, Unit::Millis)
}

/// The first value of `name` that `parse` accepts.
fn first_parsable(
    headers: &HeaderMap,
    name: &HeaderName,
    mut parse: impl FnMut(&[u8]) -> Option<Duration>,
) -> Option<Duration> {
    headers
        .get_all(name)
        .iter()
        .find_map(|value| parse(value.as_bytes()))
}

/// The guidance in a response's headers, capped at `cap`.
///
/// Precedence: `retry-after-ms` (milliseconds, integer or decimal), `x-amz-retry-after`
/// (milliseconds, integer or decimal), `Retry-After`, then `grpc-retry-pushback-ms`
/// (non-negative integer milliseconds). A malformed header is skipped and the next kind is
/// tried; when a header has several lines, the first parsable line wins.
///
/// HTTP-dates in `Retry-After` are measured against the response's own `Date` header
/// (first parsable line) when there is one, which cancels clock skew between client and
/// server; otherwise against `now`.
///
/// A negative or malformed `grpc-retry-pushback-ms` yields no hint; check
/// [`grpc_forbids_retry`] to learn that the server forbids retrying.
pub fn retry_hint(headers: &HeaderMap, now: SystemTime, cap: Duration) -> Option<RetryHint> {
    let millis = |v: &[u8]| parse_decimal(v, Unit::Millis);
    let (requested, source) = first_parsable(headers, &RETRY_AFTER_MS, millis)
        .map(|d| (d, HintSource::RetryAfterMs))
        .or_else(|| {
            first_parsable(headers, &X_AMZ_RETRY_AFTER, millis)
                .map(|d| (d, HintSource::AmzRetryAfter))
        })
        .or_else(|| {
            if !headers.contains_key(RETRY_AFTER) {
                return None;
            }
            let reference = headers
                .get_all(DATE)
                .iter()
                .find_map(|v| parse_date(v.as_bytes()))
                .unwrap_or(now);
            first_parsable(headers, &RETRY_AFTER, |v| parse_retry_after(v, reference))
                .map(|d| (d, HintSource::RetryAfter))
        })
        .or_else(|| {
            first_parsable(headers, &GRPC_RETRY_PUSHBACK_MS, parse_pushback)
                .map(|d| (d, HintSource::GrpcRetryPushbackMs))
        })?;
    Some(RetryHint {
        delay: requested.min(cap),
        source,
        capped: requested > cap,
        requested,
    })
}

/// gRPC: `true` when `grpc-retry-pushback-ms` is present and none of its lines is a
/// non-negative integer (negative or malformed means the server forbids retrying).
pub fn grpc_forbids_retry(headers: &HeaderMap) -> bool {
    headers.contains_key(GRPC_RETRY_PUSHBACK_MS)
        && first_parsable(headers, &GRPC_RETRY_PUSHBACK_MS, parse_pushback).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;
    use HintSource as S;

    /// 1994-11-06 08:49:37 UTC.
    const T0: u64 = 784_111_777;
    const CAP: Duration = DEFAULT_HINT_CAP;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn map(pairs: &[(&str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for &(name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_static(value));
        }
        headers
    }

    /// `(delay, capped, requested)` of the hint in `pairs` under `cap`.
    fn capped(pairs: &[(&str, &'static str)], cap: Duration) -> (Duration, bool, Duration) {
        let h = retry_hint(&map(pairs), at(T0), cap).unwrap();
        (h.delay, h.capped, h.requested)
    }

    /// `(delay, source)` of the hint in `pairs`, measured at `now`.
    fn hint(pairs: &[(&str, &'static str)], now: SystemTime) -> Option<(Duration, HintSource)> {
        retry_hint(&map(pairs), now, CAP).map(|h| (h.delay, h.source))
    }

    /// `parse_retry_after` at `T0`.
    fn ra(value: &str) -> Option<Duration> {
        parse_retry_after(value.as_bytes(), at(T0))
    }

    #[test]
    fn delay_seconds_forms() {
        assert_eq!(ra("0"), Some(Duration::ZERO));
        assert_eq!(ra("120"), Some(secs(120)));
        assert_eq!(ra("2.0"), Some(secs(2)));
        assert_eq!(ra("1.5"), Some(ms(1500)));
        assert_eq!(ra("0.000000001"), Some(Duration::from_nanos(1)));
        assert_eq!(ra("0.0000000019"), Some(Duration::from_nanos(1)));
        assert_eq!(ra("3."), Some(secs(3)));
        assert_eq!(ra(".25"), Some(ms(250)));
        assert_eq!(ra("  7 \t"), Some(secs(7)));
        assert_eq!(ra("007"), Some(secs(7)));
        assert_eq!(ra("18446744073709551615"), Some(secs(u64::MAX)));
    }

    #[test]
    fn rejected_values() {
        for bad in [
            "", " ", "-1", "-0", "+5", "NaN", "1e3", "1.2.3", "1 2", ".", "x",
        ] {
            assert_eq!(ra(bad), None, "{bad:?}");
        }
        assert_eq!(ra("Sun, 31 Feb 1994 08:49:37 GMT"), None); // no such day
        assert_eq!(ra("Mon, 06 Nov 1994 08:49:37 GMT"), None); // wrong weekday
        assert_eq!(parse_retry_after(b"\xff", at(T0)), None);
    }

    #[test]
    fn absurd_numbers_saturate_and_are_capped() {
        assert_eq!(ra("99999999999999999999999999999"), Some(Duration::MAX));
        assert_eq!(ra("18446744073709551615.999999999"), Some(Duration::MAX));
        let huge = [("retry-after", "99999999999999999999999999999")];
        assert_eq!(capped(&huge, CAP), (CAP, true, Duration::MAX));
        let huge_ms = [("retry-after-ms", "99999999999999999999")];
        assert_eq!(capped(&huge_ms, secs(30)), (secs(30), true, Duration::MAX));
        let two_min = [("retry-after", "120")];
        assert_eq!(capped(&two_min, secs(60)), (secs(60), true, secs(120)));
        assert_eq!(capped(&two_min, secs(120)), (secs(120), false, secs(120)));
    }

    #[test]
    fn three_date_forms_against_date_header() {
        // `now` is decades later: the response's Date header is the reference.
        let now = at(T0 + 1_000_000_000);
        for form in [
            "Sun, 06 Nov 1994 08:49:47 GMT",
            "Sunday, 06-Nov-94 08:49:47 GMT",
            "Sun Nov  6 08:49:47 1994",
        ] {
            let h = map(&[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("retry-after", form),
            ]);
            let hint = retry_hint(&h, now, CAP).unwrap();
            assert_eq!(hint.delay, secs(10), "{form}");
            assert_eq!(hint.source, S::RetryAfter);
            assert_eq!((hint.capped, hint.requested), (false, secs(10)));
        }
    }

    #[test]
    fn date_measured_against_reference() {
        let date = b"Sun, 06 Nov 1994 08:50:37 GMT";
        assert_eq!(parse_retry_after(date, at(T0)), Some(secs(60)));
        assert_eq!(parse_retry_after(date, at(T0 + 60)), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(date, at(T0 + 3600)), Some(Duration::ZERO));
        let padded = b" Sun Nov  6 08:49:39 1994 ";
        assert_eq!(parse_retry_after(padded, at(T0)), Some(secs(2)));
    }

    #[test]
    fn malformed_date_header_falls_back_to_now() {
        let ra = ("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT");
        let bad_date = [("date", "yesterday-ish"), ra];
        assert_eq!(hint(&bad_date, at(T0 + 4)).unwrap().0, secs(6));
        assert_eq!(hint(&[ra], at(T0 + 8)).unwrap().0, secs(2));
        // A Date after the Retry-After date: the date is in the past.
        let later = [("date", "Sun, 06 Nov 1994 09:00:00 GMT"), ra];
        assert_eq!(hint(&later, at(0)).unwrap().0, Duration::ZERO);
    }

    #[test]
    fn millisecond_headers() {
        let now = at(T0);
        let micros = Duration::from_micros;
        let cases = [
            ("retry-after-ms", "1500", ms(1500), S::RetryAfterMs),
            ("retry-after-ms", " 2.5 ", micros(2500), S::RetryAfterMs),
            (
                "retry-after-ms",
                "0.0000019",
                Duration::from_nanos(1),
                S::RetryAfterMs,
            ),
            ("x-amz-retry-after", "250", ms(250), S::AmzRetryAfter),
            ("x-amz-retry-after", "0.5", micros(500), S::AmzRetryAfter),
            (
                "grpc-retry-pushback-ms",
                "40",
                ms(40),
                S::GrpcRetryPushbackMs,
            ),
        ];
        for (name, value, delay, source) in cases {
            let got = hint(&[(name, value)], now);
            assert_eq!(got, Some((delay, source)), "{name}: {value}");
        }
    }

    #[test]
    fn precedence_and_fallthrough() {
        let now = at(T0);
        let all = [
            ("grpc-retry-pushback-ms", "4"),
            ("retry-after", "3"),
            ("x-amz-retry-after", "2"),
            ("retry-after-ms", "1"),
        ];
        let expected = [
            (ms(1), S::RetryAfterMs),
            (ms(2), S::AmzRetryAfter),
            (secs(3), S::RetryAfter),
            (ms(4), S::GrpcRetryPushbackMs),
        ];
        for (skip, want) in expected.into_iter().enumerate() {
            assert_eq!(hint(&all[..all.len() - skip], now), Some(want));
        }
        // Malformed higher-precedence headers fall through.
        let h = [
            ("retry-after-ms", "x"),
            ("x-amz-retry-after", "-5"),
            ("retry-after", "7"),
        ];
        assert_eq!(hint(&h, now), Some((secs(7), S::RetryAfter)));
        assert_eq!(hint(&[], now), None);
        assert_eq!(
            hint(&[("retry-after", "x"), ("retry-after-ms", "")], now),
            None
        );
        // Several lines of one header: the first parsable one wins.
        let ra = "retry-after";
        let lines = [(ra, "bogus"), (ra, "5"), (ra, "9")];
        assert_eq!(hint(&lines, now).unwrap().0, secs(5));
    }

    #[test]
    fn grpc_pushback_forbids() {
        for bad in ["-1", "-100", "abc", "1.5", ""] {
            let h = map(&[("grpc-retry-pushback-ms", bad)]);
            assert!(grpc_forbids_retry(&h), "{bad:?}");
            assert_eq!(retry_hint(&h, at(T0), CAP), None, "{bad:?}");
        }
        assert!(!grpc_forbids_retry(&HeaderMap::new()));
        let zero = [("grpc-retry-pushback-ms", "0")];
        assert!(!grpc_forbids_retry(&map(&zero)));
        assert_eq!(hint(&zero, at(T0)).unwrap().0, Duration::ZERO);
        // A forbidding pushback does not hide a Retry-After.
        let both = [("grpc-retry-pushback-ms", "-1"), ("retry-after", "2")];
        assert!(grpc_forbids_retry(&map(&both)));
        assert_eq!(hint(&both, at(T0)).unwrap().0, secs(2));
    }
}
