//! The short form of a [`Quota`] (`"5/10s"`, `"25/h"`, `"20/10s burst 40"`) and of the
//! durations it is written with (`"250ms"`, `"30s"`, `"1h"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Quota, QuotaError};

/// Why a string is not a [`Quota`] in the short form (see [`Quota`]'s `FromStr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaParseError {
    /// Not of the form `count/period`, optionally followed by ` burst N`.
    Syntax,
    /// The count is not a whole number from 1 to 4294967295.
    Count,
    /// The period is not a number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`).
    Period(&'static str),
    /// The burst is not a whole number from 1 to 4294967295.
    Burst,
    /// The numbers parse, but make no valid quota.
    Invalid(QuotaError),
}

impl fmt::Display for QuotaParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORM: &str = "expected COUNT/PERIOD [burst N], e.g. \"5/10s\", \"25/h\", \
                            \"20/10s burst 40\"";
        match self {
            QuotaParseError::Syntax => write!(f, "not a quota: {FORM}"),
            QuotaParseError::Count => write!(f, "quota count must be a whole number: {FORM}"),
            QuotaParseError::Period(why) => write!(f, "quota period: {why}"),
            QuotaParseError::Burst => write!(f, "quota burst must be a whole number: {FORM}"),
            QuotaParseError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for QuotaParseError {}

impl From<QuotaError> for QuotaParseError {
    fn from(e: QuotaError) -> Self {
        QuotaParseError::Invalid(e)
    }
}

/// Reads the short form: `COUNT/PERIOD`, then optionally ` burst N`.
///
/// The period is a whole number and a unit: `ns`, `us`, `ms`, `s`, `m` (minutes), `h`,
/// `d`; a number of 1 may be left out (`"25/h"` is `"25/1h"`). Spaces around `/` and
/// between the words are allowed; nothing else may follow. The burst defaults to the
/// count. [`Display`](fmt::Display) writes the same form, so a quota reads back as itself.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::{Quota, QuotaParseError};
///
/// let q: Quota = "20/10s burst 40".parse()?;
/// assert_eq!(q, Quota::new(20, Duration::from_secs(10))?.with_burst(40)?);
/// assert_eq!(q.to_string(), "20/10s burst 40");
/// assert_eq!("25/h".parse::<Quota>()?, Quota::per_hour(25)?);
/// assert_eq!("10/500ms".parse::<Quota>()?.emission_interval(), Duration::from_millis(50));
/// assert_eq!("5/10".parse::<Quota>().unwrap_err().to_string(),
///            "quota period: a duration needs a unit (ns, us, ms, s, m, h, d), as in \"10s\"");
/// assert!(matches!("0/s".parse::<Quota>(), Err(QuotaParseError::Invalid(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl FromStr for Quota {
    type Err = QuotaParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, rest) = s.split_once('/').ok_or(QuotaParseError::Syntax)?;
        let count = whole(count.trim()).ok_or(QuotaParseError::Count)?;
        let mut words = rest.split_ascii_whitespace();
        let period = words.next().ok_or(QuotaParseError::Syntax)?;
        let period = duration(period, true).map_err(QuotaParseError::Period)?;
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => None,
            (Some("burst"), Some(n), None) => Some(whole(n).ok_or(QuotaParseError::Burst)?),
            _ => return Err(QuotaParseError::Syntax),
        };
        let quota = Quota::new(count, period)?;
        Ok(match burst {
            Some(b) => quota.with_burst(b)?,
            None => quota,
        })
    }
}

/// A count or burst: 1 to 10 decimal digits that fit a `u32` (zero is left to the
/// quota's own validation, which names it).
fn whole(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

const UNITS: [(&str, u64); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// A duration written as a whole number and a unit (`"250ms"`, `"30s"`, `"1h"`; units
/// `ns`, `us`, `ms`, `s`, `m`, `h`, `d`). The error says what is wrong.
#[cfg_attr(not(feature = "serde"), allow(dead_code))]
pub(crate) fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    duration(s.trim(), false)
}

fn duration(s: &str, number_optional: bool) -> Result<Duration, &'static str> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if unit.is_empty() {
        return Err("a duration needs a unit (ns, us, ms, s, m, h, d), as in \"10s\"");
    }
    let per_unit = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, ns)| *ns)
        .ok_or("unknown unit: use ns, us, ms, s, m, h or d, as in \"10s\"")?;
    let n = match digits {
        "" if number_optional => 1,
        "" => return Err("a duration needs a number before its unit, as in \"10s\""),
        d if d.len() > 20 => return Err("duration too long"),
        d => d.parse::<u64>().map_err(|_| "duration too long")?,
    };
    n.checked_mul(per_unit)
        .map(Duration::from_nanos)
        .ok_or("duration too long")
}

/// Writes a quota's period: the largest unit that divides it, the number left out
/// when it is 1 and the unit is at least a second (`"10s"`, `"h"`, `"500ms"`).
pub(super) fn write_period(f: &mut fmt::Formatter<'_>, period: Duration) -> fmt::Result {
    let (n, unit) = split(period);
    if n == 1 && unit.len() == 1 {
        f.write_str(unit)
    } else {
        write!(f, "{n}{unit}")
    }
}

/// Writes a duration the way [`parse_duration`] reads it (`"250ms"`, `"30s"`, `"0s"`).
#[cfg(test)]
fn write_duration(d: Duration) -> String {
    let (n, unit) = split(d);
    format!("{n}{unit}")
}

fn split(d: Duration) -> (u128, &'static str) {
    let ns = d.as_nanos();
    if ns == 0 {
        return (0, "s");
    }
    UNITS
        .iter()
        .find(|(_, per)| ns.is_multiple_of(u128::from(*per)))
        .map_or((ns, "ns"), |(name, per)| (ns / u128::from(*per), *name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Result<Quota, QuotaParseError> {
        s.parse()
    }

    #[test]
    fn short_forms() {
        let s10 = Duration::from_secs(10);
        assert_eq!(q("100/10s"), Ok(Quota::new(100, s10).unwrap()));
        assert_eq!(q("25/h"), Ok(Quota::per_hour(25).unwrap()));
        assert_eq!(q("25/1h"), Ok(Quota::per_hour(25).unwrap()));
        assert_eq!(q("1000/1m"), Ok(Quota::per_minute(1000).unwrap()));
        assert_eq!(q(" 5 / 10s "), Ok(Quota::new(5, s10).unwrap()));
        let ms = Quota::new(10, Duration::from_millis(500)).unwrap();
        assert_eq!(q("10/500ms"), Ok(ms));
        let burst = Quota::new(20, s10).unwrap().with_burst(40).unwrap();
        assert_eq!(q("20/10s burst 40"), Ok(burst));
        assert_eq!(q("20/10s  burst   40"), Ok(burst));
        assert_eq!(
            q("3/2d"),
            Quota::new(3, Duration::from_secs(2 * 86_400)).map_err(Into::into)
        );
    }

    #[test]
    fn refusals_are_typed() {
        assert_eq!(q(""), Err(QuotaParseError::Syntax));
        assert_eq!(q("5"), Err(QuotaParseError::Syntax));
        assert_eq!(q("5/"), Err(QuotaParseError::Syntax));
        assert_eq!(q("x/10s"), Err(QuotaParseError::Count));
        assert_eq!(q("-5/10s"), Err(QuotaParseError::Count));
        assert_eq!(q("99999999999/10s"), Err(QuotaParseError::Count));
        assert!(matches!(q("5/10"), Err(QuotaParseError::Period(_))));
        assert!(matches!(q("5/10x"), Err(QuotaParseError::Period(_))));
        assert!(matches!(q("5/1.5s"), Err(QuotaParseError::Period(_))));
        assert!(matches!(
            q("5/99999999999999999999999d"),
            Err(QuotaParseError::Period(_))
        ));
        assert!(matches!(
            q("5/999999999999d"),
            Err(QuotaParseError::Period(_))
        ));
        assert_eq!(q("5/10s burst"), Err(QuotaParseError::Syntax));
        assert_eq!(q("5/10s burst x"), Err(QuotaParseError::Burst));
        assert_eq!(q("5/10s burst 4 extra"), Err(QuotaParseError::Syntax));
        assert_eq!(q("5/10s bust 4"), Err(QuotaParseError::Syntax));
        assert_eq!(
            q("0/10s"),
            Err(QuotaParseError::Invalid(QuotaError::ZeroCount))
        );
        assert_eq!(
            q("5/0s"),
            Err(QuotaParseError::Invalid(QuotaError::ZeroPeriod))
        );
        assert_eq!(
            q("5/s burst 0"),
            Err(QuotaParseError::Invalid(QuotaError::ZeroBurst))
        );
        assert_eq!(
            q("5/400d"),
            Err(QuotaParseError::Invalid(QuotaError::PeriodTooLong))
        );
    }

    #[test]
    fn display_is_the_short_form() {
        let show = |s: &str| q(s).unwrap().to_string();
        assert_eq!(show("5/10s"), "5/10s");
        assert_eq!(show("25/1h"), "25/h");
        assert_eq!(show("1000/60s"), "1000/m");
        assert_eq!(show("10/500ms"), "10/500ms");
        assert_eq!(show("10/1500ms"), "10/1500ms");
        assert_eq!(show("20/10s burst 40"), "20/10s burst 40");
        assert_eq!(show("20/10s burst 20"), "20/10s");
        assert_eq!(show("1/7ns"), "1/7ns");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1h30m").is_err());
        for d in ["250ms", "30s", "1h", "0s", "7ns", "90m", "2d"] {
            assert_eq!(write_duration(parse_duration(d).unwrap()), d);
        }
    }

    proptest! {
        #[test]
        fn quotas_round_trip(count in 1u32.., period_ns in 1u64..=super::super::MAX_PERIOD.as_nanos() as u64, extra in 0u32..1000) {
            let Ok(quota) = Quota::new(count, Duration::from_nanos(period_ns)) else { return Ok(()) };
            let Ok(quota) = quota.with_burst(count.saturating_add(extra)) else { return Ok(()) };
            prop_assert_eq!(quota.to_string().parse::<Quota>(), Ok(quota));
        }

        #[test]
        fn any_string_parses_or_errs(s in "\\PC{0,40}") {
            let _ = s.parse::<Quota>();
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(ns in 0u64..) {
            let d = Duration::from_nanos(ns);
            prop_assert_eq!(parse_duration(&write_duration(d)), Ok(d));
        }
    }
}
