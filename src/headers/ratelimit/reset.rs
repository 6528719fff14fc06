//! Reset values of every form servers send (see [`parse_reset`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::parse::parse_retry_after;

/// Parses one reset value into time-from-reference.
///
/// Disambiguation rule, tried in this order (the forms cannot overlap):
/// 1. Go-style durations with units (`1s`, `6m0s`, `12ms`, `1h2m3.5s`, `250us`/`µs`, `ns`;
///    units `h`, `m`, `s`, `ms`, `us`, `µs`, `μs`, `ns`, numbers integer or decimal)
///    → that duration.
/// 2. RFC 3339 timestamps (`2026-11-23T12:00:00Z`, with offset or fractional seconds;
///    lowercase `t`/`z` and a space separator accepted) → absolute, minus `reference`.
/// 3. HTTP-dates (any of the three RFC 9110 forms) → absolute, minus `reference`.
/// 4. Plain numbers (integer or decimal): ≥ 1e12 → epoch milliseconds; ≥ 1e9 → epoch
///    seconds (decimals allowed: Discord `1470173023.123`); otherwise delta-seconds from
///    now (decimals allowed).
///
/// Absolute values in the past → ZERO. Negative, NaN, exponents, garbage and empty values
/// → `None`. Surrounding whitespace is ignored; huge durations saturate at
/// [`Duration::MAX`]; absolute times a [`SystemTime`] cannot hold → `None`.
pub fn parse_reset(value: &str, reference: SystemTime) -> Option<Duration> {
    let value = value.trim();
    // Digits and dots only: none of forms 1–3 (they need a unit, a `-` or letters).
    if !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if let Some(delay) = go_duration(value) {
            return Some(delay);
        }
        if let Some(at) = rfc3339(value).or_else(|| httpdate::parse_http_date(value).ok()) {
            return since(at, reference);
        }
    }
    number(decimal(value)?, reference)
}

/// Form 4 of [`parse_reset`]: a plain number of seconds, absolute or delta.
pub(super) fn number(number: Duration, reference: SystemTime) -> Option<Duration> {
    if number >= Duration::from_secs(1_000_000_000_000) {
        since(UNIX_EPOCH.checked_add(number / 1000)?, reference)
    } else if number >= Duration::from_secs(1_000_000_000) {
        since(UNIX_EPOCH.checked_add(number)?, reference)
    } else {
        Some(number)
    }
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

/// An RFC 3339 `date-time`, parsed by hand (days-from-civil, no calendar crate).
fn rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let frac = b
        .get(20..)
        .map_or(0, |t| t.iter().take_while(|d| d.is_ascii_digit()).count());
    let (at, nanos) = match b.get(19) {
        Some(b'.') if frac > 0 => (20 + frac, decimal(s.get(19..20 + frac)?)?.subsec_nanos()),
        _ => (19, 0),
    };
    let offset = match b.get(at..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(at + 1, at + 3)?, num(at + 4, at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            (if *sign == b'-' { -60 } else { 60 }) * (h * 60 + m)
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 => 28 + i64::from(leap),
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let at = match u64::try_from(secs) {
        Ok(after) => UNIX_EPOCH.checked_add(Duration::from_secs(after)),
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())),
    };
    at?.checked_add(Duration::from_nanos(u64::from(nanos)))
}
