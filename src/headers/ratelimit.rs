//! Reading a server's remaining quota from response headers (client side), in every
//! dialect seen in the wild: IETF draft-11 (`RateLimit-Policy` / `RateLimit` lists), the
//! draft-07 `RateLimit` dictionary, the separate `RateLimit-Limit/-Remaining/-Reset` fields
//! of earlier drafts, `X-RateLimit-*` (GitHub, Discord, OpenAI) and `X-Rate-Limit-*`
//! (Twitter/X). `Retry-After` and its relatives are read through
//! [`super::parse::retry_hint`]. See [`parse_rate_limit`] and [`parse_reset`].

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use sfv::BareItem;

use super::parse::{parse_date, retry_hint, trim_ows, RetryHint, DEFAULT_HINT_CAP};
use line::{digits_limit, digits_secs, digits_u64, parse_limit, plain_u64, read_line};
pub(crate) use memo::SfMemo;
use names::{Family, Field, Fields, X_RATELIMIT, X_RATE_LIMIT};
use sf::{opt, sf_secs, sf_u64};

/// Default cap on the reset and retry-after values a reading believes: 1 day, the cap of
/// retry hints ([`DEFAULT_HINT_CAP`]).
pub const DEFAULT_RESET_CAP: Duration = DEFAULT_HINT_CAP;

/// Which header family a snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (and variants).
    XRateLimit,
    /// `X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining`, `X-Rate-Limit-Reset` (Twitter/X).
    XRateLimitDashed,
    /// IETF draft-11 `RateLimit-Policy` and `RateLimit` Structured Field Lists.
    IetfDraft11,
    /// IETF draft-07 `RateLimit: limit=.., remaining=.., reset=..` dictionary.
    IetfDraft07,
    /// IETF drafts up to 06: separate `RateLimit-Limit`, `-Remaining`, `-Reset` fields.
    IetfSeparate,
    /// Only `Retry-After` (or one of its millisecond relatives) was present.
    RetryAfterOnly,
}

/// One policy a server announced: an item of the IETF draft-11 `RateLimit-Policy` field (the
/// draft calls it a quota policy), or one synthesized from an older dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// The policy's name; `None` for policies synthesized from Integer items.
    pub name: Option<String>,
    /// The quota (`q`, or the Integer item itself).
    pub quota: u64,
    /// The window (`w`), when given.
    pub window: Option<Duration>,
    /// The partition key (`pk`), when given.
    pub partition_key: Option<Vec<u8>>,
}

/// What remains of one policy: an item of the IETF draft-11 `RateLimit` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitState {
    /// The name of the policy this state belongs to.
    pub name: Option<String>,
    /// Remaining quota units (`r`).
    pub remaining: u64,
    /// Time until the quota resets (`t`), when given.
    pub reset_after: Option<Duration>,
    /// The partition key (`pk`), when given.
    pub partition_key: Option<Vec<u8>>,
}

/// Everything a response says about rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimitInfo {
    /// The dialect that supplied the headline values (`None` when nothing was found).
    pub dialect: Option<Dialect>,
    /// The headline limit: for draft-11 the quota of the policy with the lowest remaining.
    pub limit: Option<u64>,
    /// The headline remaining count: for draft-11 the lowest remaining of all policies.
    pub remaining: Option<u64>,
    /// The headline time until reset: for draft-11 that of the policy with the lowest
    /// remaining. At most the reading's cap ([`DEFAULT_RESET_CAP`] unless given).
    pub reset_after: Option<Duration>,
    /// From Retry-After / retry-after-ms (via [`super::parse::retry_hint`], capped at the
    /// reading's cap). When present it takes precedence: `available_after()` returns
    /// it, and remaining is treated as 0 by `available_after`.
    pub retry_after: Option<Duration>,
    /// Policies of the winning dialect (draft-11 items, or synthesized from Integer items
    /// carrying `w`, e.g. `RateLimit-Policy: 100;w=60` or `X-RateLimit-Limit: 100, 100;w=60`).
    pub policies: Vec<RateLimitPolicy>,
    /// Per-policy states (draft-11 `RateLimit` items).
    pub states: Vec<RateLimitState>,
    /// Every limit dimension of the winning dialect (see [`Dimension`]): one per draft-11
    /// state (or policy, without states), one per legacy suffixed family
    /// (`x-ratelimit-remaining-tokens`), else the single unsuffixed reading named `""`. At
    /// most [`MAX_DIMENSIONS`]. With two or more, the headline (`limit`, `remaining`,
    /// `reset_after`) is the most restrictive: an exhausted one (`remaining` 0; of several,
    /// the longest reset), else the lowest remaining/limit fraction (ties: the longer
    /// reset). A draft-11 reading with more states than [`MAX_DIMENSIONS`] keeps its
    /// lowest-remaining headline.
    pub dimensions: Vec<Dimension>,
    /// Count of malformed fields or members that were ignored (e.g. unparsable numbers, an
    /// SF list that does not parse, a RateLimit item missing `r`, a repeated policy name, a
    /// list cut at [`MAX_ITEMS`]).
    pub malformed: u32,
    /// `true` when a reset or retry-after value (the headline's, or a state's) was longer
    /// than the cap of the reading, and was read as the cap.
    pub capped: bool,
}

impl RateLimitInfo {
    /// When the client may send again without expecting a refusal: `retry_after` if present;
    /// else `reset_after` if `remaining == Some(0)` (so `None` when the reset is unknown);
    /// else [`Duration::ZERO`]; `None` when nothing is known ([`is_empty`](Self::is_empty)).
    pub fn available_after(&self) -> Option<Duration> {
        if let Some(delay) = self.retry_after {
            return Some(delay);
        }
        match self.remaining {
            Some(0) => self.reset_after,
            _ if self.is_empty() => None,
            _ => Some(Duration::ZERO),
        }
    }

    /// `true` when no rate-limit information was found at all (a non-zero `malformed`
    /// count alone does not count as information).
    pub fn is_empty(&self) -> bool {
        // Equal to the default reading apart from the malformed count, field by field
        // (every field named: a new one must be added here).
        let RateLimitInfo {
            dialect,
            limit,
            remaining,
            reset_after,
            retry_after,
            policies,
            states,
            dimensions,
            malformed: _,
            capped: _,
        } = self;
        dialect.is_none()
            && limit.is_none()
            && remaining.is_none()
            && reset_after.is_none()
            && retry_after.is_none()
            && policies.is_empty()
            && states.is_empty()
            && dimensions.is_empty()
    }
}

/// Parses every dialect present; `now` is the local clock (used for absolute reset values
/// unless the response has a parsable `Date` header, which is then the reference,
/// cancelling clock skew). Precedence when several dialects are present:
/// draft-11 > draft-07 > separate IETF > X-RateLimit > X-Rate-Limit. Never panics;
/// malformed fields of every dialect (winning or not) are skipped and counted.
///
/// - X-RateLimit / X-Rate-Limit: `-Limit` (else `-Limit-Requests`) gives its leading integer
///   (`100, 100;w=60` → 100; Integer items with `w` become policies); `-Remaining` (else
///   `-Remaining-Requests`); reset from `-Reset-After` (delta seconds), else `-Reset`, else
///   `-Reset-Requests` (both via [`parse_reset`]).
/// - Draft-11: states match policies by name; the headline is the state with the lowest
///   remaining (ties: the longest reset) and its policy's `q`. Without states, a lone policy
///   still gives the limit. A state whose `r` exceeds its policy's `q` is read as sent (a
///   burst larger than the quota). **Duplicate names: the first wins**, in
///   `RateLimit-Policy` and in `RateLimit` alike; each later member of a name already seen
///   is dropped and counted as malformed. At most [`MAX_ITEMS`] policies and states are
///   kept per field (the rest dropped, counted once).
/// - Draft-07 / separate fields: resets are delta seconds. Integer `RateLimit-Policy` items
///   join the draft-07 reading, or the separate one when only that is present.
/// - A remaining above its limit is read as sent, in every dialect. An unparsable
///   `Retry-After` (or `retry-after-ms` / `x-amz-retry-after`) is counted as malformed
///   when no retry hint could be read.
/// - Every field line is read without its optional whitespace (SP and HTAB, RFC 9110
///   §5.6.3), and only that: NBSP or any other space makes the value malformed.
/// - Resets and the retry-after are capped at [`DEFAULT_RESET_CAP`] (1 day) with
///   [`RateLimitInfo::capped`] set, like retry hints: see [`parse_rate_limit_capped`].
///
/// The reading is linear in the size of the headers, whatever they hold.
pub fn parse_rate_limit(headers: &HeaderMap, now: SystemTime) -> RateLimitInfo {
    parse_rate_limit_capped(headers, now, DEFAULT_RESET_CAP)
}

/// [`parse_rate_limit`] with another cap on resets and retry-after: a longer value
/// (the headline's, a state's, or the retry hint's) reads as `cap`, and sets
/// [`RateLimitInfo::capped`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_throttle::headers::parse_rate_limit_capped;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-ratelimit-remaining", "0".parse()?);
/// headers.insert("x-ratelimit-reset", "86400".parse()?);
/// let info = parse_rate_limit_capped(&headers, SystemTime::now(), Duration::from_secs(60));
/// assert_eq!(info.reset_after, Some(Duration::from_secs(60)));
/// assert!(info.capped);
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
pub fn parse_rate_limit_capped(
    headers: &HeaderMap,
    now: SystemTime,
    cap: Duration,
) -> RateLimitInfo {
    parse_rate_limit_at(headers, || now, None, cap)
        .map_or_else(RateLimitInfo::default, |(info, _)| info)
}

/// [`parse_rate_limit`] (`None` for a response without any rate-limit field, which reads
/// as the default), reading the clock only for a response with rate-limit fields, and
/// reusing the readings `memo` remembers of Structured Field texts seen before (the same
/// reading: see [`SfMemo`]; taken with `try_lock`, so a reading made while another holds
/// it parses). The memo comes back still locked, if it was taken, for the caller to give
/// it vectors ([`SfMemo::recycle`]) without locking it again.
pub(crate) fn parse_rate_limit_at<'m>(
    headers: &HeaderMap,
    now: impl FnOnce() -> SystemTime,
    memo: Option<&'m Mutex<SfMemo>>,
    cap: Duration,
) -> Option<(RateLimitInfo, Option<MutexGuard<'m, SfMemo>>)> {
    let fields = Fields::read(headers);
    let legacy = dims::Legacy::scan(headers);
    if fields.is_empty() && legacy.is_empty() {
        return None;
    }
    let mut memo = memo.and_then(|m| m.try_lock().ok());
    let now = now();
    let mut cx = Ctx {
        fields,
        now,
        malformed: 0,
    };
    let ietf = cx.ietf(memo.as_deref_mut());
    let x = cx.x_family(&X_RATELIMIT);
    let x_dashed = cx.x_family(&X_RATE_LIMIT);
    let suffixed = if legacy.is_empty() {
        Vec::new()
    } else {
        let reference = cx.reference();
        legacy.read(reference, &mut cx.malformed)
    };
    let hint = cx.retry_reading(headers, cap);
    // The first non-empty reading in precedence order (the others are dropped unmoved).
    let (dialect, mut info) = if let Some((dialect, info)) = ietf {
        (Some(dialect), info)
    } else if !x.is_empty() || !suffixed.is_empty() {
        (Some(Dialect::XRateLimit), x)
    } else if !x_dashed.is_empty() {
        (Some(Dialect::XRateLimitDashed), x_dashed)
    } else {
        (None, RateLimitInfo::default())
    };
    let complete = info.states.len() <= MAX_DIMENSIONS;
    info.dimensions = match dialect {
        Some(Dialect::IetfDraft11) => dims::from_ietf(&info.policies, &info.states),
        Some(Dialect::XRateLimit) if !suffixed.is_empty() => suffixed,
        Some(_) => dims::headline(&info),
        None => Vec::new(),
    };
    let retry_after = hint.map(|hint| hint.delay);
    info.dialect = dialect.or(retry_after.map(|_| Dialect::RetryAfterOnly));
    info.retry_after = retry_after;
    info.malformed = cx.malformed;
    info.capped = hint.is_some_and(|h| h.capped);
    cap_resets(&mut info, cap);
    dims::set_headline(&mut info, complete);
    Some((info, memo))
}

/// Caps the headline's reset, every state's and every dimension's at `cap`, setting
/// `capped` when one was longer.
fn cap_resets(info: &mut RateLimitInfo, cap: Duration) {
    let resets = info.states.iter_mut().map(|s| &mut s.reset_after);
    let dims = info.dimensions.iter_mut().map(|d| &mut d.reset_after);
    for reset in std::iter::once(&mut info.reset_after)
        .chain(resets)
        .chain(dims)
    {
        if let Some(value) = reset.as_mut().filter(|v| **v > cap) {
            *value = cap;
            info.capped = true;
        }
    }
}

/// Parsing state shared by the dialects: the fields, the local clock and the count of
/// ignored fields.
struct Ctx<'a> {
    fields: Fields<'a>,
    now: SystemTime,
    malformed: u32,
}

impl<'a> Ctx<'a> {
    /// The first non-empty of the three IETF readings, in precedence order: draft-11
    /// (`RateLimit-Policy` and `RateLimit` lists), draft-07 (the `RateLimit` dictionary) and
    /// the separate fields. All three are read (each counts its malformed fields). Integer
    /// `RateLimit-Policy` items join the draft-07 reading, or the separate one when only
    /// that is present. Only the chosen reading is returned: returning all three would copy
    /// the two dropped ones too.
    fn ietf(&mut self, mut memo: Option<&mut SfMemo>) -> Option<(Dialect, RateLimitInfo)> {
        let policy_slot = memo.as_deref_mut().map(SfMemo::policy);
        let (named, numbered) = self
            .sf_field(names::RATELIMIT_POLICY, policy_slot, Ctx::policy_field)
            .unwrap_or_default();
        let ratelimit_slot = memo.map(SfMemo::ratelimit);
        let (states, mut draft07) = self
            .sf_field(names::RATELIMIT, ratelimit_slot, Ctx::ratelimit_field)
            .unwrap_or_default();
        let draft11 = Ctx::draft11(named, states);
        let mut separate = self.separate();
        let owner = if draft07.is_empty() && !separate.is_empty() {
            &mut separate
        } else {
            &mut draft07
        };
        owner.policies.extend(numbered);
        if !draft11.is_empty() {
            Some((Dialect::IetfDraft11, draft11))
        } else if !draft07.is_empty() {
            Some((Dialect::IetfDraft07, draft07))
        } else if !separate.is_empty() {
            Some((Dialect::IetfSeparate, separate))
        } else {
            None
        }
    }

    /// The retry hint, looked for only when a retry field is present. An unreadable
    /// `Retry-After`, `retry-after-ms` or `x-amz-retry-after` is counted as malformed when
    /// no hint could be read; `grpc-retry-pushback-ms` is not (a negative value is a valid
    /// "do not retry").
    fn retry_reading(&mut self, headers: &HeaderMap, cap: Duration) -> Option<RetryHint> {
        let [retry_after, retry_after_ms, amz, _grpc] = names::RETRY_FIELDS;
        let has = |field: &Field| self.fields.has(*field);
        let hint = names::RETRY_FIELDS.iter().any(has);
        let hint = hint.then(|| retry_hint(headers, self.now, cap)).flatten();
        if hint.is_none() && [retry_after, retry_after_ms, amz].iter().any(has) {
            self.bad();
        }
        hint
    }

    /// Counts one ignored field.
    fn bad(&mut self) {
        self.count(1);
    }

    /// Counts `n` ignored fields or members.
    fn count(&mut self, n: u32) {
        self.malformed = self.malformed.saturating_add(n);
    }

    /// The first line of `name` that `parse` accepts (see [`read_line`] for `digits`);
    /// one malformed when the field is present but no line parses.
    fn field<T>(
        &mut self,
        field: Field,
        parse: impl Fn(&str) -> Option<T>,
        digits: impl Fn(Option<u64>) -> Option<T>,
    ) -> Option<T> {
        if !self.fields.has(field) {
            return None;
        }
        let mut lines = self.fields.lines(field);
        let parsed = lines.find_map(|v| read_line(v.as_bytes(), &parse, &digits));
        if parsed.is_none() {
            self.bad();
        }
        parsed
    }

    /// The first of `names` that [`Ctx::field`] reads.
    fn first<T>(
        &mut self,
        fields: &[Field],
        parse: impl Fn(&str) -> Option<T>,
        digits: impl Fn(Option<u64>) -> Option<T>,
    ) -> Option<T> {
        fields
            .iter()
            .find_map(|&field| self.field(field, &parse, &digits))
    }

    /// The text of an SF field: its lines without their optional whitespace, joined with
    /// `", "` (RFC 9651 §4.2), borrowed when there is one line; `None` when absent.
    fn sf_input(&self, field: Field) -> Option<Cow<'a, [u8]>> {
        let mut lines = self.fields.lines(field).map(|v| trim_ows(v.as_bytes()));
        let first = lines.next()?;
        let Some(second) = lines.next() else {
            return Some(Cow::Borrowed(first));
        };
        let mut joined = first.to_vec();
        for line in std::iter::once(second).chain(lines) {
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(line);
        }
        Some(Cow::Owned(joined))
    }

    /// The reference for absolute resets: the response's `Date` when it parses (cancelling
    /// clock skew), else the local clock.
    fn reference(&self) -> SystemTime {
        let date = self
            .fields
            .lines(names::DATE)
            .find_map(|v| parse_date(v.as_bytes()));
        date.unwrap_or(self.now)
    }

    /// [`opt`], counting into this reading.
    fn opt<T>(&mut self, value: Option<&BareItem>, f: fn(&BareItem) -> Option<T>) -> Option<T> {
        let mut bad = 0;
        let parsed = opt(&mut bad, value, f);
        self.malformed = self.malformed.saturating_add(bad);
        parsed
    }

    /// A limit field with its synthesized policies, counting an unparsable SF tail.
    /// At most [`MAX_ITEMS`] policies are kept (a longer list is counted once).
    fn limit_field(&mut self, field: Field, info: &mut RateLimitInfo) {
        if let Some((limit, policies)) = self.field(field, parse_limit, digits_limit) {
            info.limit = Some(limit);
            match policies {
                Some(mut policies) => {
                    if policies.len() > MAX_ITEMS {
                        policies.truncate(MAX_ITEMS);
                        self.bad();
                    }
                    info.policies.extend(policies);
                }
                None => self.bad(),
            }
        }
    }

    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (delta seconds).
    fn separate(&mut self) -> RateLimitInfo {
        let mut info = RateLimitInfo::default();
        self.limit_field(names::RATELIMIT_LIMIT, &mut info);
        info.remaining = self.field(names::RATELIMIT_REMAINING, plain_u64, digits_u64);
        info.reset_after = self.field(names::RATELIMIT_RESET, decimal, digits_secs);
        info
    }

    /// One family's `-limit`, `-remaining`, `-reset-after`/`-reset` (and `-requests`
    /// variants).
    fn x_family(&mut self, names: &Family) -> RateLimitInfo {
        let mut info = RateLimitInfo::default();
        if !names.all().iter().any(|&field| self.fields.has(field)) {
            // Absent: nothing to read or count (and no `Date` to look up).
            return info;
        }
        self.limit_field(names.limit, &mut info);
        if info.limit.is_none() {
            self.limit_field(names.limit_requests, &mut info);
        }
        let remaining = [names.remaining, names.remaining_requests];
        info.remaining = self.first(&remaining, plain_u64, digits_u64);
        let resets = [names.reset, names.reset_requests];
        info.reset_after = self
            .field(names.reset_after, decimal, digits_secs)
            .or_else(|| {
                // The Date header is read only for a reset field that may be absolute.
                let reference = self.reference();
                self.first(
                    &resets,
                    |v| parse_reset(v, reference),
                    |n| reset::number(digits_secs(n)?, reference),
                )
            });
        info
    }
}

#[path = "ratelimit/dims.rs"]
mod dims;
#[path = "ratelimit/draft11.rs"]
mod draft11;
#[path = "ratelimit/line.rs"]
mod line;
#[path = "ratelimit/memo.rs"]
mod memo;
#[path = "ratelimit/names.rs"]
mod names;
#[path = "ratelimit/reset.rs"]
mod reset;
#[path = "ratelimit/sf.rs"]
mod sf;

pub use dims::{Dimension, MAX_DIMENSIONS};
pub use draft11::MAX_ITEMS;
use reset::decimal;
pub use reset::parse_reset;

#[cfg(test)]
#[path = "ratelimit/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "ratelimit/hostile_tests.rs"]
mod hostile_tests;
