//! Limit dimensions: one (name, limit, remaining, reset) per limit family a response
//! carries (requests and tokens, say), and the rule that picks the most restrictive one
//! as the headline of a [`RateLimitInfo`].
//!
//! Legacy suffixed families (`x-ratelimit-limit-tokens`, `x-ratelimit-remaining-tokens`,
//! `x-ratelimit-reset-tokens`, as OpenAI sends them) are found in one pass over the header
//! map; at most [`MAX_DIMENSIONS`] distinct suffixes are kept, each new name compared with
//! at most that many kept ones, so hostile headers cost linear time.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use super::line::{digits_secs, digits_u64, plain_u64, read_line};
use super::reset::{number, parse_reset};
use super::{RateLimitInfo, RateLimitPolicy, RateLimitState};

/// The most dimensions a reading keeps: legacy suffixes beyond it are dropped (and counted
/// once in [`RateLimitInfo::malformed`]); IETF states (or policies) beyond it are not
/// listed as dimensions.
pub const MAX_DIMENSIONS: usize = 8;

/// One limit dimension of a response: a named family of limit, remaining and reset.
///
/// Named by the IETF draft-11 policy (`"requests"` for `RateLimit: "requests";r=9`), by
/// the suffix of a legacy family (`"tokens"` for `x-ratelimit-remaining-tokens`), or `""`
/// for the single unsuffixed reading of any other dialect (`X-RateLimit-Remaining`,
/// draft-07, the separate IETF fields).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_throttle::headers::parse_rate_limit;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-ratelimit-limit-requests", "10000".parse()?);
/// headers.insert("x-ratelimit-remaining-requests", "9000".parse()?);
/// headers.insert("x-ratelimit-limit-tokens", "1000000".parse()?);
/// headers.insert("x-ratelimit-remaining-tokens", "500".parse()?);
/// headers.insert("x-ratelimit-reset-tokens", "6m0s".parse()?);
/// let info = parse_rate_limit(&headers, SystemTime::now());
/// let names: Vec<&str> = info.dimensions.iter().map(|d| d.name.as_str()).collect();
/// assert_eq!(names, ["requests", "tokens"]);
/// // The headline is the most restrictive dimension: tokens (500 of 1000000 left).
/// assert_eq!((info.limit, info.remaining), (Some(1_000_000), Some(500)));
/// assert_eq!(info.reset_after, Some(Duration::from_secs(360)));
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dimension {
    /// The policy name, the legacy suffix, or `""` (see [`Dimension`]).
    pub name: String,
    /// The quota of this dimension, when given.
    pub limit: Option<u64>,
    /// What is left of it, when given.
    pub remaining: Option<u64>,
    /// Time until it resets, when given (capped like every reset of the reading).
    pub reset_after: Option<Duration>,
}

impl Dimension {
    fn named(name: &str) -> Dimension {
        Dimension {
            name: name.to_owned(),
            limit: None,
            remaining: None,
            reset_after: None,
        }
    }

    /// `true` when nothing is known of this dimension.
    fn is_blank(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset_after.is_none()
    }
}

/// How restrictive `a` is compared with `b` (`Greater`: `a` is more restrictive).
/// Exhausted (`remaining == 0`) first, the longer reset winning; then the lower
/// remaining/limit fraction (a dimension without a limit, or with a zero limit, compares
/// by its remaining against a limit of 1 — a known remaining is read as a fraction of
/// nothing larger); a dimension without remaining is the least restrictive; ties: the
/// longer reset.
fn restrictiveness(a: &Dimension, b: &Dimension) -> Ordering {
    let exhausted = |d: &Dimension| d.remaining == Some(0);
    let by_reset = a.reset_after.cmp(&b.reset_after);
    match (exhausted(a), exhausted(b)) {
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (true, true) => return by_reset,
        (false, false) => {}
    }
    let fraction = |d: &Dimension| d.remaining.map(|r| (r, d.limit.unwrap_or(1).max(1)));
    let by_fraction = match (fraction(a), fraction(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        // ra/la < rb/lb ⟺ ra·lb < rb·la (exact in u128): lower fraction, more restrictive.
        (Some((ra, la)), Some((rb, lb))) => {
            (u128::from(rb) * u128::from(la)).cmp(&(u128::from(ra) * u128::from(lb)))
        }
    };
    by_fraction.then(by_reset)
}

/// The most restrictive dimension (the first of equals).
pub(super) fn most_restrictive(dimensions: &[Dimension]) -> Option<&Dimension> {
    dimensions.iter().reduce(|best, d| {
        if restrictiveness(d, best) == Ordering::Greater {
            d
        } else {
            best
        }
    })
}

/// Which field of a legacy family a header name is.
#[derive(Clone, Copy)]
enum Kind {
    Limit,
    Remaining,
    Reset,
}

/// `x-ratelimit-{limit,remaining,reset}-SUFFIX` → (kind, suffix); `SUFFIX` non-empty, of
/// `[a-z0-9_-]`; `x-ratelimit-reset-after` (delta seconds of the unsuffixed family) is not
/// a suffix.
fn suffixed(name: &str) -> Option<(Kind, &str)> {
    let rest = name.strip_prefix("x-ratelimit-")?;
    let (kind, suffix) = if let Some(s) = rest.strip_prefix("limit-") {
        (Kind::Limit, s)
    } else if let Some(s) = rest.strip_prefix("remaining-") {
        (Kind::Remaining, s)
    } else if let Some(s) = rest.strip_prefix("reset-") {
        (Kind::Reset, s)
    } else {
        return None;
    };
    let valid = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    let ok = !suffix.is_empty() && suffix.bytes().all(valid);
    (ok && !matches!((kind, suffix), (Kind::Reset, "after"))).then_some((kind, suffix))
}

/// The lines of one legacy suffixed family: the first line of each field.
struct Raw<'a> {
    suffix: &'a str,
    fields: [Option<&'a HeaderValue>; 3],
}

/// Suffixed legacy families found in one pass over `headers`, in order of first
/// appearance, values unread; `true` when more than [`MAX_DIMENSIONS`] suffixes were
/// seen (the rest dropped).
pub(super) struct Legacy<'a> {
    families: Vec<Raw<'a>>,
    cut: bool,
}

impl<'a> Legacy<'a> {
    pub(super) fn scan(headers: &'a HeaderMap) -> Legacy<'a> {
        let mut legacy = Legacy {
            families: Vec::new(),
            cut: false,
        };
        for (name, value) in headers {
            let Some((kind, suffix)) = suffixed(name.as_str()) else {
                continue;
            };
            let at = match legacy.families.iter().position(|f| f.suffix == suffix) {
                Some(at) => at,
                None if legacy.families.len() == MAX_DIMENSIONS => {
                    legacy.cut = true;
                    continue;
                }
                None => {
                    legacy.families.push(Raw {
                        suffix,
                        fields: [None; 3],
                    });
                    legacy.families.len() - 1
                }
            };
            legacy.families[at].fields[kind as usize].get_or_insert(value);
        }
        legacy
    }

    pub(super) fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// The dimensions, reading resets against `reference` (absolute ones via
    /// [`parse_reset`]); adds to `bad` one per unreadable value, and one for a cut.
    pub(super) fn read(self, reference: SystemTime, bad: &mut u32) -> Vec<Dimension> {
        let mut count = |ok: bool| {
            if !ok {
                *bad = bad.saturating_add(1);
            }
        };
        count(!self.cut);
        let mut dimensions = Vec::with_capacity(self.families.len());
        for raw in self.families {
            // The `-requests` fields are counted by the X-RateLimit reading already.
            let counted = raw.suffix != "requests";
            let mut count = |ok: bool| count(ok || !counted);
            let mut d = Dimension::named(raw.suffix);
            let [limit, remaining, reset] = raw.fields.map(|v| v.map(HeaderValue::as_bytes));
            let int = |line: &[u8]| read_line(line, plain_u64, digits_u64);
            let secs = |line: &[u8]| {
                let n = |n| number(digits_secs(n)?, reference);
                read_line(line, |v| parse_reset(v, reference), n)
            };
            if let Some(line) = limit {
                d.limit = int(line);
                count(d.limit.is_some());
            }
            if let Some(line) = remaining {
                d.remaining = int(line);
                count(d.remaining.is_some());
            }
            if let Some(line) = reset {
                d.reset_after = secs(line);
                count(d.reset_after.is_some());
            }
            dimensions.push(d);
        }
        dimensions
    }
}

/// The dimensions of a draft-11 reading: one per state (the first [`MAX_DIMENSIONS`]),
/// with its policy's quota; without states, one per policy (limit only).
pub(super) fn from_ietf(policies: &[RateLimitPolicy], states: &[RateLimitState]) -> Vec<Dimension> {
    if states.is_empty() {
        let policies = policies.iter().take(MAX_DIMENSIONS);
        return policies
            .map(|p| Dimension {
                limit: Some(p.quota),
                ..Dimension::named(p.name.as_deref().unwrap_or(""))
            })
            .collect();
    }
    let states = states.iter().take(MAX_DIMENSIONS);
    states
        .map(|s| {
            let name = s.name.as_deref().unwrap_or("");
            // At most MAX_DIMENSIONS × MAX_ITEMS comparisons in all.
            let quota = policies.iter().find(|p| p.name.as_deref() == Some(name));
            Dimension {
                limit: quota.map(|p| p.quota),
                remaining: Some(s.remaining),
                reset_after: s.reset_after,
                ..Dimension::named(name)
            }
        })
        .collect()
}

/// The single unsuffixed dimension `""` of a headline reading (none when it is blank).
pub(super) fn headline(info: &RateLimitInfo) -> Vec<Dimension> {
    let d = Dimension {
        limit: info.limit,
        remaining: info.remaining,
        reset_after: info.reset_after,
        ..Dimension::named("")
    };
    if d.is_blank() {
        Vec::new()
    } else {
        vec![d]
    }
}

/// Sets the headline of `info` to its most restrictive dimension when it has two or more
/// and one of them says what remains (and `complete`: every state became a dimension), or
/// when it has one and the dialect's own headline read nothing (a response with only
/// `x-ratelimit-*-tokens`, say). Otherwise the dialect's headline stays as read.
pub(super) fn set_headline(info: &mut RateLimitInfo, complete: bool) {
    let blank = info.limit.is_none() && info.remaining.is_none() && info.reset_after.is_none();
    let several = info.dimensions.len() >= 2
        && complete
        && info.dimensions.iter().any(|d| d.remaining.is_some());
    if !(several || (blank && info.dimensions.len() == 1)) {
        return;
    }
    if let Some(head) = most_restrictive(&info.dimensions) {
        let (limit, remaining, reset) = (head.limit, head.remaining, head.reset_after);
        info.limit = limit;
        info.remaining = remaining;
        info.reset_after = reset;
    }
}
