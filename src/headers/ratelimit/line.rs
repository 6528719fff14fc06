//! Reading one line of a plain (non-SF) rate-limit field, with a fast path for the
//! common all-ASCII-digit value that must give what the general reading gives.

use std::time::Duration;

use sfv::{List, ListEntry, Parser};

use super::{sf_secs, sf_u64, RateLimitPolicy};
use crate::headers::parse::{trim_ows, trim_ows_str};

/// A plain unsigned integer (ASCII digits only, surrounding SP and HTAB allowed).
pub(super) fn plain_u64(value: &str) -> Option<u64> {
    let value = trim_ows_str(value);
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| value.parse().ok())?
}

/// The value of a line made of ASCII digits only (no whitespace, sign or other byte):
/// `None` for any other line; `Some(None)` when the number overflows a `u64`.
pub(super) fn ascii_digits(line: &[u8]) -> Option<Option<u64>> {
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(line.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    }))
}

/// One field line, without its optional whitespace ([`trim_ows`]), read by `parse`, or by
/// `digits` when it is all ASCII digits (the common case: no UTF-8 check or splitting).
/// `digits` must give what `parse` gives for such a line (see the tests).
pub(super) fn read_line<T>(
    line: &[u8],
    parse: impl Fn(&str) -> Option<T>,
    digits: impl Fn(Option<u64>) -> Option<T>,
) -> Option<T> {
    let line = trim_ows(line);
    match ascii_digits(line) {
        Some(number) => digits(number),
        None => std::str::from_utf8(line).ok().and_then(parse),
    }
}

/// [`plain_u64`] of an all-digit line.
pub(super) fn digits_u64(number: Option<u64>) -> Option<u64> {
    number
}

/// [`parse_limit`] of an all-digit line.
pub(super) fn digits_limit(number: Option<u64>) -> Option<(u64, Option<Vec<RateLimitPolicy>>)> {
    number.map(|n| (n, Some(Vec::new())))
}

/// [`decimal`](super::decimal) of an all-digit line: whole seconds, saturating like it.
pub(super) fn digits_secs(number: Option<u64>) -> Option<Duration> {
    Some(number.map_or(Duration::MAX, Duration::from_secs))
}

/// The leading integer of a limit field, plus the policies of its Integer items carrying
/// `w` (`None` when the value has parameters but is not a valid SF List).
pub(super) fn parse_limit(value: &str) -> Option<(u64, Option<Vec<RateLimitPolicy>>)> {
    let value = trim_ows_str(value);
    let limit = plain_u64(value.split([',', ';']).next()?)?;
    if !value.contains(';') {
        return Some((limit, Some(Vec::new())));
    }
    let policy = |entry: ListEntry| match entry {
        ListEntry::Item(item) => Some(RateLimitPolicy {
            name: None,
            quota: sf_u64(&item.bare_item)?,
            window: Some(sf_secs(item.params.get("w")?)?),
            partition_key: None,
        }),
        ListEntry::InnerList(_) => None,
    };
    let list = Parser::new(value).parse::<List>().ok();
    Some((
        limit,
        // One more than is kept: the caller counts a list cut short.
        list.map(|list| {
            let policies = list.into_iter().filter_map(policy);
            policies.take(super::MAX_ITEMS + 1).collect()
        }),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::super::{decimal, parse_reset, reset};
    use super::*;

    /// Lines of every shape: digits (leading zeros, `u64` edges, overflow, epoch-like),
    /// whitespace, signs, decimals, units, lists, non-ASCII digits and spaces, empty.
    fn lines() -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = [
            "0",
            "7",
            "00",
            "0057",
            "100",
            "999999999",
            "1000000000",
            "1470173023",
            "999999999999",
            "1000000000000",
            "1700000000000",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "",
            " ",
            " 57",
            "57 ",
            "\t57\t",
            "+57",
            "-57",
            "5 7",
            "57.5",
            ".5",
            "5.",
            "1e3",
            "0x10",
            "57s",
            "6m0s",
            "100, 100;w=60",
            "100;w=60",
            "100,",
            "١٢٣",
            "57\u{a0}",
            "\u{2003}57",
            "\u{3000}",
            "５７",
            "abc",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "2026-11-23T12:00:00Z",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        out.push(vec![0xff, b'5']);
        out.push(b"5\x80".to_vec());
        for n in (0..200u64)
            .chain((0..64).map(|s| 1u64 << s))
            .chain([u64::MAX - 1])
        {
            out.push(n.to_string().into_bytes());
            out.push(format!("0{n}").into_bytes());
        }
        out
    }

    /// `read_line` with `digits` gives what the general path (`trim_ows`, `from_utf8`, then
    /// `parse`) gives, for every line.
    fn same<T: PartialEq + std::fmt::Debug>(
        parse: impl Fn(&str) -> Option<T>,
        digits: impl Fn(Option<u64>) -> Option<T>,
    ) {
        for line in lines() {
            let general = std::str::from_utf8(trim_ows(&line)).ok().and_then(&parse);
            assert_eq!(
                read_line(&line, &parse, &digits),
                general,
                "{:?}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn digit_fast_path_gives_the_general_reading() {
        same(plain_u64, digits_u64);
        same(parse_limit, digits_limit);
        same(decimal, digits_secs);
        let references = [UNIX_EPOCH, SystemTime::now()];
        for reference in references {
            same(
                |v| parse_reset(v, reference),
                |n| reset::number(digits_secs(n)?, reference),
            );
        }
    }

    #[test]
    fn only_ascii_digit_lines_take_the_fast_path() {
        assert_eq!(ascii_digits(b"0057"), Some(Some(57)));
        assert_eq!(ascii_digits(b"18446744073709551616"), Some(None));
        for line in ["", " 5", "5 ", "+5", "-5", "5.0", "١", "５"] {
            assert_eq!(ascii_digits(line.as_bytes()), None, "{line:?}");
        }
    }
}
