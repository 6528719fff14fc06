//! Reading rate-limit state from response headers, in every dialect seen in the wild.
//!
//! [`parse_rate_limit`] reads, in order of precedence: the IETF draft-11 `RateLimit-Policy`
//! / `RateLimit` lists (several named policies, `q`, `w`, `r`, `t`, `pk`), the draft-07
//! dictionary `RateLimit: limit=…, remaining=…, reset=…`, the older separate
//! `RateLimit-Limit/-Remaining/-Reset` fields, `X-RateLimit-*` (also OpenAI's
//! `-requests` suffix and Discord's `-Reset-After`) and `X-Rate-Limit-*`. `Retry-After`
//! (and `retry-after-ms`, …) is read alongside and takes precedence in
//! [`RateLimitInfo::available_after`]. Malformed or contradictory fields are ignored and
//! counted in [`RateLimitInfo::malformed`]; nothing here panics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use sfv::{BareItem, Dictionary, KeyRef, List, ListEntry, Parameters, Parser};

use super::parse::{retry_hint, DEFAULT_HINT_CAP};

/// Which header family a reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `X-RateLimit-Limit/Remaining/Reset` (and `-requests`, `-Reset-After` variants).
    XRateLimit,
    /// `X-Rate-Limit-Limit/Remaining/Reset`.
    XRateLimitDashed,
    /// IETF draft-11 `RateLimit-Policy` and `RateLimit` lists.
    IetfDraft11,
    /// IETF draft-07 `RateLimit: limit=…, remaining=…, reset=…`.
    IetfDraft07,
    /// IETF drafts up to -06: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
    IetfSeparate,
    /// Only `Retry-After` (or an equivalent).
    RetryAfterOnly,
}

/// One quota policy (a draft-11 `RateLimit-Policy` item, or one built from other fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPolicy {
    /// The policy's name, when the server gives one.
    pub name: Option<String>,
    /// Quota units per window.
    pub quota: u64,
    /// The window, when known.
    pub window: Option<Duration>,
    /// The partition key (`pk`), when given.
    pub partition_key: Option<Vec<u8>>,
}

/// The remaining state of one policy (a draft-11 `RateLimit` item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaState {
    /// The policy's name, when the server gives one.
    pub name: Option<String>,
    /// Units left.
    pub remaining: u64,
    /// Until the quota resets, when known.
    pub reset_after: Option<Duration>,
    /// The partition key (`pk`), when given.
    pub partition_key: Option<Vec<u8>>,
}

/// Everything one response says about rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitInfo {
    /// The dialect the headline came from (none when nothing was found).
    pub dialect: Option<Dialect>,
    /// The headline limit (for draft-11: the policy with the fewest remaining).
    pub limit: Option<u64>,
    /// The headline remaining.
    pub remaining: Option<u64>,
    /// Until the headline quota resets.
    pub reset_after: Option<Duration>,
    /// The server's retry guidance (`Retry-After`, `retry-after-ms`, …), capped at a day.
    pub retry_after: Option<Duration>,
    /// Every policy found.
    pub policies: Vec<QuotaPolicy>,
    /// Every policy state found.
    pub states: Vec<QuotaState>,
    /// Malformed or contradictory fields that were ignored.
    pub malformed: u32,
}

impl RateLimitInfo {
    /// When the client may send again without expecting a refusal: the retry guidance when
    /// present (it takes precedence); else the reset when nothing remains; else now.
    /// `None` when the response said nothing about rate limits.
    pub fn available_after(&self) -> Option<Duration> {
        if let Some(wait) = self.retry_after {
            return Some(wait);
        }
        match self.remaining {
            Some(0) => Some(self.reset_after.unwrap_or_default()),
            Some(_) => Some(Duration::ZERO),
            None => None,
        }
    }

    /// Whether no usable rate-limit information was found (malformed fields alone are
    /// counted in `malformed` but leave the reading empty).
    pub fn is_empty(&self) -> bool {
        self.dialect.is_none()
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The leading unsigned integer of a field (`100`, `100, 100;w=60`, `60;w=60`); anything
/// else after the digits (`1e3`, `10.5`) makes it malformed.
fn leading_int(v: &str) -> Option<u64> {
    let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, rest) = v.split_at(end);
    if digits.is_empty() || !(rest.is_empty() || rest.starts_with([',', ';', ' '])) {
        return None;
    }
    digits.parse().ok()
}

/// A non-negative decimal number of seconds (`12`, `1.5`), exact to the nanosecond.
fn decimal_secs(v: &str) -> Option<Duration> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos = 0u32;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(Duration::new(secs, nanos))
}

/// A Go duration: `1h2m3.5s`, `6m0s`, `12ms`, `250us`/`µs`, `10ns`.
fn go_duration(v: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = v;
    let mut any = false;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let n = decimal_secs(num)?;
        let scaled = match unit {
            "h" => n.checked_mul(3600)?,
            "m" => n.checked_mul(60)?,
            "s" => n,
            "ms" => n / 1000,
            "us" | "µs" => n / 1_000_000,
            "ns" => n / 1_000_000_000,
            _ => return None,
        };
        total = total.checked_add(scaled)?;
        rest = next;
        any = true;
    }
    any.then_some(total)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 timestamp as time since the Unix epoch.
fn rfc3339(v: &str) -> Option<SystemTime> {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = v.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let end = b[start..]
            .iter()
            .position(|c| !c.is_ascii_digit())
            .map_or(b.len(), |p| start + p);
        nanos = decimal_secs(&format!("0.{}", v.get(start..end)?))?.subsec_nanos();
        i = end;
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let m = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Parses one reset value into the time from `reference` until the reset.
///
/// Disambiguation rule, in order:
/// 1. A Go-style duration with units (`1s`, `6m0s`, `12ms`, `1h2m3.5s`) is that duration.
/// 2. An RFC 3339 timestamp (`2026-11-23T12:00:00Z`) is absolute.
/// 3. An HTTP-date (any RFC 9110 form) is absolute.
/// 4. A plain number (integer or decimal): at least 10¹² is epoch milliseconds; at least
///    10⁹ (September 2001 as epoch seconds) is epoch seconds, decimals allowed (Discord);
///    anything smaller is seconds from now (GitHub's `Retry-After`, Clerk's reset).
///
/// Absolute values are measured against `reference` (the response's `Date` when
/// available); one in the past is zero. Negative numbers and garbage are `None`.
pub fn parse_reset(value: &str, reference: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || v.starts_with('-') {
        return None;
    }
    let until = |at: SystemTime| Some(at.duration_since(reference).unwrap_or_default());
    if v.ends_with(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        && v.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && !v.contains(' ')
    {
        if let Some(d) = go_duration(v) {
            return Some(d);
        }
    }
    if let Some(at) = rfc3339(v) {
        return until(at);
    }
    if let Ok(at) = httpdate::parse_http_date(v) {
        return until(at);
    }
    let n = decimal_secs(v)?;
    if n.as_secs() >= 1_000_000_000_000 {
        let ms = n.as_secs();
        until(UNIX_EPOCH + Duration::from_millis(ms))
    } else if n.as_secs() >= 1_000_000_000 {
        until(UNIX_EPOCH + n)
    } else {
        Some(n)
    }
}

fn param_u64(params: &Parameters, key: &str) -> Option<Result<u64, ()>> {
    let v = params.get(KeyRef::from_str(key).ok()?)?;
    Some(
        v.as_integer()
            .map(i64::from)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or(()),
    )
}

fn item_name(item: &BareItem) -> Option<Option<String>> {
    if let Some(s) = item.as_string() {
        return Some(Some(s.as_str().to_owned()));
    }
    item.as_token().map(|t| Some(t.as_str().to_owned()))
}

/// draft-11: returns false when `RateLimit` is not a draft-11 list.
fn draft11(headers: &HeaderMap, info: &mut RateLimitInfo) -> bool {
    let Some(raw) = headers.get("ratelimit") else {
        return false;
    };
    let Ok(list) = Parser::new(raw.as_bytes()).parse::<List>() else {
        return false;
    };
    let mut found = false;
    for entry in &list {
        let ListEntry::Item(item) = entry else {
            info.malformed += 1;
            continue;
        };
        let Some(name) = item_name(&item.bare_item) else {
            return false; // not draft-11 (e.g. the draft-07 dictionary parses as a list of tokens? no: keys with '=')
        };
        match param_u64(&item.params, "r") {
            Some(Ok(remaining)) => {
                let reset_after = match param_u64(&item.params, "t") {
                    Some(Ok(t)) => Some(Duration::from_secs(t)),
                    Some(Err(())) => {
                        info.malformed += 1;
                        None
                    }
                    None => None,
                };
                let pk = item
                    .params
                    .get(KeyRef::constant("pk"))
                    .and_then(|v| v.as_byte_sequence().map(<[u8]>::to_vec));
                info.states.push(QuotaState {
                    name,
                    remaining,
                    reset_after,
                    partition_key: pk,
                });
                found = true;
            }
            _ => info.malformed += 1,
        }
    }
    if let Some(raw) = headers.get("ratelimit-policy") {
        match Parser::new(raw.as_bytes()).parse::<List>() {
            Ok(list) => {
                for entry in &list {
                    let ListEntry::Item(item) = entry else {
                        info.malformed += 1;
                        continue;
                    };
                    let (Some(name), Some(Ok(quota))) =
                        (item_name(&item.bare_item), param_u64(&item.params, "q"))
                    else {
                        info.malformed += 1;
                        continue;
                    };
                    let window = match param_u64(&item.params, "w") {
                        Some(Ok(w)) => Some(Duration::from_secs(w)),
                        _ => None,
                    };
                    let pk = item
                        .params
                        .get(KeyRef::constant("pk"))
                        .and_then(|v| v.as_byte_sequence().map(<[u8]>::to_vec));
                    info.policies.push(QuotaPolicy {
                        name,
                        quota,
                        window,
                        partition_key: pk,
                    });
                }
            }
            Err(_) => info.malformed += 1,
        }
    }
    if let Some(head) = info.states.iter().min_by_key(|s| s.remaining) {
        info.remaining = Some(head.remaining);
        info.reset_after = head.reset_after;
        info.limit = info
            .policies
            .iter()
            .find(|p| p.name == head.name)
            .map(|p| p.quota);
    }
    found
}

/// draft-07 dictionary.
fn draft07(headers: &HeaderMap, info: &mut RateLimitInfo) -> bool {
    let Some(raw) = headers.get("ratelimit") else {
        return false;
    };
    let Ok(dict) = Parser::new(raw.as_bytes()).parse::<Dictionary>() else {
        info.malformed += 1;
        return false;
    };
    let int = |k: &str| -> Option<u64> {
        match dict.get(KeyRef::from_str(k).ok()?)? {
            ListEntry::Item(i) => i
                .bare_item
                .as_integer()
                .and_then(|n| u64::try_from(i64::from(n)).ok()),
            ListEntry::InnerList(_) => None,
        }
    };
    let (limit, remaining, reset) = (int("limit"), int("remaining"), int("reset"));
    if limit.is_none() && remaining.is_none() {
        info.malformed += 1;
        return false;
    }
    info.limit = limit;
    info.remaining = remaining;
    info.reset_after = reset.map(Duration::from_secs);
    true
}

/// Reads one family of limit/remaining/reset fields named `prefix` + suffix.
fn fields(
    headers: &HeaderMap,
    prefix: &str,
    reference: SystemTime,
    info: &mut RateLimitInfo,
) -> bool {
    let get = |suffix: &str| {
        text(headers, &format!("{prefix}{suffix}"))
            .or_else(|| text(headers, &format!("{prefix}{suffix}-requests")))
    };
    let (limit, remaining, reset, reset_after) = (
        get("limit"),
        get("remaining"),
        get("reset"),
        get("reset-after"),
    );
    if limit.is_none() && remaining.is_none() && reset.is_none() && reset_after.is_none() {
        return false;
    }
    let mut number = |v: Option<&str>| match v.map(leading_int) {
        Some(None) => {
            info.malformed += 1;
            None
        }
        other => other.flatten(),
    };
    let limit = number(limit);
    let remaining = number(remaining);
    let reset_after = match (
        reset_after.map(decimal_secs),
        reset.map(|r| parse_reset(r, reference)),
    ) {
        (Some(Some(d)), _) => Some(d),
        (_, Some(Some(d))) => Some(d),
        (Some(None), _) | (_, Some(None)) => {
            info.malformed += 1;
            None
        }
        _ => None,
    };
    info.limit = limit;
    info.remaining = remaining;
    info.reset_after = reset_after;
    // Fields that were all malformed carry no information (they are counted, not used).
    limit.is_some() || remaining.is_some() || reset_after.is_some()
}

/// Reads every rate-limit dialect in `headers`. `now` is the local clock; absolute reset
/// values are measured against the response's `Date` header when it parses, which cancels
/// clock skew between client and server.
pub fn parse_rate_limit(headers: &HeaderMap, now: SystemTime) -> RateLimitInfo {
    let reference = text(headers, "date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or(now);
    let mut info = RateLimitInfo {
        retry_after: retry_hint(headers, now, DEFAULT_HINT_CAP).map(|h| h.delay),
        ..RateLimitInfo::default()
    };
    info.dialect = if draft11(headers, &mut info) {
        Some(Dialect::IetfDraft11)
    } else if draft07(headers, &mut info) {
        Some(Dialect::IetfDraft07)
    } else if fields(headers, "ratelimit-", reference, &mut info) {
        Some(Dialect::IetfSeparate)
    } else if fields(headers, "x-ratelimit-", reference, &mut info) {
        Some(Dialect::XRateLimit)
    } else if fields(headers, "x-rate-limit-", reference, &mut info) {
        Some(Dialect::XRateLimitDashed)
    } else if info.retry_after.is_some() {
        Some(Dialect::RetryAfterOnly)
    } else {
        None
    };
    if let (Some(limit), Some(remaining)) = (info.limit, info.remaining) {
        if remaining > limit && info.dialect != Some(Dialect::IetfDraft11) {
            // Contradictory: keep the limit, drop the remaining.
            info.remaining = None;
            info.malformed += 1;
        }
    }
    if info.policies.is_empty() {
        if let Some(quota) = info.limit {
            info.policies.push(QuotaPolicy {
                name: None,
                quota,
                window: None,
                partition_key: None,
            });
        }
    }
    info
}

#[cfg(test)]
mod tests;
