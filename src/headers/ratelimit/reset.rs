//! Reset values of every form servers send (see [`parse_reset`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::parse::{parse_date, parse_retry_after, trim_ows_str};

/// Parses one reset value into time-from-reference.
///
/// Disambiguation rule, tried in this order (the forms cannot overlap):
/// 1. Go-style durations with units (`1s`, `6m0s`, `12ms`, `1h2m3.5s`, `250us`/`µs`, `ns`;
///    units `h`, `m`, `s`, `ms`, `us`, `µs`, `μs`, `ns`, numbers integer or decimal)
///    → that duration.
/// 2. RFC 3339 timestamps (`2026-11-23T12:00:00Z`, with offset or fractional seconds;
///    lowercase `t`/`z` and a space separator accepted) → absolute, minus `reference`.
/// 3. HTTP-dates (any of the three RFC 9110 forms) → absolute, minus `reference`.
/// 4. Plain numbers (integer or decimal), by magnitude `n` of the integer part, each band
///    three decades wide so that every epoch unit of the years 2001 to 33658 has one:
///
///    | `n`                          | read as                                     |
///    |------------------------------|---------------------------------------------|
///    | `n < 10⁹`                    | delta-seconds from now (up to 31.7 years)   |
///    | `10⁹ ≤ n < 10¹²`             | epoch seconds (Discord `1470173023.123`)    |
///    | `10¹² ≤ n < 10¹⁵`            | epoch milliseconds                          |
///    | `10¹⁵ ≤ n < 10¹⁸`            | epoch microseconds                          |
///    | `10¹⁸ ≤ n ≤ 2⁶⁴ − 1`         | epoch nanoseconds (up to the year 2554)     |
///    | `n ≥ 2⁶⁴` (20+ digits)       | refused (`None`): no unit makes it a time   |
///
///    So a delta of 10⁹ s or more cannot be sent in this form (it would read as an epoch
///    time, in the past); the crate's own server never writes one (it writes at most
///    999,999,999 s).
///
/// Absolute values in the past → ZERO. Negative, NaN, exponents, garbage and empty values
/// → `None`. Surrounding SP and HTAB are ignored (no other space: NBSP is garbage); huge
/// durations (forms 1 and delta-seconds) saturate at [`Duration::MAX`]; absolute times a
/// [`SystemTime`] cannot hold → `None`. The value is not capped: [`parse_rate_limit`]
/// caps what it reads (see [`parse_rate_limit_capped`]).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tower_throttle::headers::parse_reset;
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let in_30s = Some(Duration::from_secs(30));
/// assert_eq!(parse_reset("30", now), in_30s);
/// assert_eq!(parse_reset("1700000030", now), in_30s); // epoch seconds
/// assert_eq!(parse_reset("1700000030000", now), in_30s); // milliseconds
/// assert_eq!(parse_reset("1700000030000000", now), in_30s); // microseconds
/// assert_eq!(parse_reset("1700000030000000000", now), in_30s); // nanoseconds
/// assert_eq!(parse_reset("99999999999999999999", now), None);
/// assert_eq!(parse_reset("\u{a0}30", now), None);
/// ```
///
/// [`parse_rate_limit`]: super::parse_rate_limit
/// [`parse_rate_limit_capped`]: super::parse_rate_limit_capped
pub fn parse_reset(value: &str, reference: SystemTime) -> Option<Duration> {
    let value = trim_ows_str(value);
    // Digits and dots only: none of forms 1–3 (they need a unit, a `-` or letters).
    if !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if let Some(delay) = go_duration(value) {
            return Some(delay);
        }
        if let Some(at) = rfc3339(value).or_else(|| parse_date(value.as_bytes())) {
            return since(at, reference);
        }
    }
    number(decimal(value)?, reference)
}

/// Form 4 of [`parse_reset`]: a plain number of seconds (as read, [`Duration::MAX`] when
/// its integer part overflowed a `u64`), absolute or delta, by the table there.
pub(super) fn number(number: Duration, reference: SystemTime) -> Option<Duration> {
    let secs = number.as_secs();
    let divisor: u32 = match secs {
        _ if number == Duration::MAX => return None,
        0..1_000_000_000 => return Some(number),
        1_000_000_000..1_000_000_000_000 => 1,
        1_000_000_000_000..1_000_000_000_000_000 => 1_000,
        1_000_000_000_000_000..1_000_000_000_000_000_000 => 1_000_000,
        _ => 1_000_000_000,
    };
    since(UNIX_EPOCH.checked_add(number / divisor)?, reference)
}

/// Time from `reference` to `at` (ZERO when `at` has passed).
fn since(at: SystemTime, reference: SystemTime) -> Option<Duration> {
    Some(at.duration_since(reference).unwrap_or(Duration::ZERO))
}

/// `DIGITS[.DIGITS]` seconds, via the shared Retry-After number parser (digits and dots
/// only, so its HTTP-date branch never applies).
pub(super) fn decimal(value: &str) -> Option<Duration> {
    let numeric = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    numeric.then(|| parse_retry_after(value.as_bytes(), UNIX_EPOCH))?
}

/// A Go `time.Duration` string without sign: one or more `NUMBER UNIT` pairs.
fn go_duration(mut rest: &str) -> Option<Duration> {
    let mut total = None::<Duration>;
    while !rest.is_empty() {
        let numeric = |c: char| c.is_ascii_digit() || c == '.';
        let number_len = rest.find(|c: char| !numeric(c)).unwrap_or(rest.len());
        let unit = rest.get(number_len..)?;
        let unit = unit.get(..unit.find(numeric).unwrap_or(unit.len()))?;
        let number = decimal(rest.get(..number_len)?)?;
        let part = match unit {
            "h" => number.saturating_mul(3600),
            "m" => number.saturating_mul(60),
            "s" => number,
            "ms" => number / 1_000,
            "us" | "µs" | "μs" => number / 1_000_000,
            "ns" => number / 1_000_000_000,
            _ => return None,
        };
        total = Some(total.unwrap_or_default().saturating_add(part));
        rest = rest.get(number_len + unit.len()..)?;
    }
    total
}

/// An RFC 3339 `date-time`: `2026-11-23T12:00:00Z`, with an optional fraction of a second
/// (any number of digits, read to the nanosecond) and a `Z` or `±HH:MM` offset; `t`, `z`
/// and a space separator are accepted, as RFC 3339 section 5.6 allows. Nothing else: no
/// missing seconds, offset or separators (ISO 8601's other forms are not what servers send
/// here). Linear in the input, never panics.
fn rfc3339(s: &str) -> Option<SystemTime> {
    let civil = civil_secs(s.as_bytes())?;
    let (nanos, offset_at) = fraction(s)?;
    let offset = offset_secs(s.as_bytes().get(offset_at..)?)?;
    from_epoch(civil - offset, nanos)
}

/// The `YYYY-MM-DDTHH:MM:SS` that starts `b`, as seconds since 1970-01-01T00:00:00 of the
/// same clock (leap second 60 allowed, read as the next minute's 0).
fn civil_secs(b: &[u8]) -> Option<i64> {
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let num = |from, to| digits(b, from, to);
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let valid_day = (1..=days_in_month(year, month)?).contains(&day);
    if !valid_day || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The ASCII digits `b[from..to]` as a number (at most four of them here, so no overflow).
fn digits(b: &[u8], from: usize, to: usize) -> Option<i64> {
    b.get(from..to)?.iter().try_fold(0, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

/// The number of days of `month` (1 to 12) in the proleptic Gregorian `year`.
fn days_in_month(year: i64, month: i64) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 => Some(28 + i64::from(leap)),
        4 | 6 | 9 | 11 => Some(30),
        1..=12 => Some(31),
        _ => None,
    }
}

/// Days from 1970-01-01 to a valid date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The optional `.DIGITS` after the seconds: its nanoseconds, and where the offset starts.
fn fraction(s: &str) -> Option<(u32, usize)> {
    let b = s.as_bytes();
    let len = b
        .get(20..)
        .map_or(0, |t| t.iter().take_while(|d| d.is_ascii_digit()).count());
    match b.get(19) {
        Some(b'.') if len > 0 => Some((decimal(s.get(19..20 + len)?)?.subsec_nanos(), 20 + len)),
        _ => Some((0, 19)),
    }
}

/// `Z`, `z` or `±HH:MM` (the whole rest of the value) as seconds east of UTC.
fn offset_secs(b: &[u8]) -> Option<i64> {
    match b {
        b"Z" | b"z" => Some(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(b, 1, 3)?, digits(b, 4, 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            Some((if *sign == b'-' { -60 } else { 60 }) * (h * 60 + m))
        }
        _ => None,
    }
}

/// `secs` seconds and `nanos` nanoseconds after the Unix epoch (`secs` may be negative).
fn from_epoch(secs: i64, nanos: u32) -> Option<SystemTime> {
    let at = match u64::try_from(secs) {
        Ok(after) => UNIX_EPOCH.checked_add(Duration::from_secs(after)),
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())),
    };
    at?.checked_add(Duration::from_nanos(u64::from(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2022-10-18T22:26:40Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_666_132_000)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reset_forms() {
        let at = |s: u64| Some(secs(s));
        let table: &[(&str, Option<Duration>)] = &[
            ("1s", at(1)),
            ("6m0s", at(360)),
            ("12ms", Some(ms(12))),
            ("1h2m3.5s", Some(ms(3_723_500))),
            ("250us", Some(Duration::from_micros(250))),
            ("250µs", Some(Duration::from_micros(250))),
            ("250μs", Some(Duration::from_micros(250))),
            ("10ns", Some(Duration::from_nanos(10))),
            ("1.5m", at(90)),
            (" 7s ", at(7)),
            ("2022-10-18T22:27:40Z", at(60)),
            ("2022-10-18t22:27:40.25z", Some(ms(60_250))),
            ("2022-10-18 22:27:40Z", at(60)),
            ("2022-10-18T17:27:40-05:00", at(60)),
            ("2022-10-18T22:00:00Z", at(0)),
            ("1969-12-31T23:59:59Z", at(0)),
            (
                "2022-10-18T22:27:40.1234567891Z",
                Some(Duration::new(60, 123_456_789)),
            ),
            ("2022-10-18T22:26:60Z", at(20)),
            ("Tue, 18 Oct 2022 22:27:40 GMT", at(60)),
            ("Tuesday, 18-Oct-22 22:27:40 GMT", at(60)),
            ("Tue Oct 18 22:27:40 2022", at(60)),
            ("1666132381", at(381)),
            ("1666132023.123", Some(ms(23_123))),
            ("1470173023.123", at(0)),
            ("1666132030500", Some(ms(30_500))),
            ("1666132030500.5", Some(Duration::from_micros(30_500_500))),
            ("1000000000", at(0)),
            ("999999999", at(999_999_999)),
            ("10", at(10)),
            ("64.57", Some(ms(64_570))),
            ("0", at(0)),
            ("99999999999999999999999999h", Some(Duration::MAX)),
        ];
        for &(value, want) in table {
            assert_eq!(parse_reset(value, now()), want, "{value:?}");
        }
        for bad in [
            "",
            " ",
            "-1",
            "-5",
            "+5",
            "NaN",
            "inf",
            "1e3",
            "abc",
            "1x",
            "s",
            "1.2.3",
            "1 s",
            "-1s",
            "2022-13-01T00:00:00Z",
            "2022-02-29T00:00:00Z",
            "2022-10-18T24:00:00Z",
            "2022-10-18T22:27:40",
            "2022-10-18T22:27:40+25:00",
            "2022-10-18T22:27:40.Z",
            "2022-10-18T22:27Z",
            "20221018T222740Z",
            "2022-10-18T22:27:40+05",
            "2022-10-18T22:27:40+0500",
            "2022-10-18T22:27:40Z[UTC]",
            "+002022-10-18T22:27:40Z",
            "Mon, 18 Oct 2022 22:27:40 GMT",
        ] {
            assert_eq!(parse_reset(bad, now()), None, "{bad:?}");
        }
    }
}
