//! Hostile or merely unusual response headers: epoch units, huge resets, padding, long
//! lists, remaining above the limit.

use super::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2022-10-18T22:26:40Z.
const NOW: u64 = 1_666_132_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for &(name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        headers.append(name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
    }
    headers
}

fn read(pairs: &[(&str, &str)]) -> RateLimitInfo {
    parse_rate_limit(&map(pairs), now())
}

/// Our own server writes `r` above `q` when the burst exceeds the count: read as sent.
#[test]
fn remaining_above_the_limit_is_read_as_sent() {
    let got = read(&[
        ("ratelimit-policy", r#""free";q=20;w=10"#),
        ("ratelimit", r#""free";r=39;t=1"#),
    ]);
    assert_eq!(
        (got.limit, got.remaining, got.reset_after, got.malformed),
        (Some(20), Some(39), Some(Duration::from_secs(1)), 0)
    );
    assert_eq!(got.states.len(), 1);
    for family in ["x-ratelimit", "x-rate-limit", "ratelimit"] {
        let (limit, remaining) = (format!("{family}-limit"), format!("{family}-remaining"));
        let got = read(&[(&limit, "20"), (&remaining, "39")]);
        assert_eq!(
            (got.limit, got.remaining, got.malformed),
            (Some(20), Some(39), 0)
        );
    }
    let got = read(&[("ratelimit", "limit=20, remaining=39, reset=1")]);
    assert_eq!(
        (got.limit, got.remaining, got.malformed),
        (Some(20), Some(39), 0)
    );
}

/// Epoch microseconds and nanoseconds are told apart from milliseconds by magnitude.
#[test]
fn epoch_micros_and_nanos_are_recognized() {
    let at = |s: &str| parse_reset(s, now());
    let half = Duration::from_millis(30_500);
    assert_eq!(at("1666132030500"), Some(half), "milliseconds");
    assert_eq!(at("1666132030500000"), Some(half), "microseconds");
    assert_eq!(at("1666132030500000000"), Some(half), "nanoseconds");
    let nanos = Duration::from_nanos;
    assert_eq!(
        at("1666132030500000.9"),
        Some(half + nanos(900)),
        "fractional µs"
    );
    // Beyond what nanoseconds in a u64 can say (the year 2554): refused, not misread.
    assert_eq!(at("18446744073709551616"), None);
    assert_eq!(at("99999999999999999999"), None);
    assert_eq!(at("999999999999999999999999"), None);
}

/// A 20-digit `X-RateLimit-Reset` fits no epoch unit (as seconds it would be ~585 million
/// years): refused, not read as a wait.
#[test]
fn a_twenty_digit_reset_is_refused() {
    let got = read(&[
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "99999999999999999999"),
    ]);
    assert_eq!(
        (got.remaining, got.reset_after, got.malformed),
        (Some(0), None, 1)
    );
}

/// The fields of every dialect, each with a value it accepts and what it reads as
/// (limit, remaining, reset, retry-after).
type Reading = (Option<u64>, Option<u64>, Option<Duration>, Option<Duration>);

fn fields() -> Vec<(&'static str, &'static str, Reading)> {
    let s = Duration::from_secs;
    let reset = Some(Duration::from_millis(64_570));
    vec![
        ("x-ratelimit-limit", "5", (Some(5), None, None, None)),
        ("x-ratelimit-remaining", "5", (None, Some(5), None, None)),
        ("x-ratelimit-reset", "64.57", (None, None, reset, None)),
        ("x-ratelimit-reset", "1m4.57s", (None, None, reset, None)),
        (
            "x-ratelimit-reset",
            "1666132064.57",
            (None, None, reset, None),
        ),
        (
            "x-ratelimit-reset-after",
            "64.57",
            (None, None, reset, None),
        ),
        (
            "x-rate-limit-reset",
            "Tue, 18 Oct 2022 22:27:40 GMT",
            (None, None, Some(s(60)), None),
        ),
        (
            "x-rate-limit-reset",
            "2022-10-18T22:27:40Z",
            (None, None, Some(s(60)), None),
        ),
        ("ratelimit-limit", "5", (Some(5), None, None, None)),
        ("ratelimit-limit", "5, 5;w=60", (Some(5), None, None, None)),
        ("ratelimit-remaining", "5", (None, Some(5), None, None)),
        ("ratelimit-reset", "64.57", (None, None, reset, None)),
        (
            "ratelimit",
            "limit=5, remaining=4, reset=2",
            (Some(5), Some(4), Some(s(2)), None),
        ),
        (
            "ratelimit",
            r#""a";r=4;t=2"#,
            (None, Some(4), Some(s(2)), None),
        ),
        (
            "ratelimit-policy",
            r#""a";q=5"#,
            (Some(5), None, None, None),
        ),
        ("retry-after", "5", (None, None, None, Some(s(5)))),
        (
            "retry-after",
            "Tue, 18 Oct 2022 22:27:40 GMT",
            (None, None, None, Some(s(60))),
        ),
        (
            "retry-after-ms",
            "64.57",
            (None, None, None, Some(Duration::from_micros(64_570))),
        ),
        (
            "x-amz-retry-after",
            "5",
            (None, None, None, Some(Duration::from_millis(5))),
        ),
        (
            "grpc-retry-pushback-ms",
            "5",
            (None, None, None, Some(Duration::from_millis(5))),
        ),
    ]
}

fn reading(pairs: &[(&str, &str)]) -> (Reading, u32) {
    let got = read(pairs);
    (
        (got.limit, got.remaining, got.reset_after, got.retry_after),
        got.malformed,
    )
}

/// Optional whitespace is RFC 9110's (SP and HTAB), in every field alike; other
/// spaces (NBSP, Unicode spaces, vertical tab) are never padding.
#[test]
fn optional_whitespace_is_sp_and_htab_in_every_field() {
    for (name, value, want) in fields() {
        assert_eq!(reading(&[(name, value)]), (want, 0), "{name}: {value:?}");
        for pad in [" ", "\t", " \t ", "\t\t  "] {
            let padded = format!("{pad}{value}{pad}");
            assert_eq!(reading(&[(name, &padded)]), (want, 0), "{name}: {padded:?}");
        }
        // Refused (a malformed pushback is a valid "do not retry", not counted).
        let bad = u32::from(name != "grpc-retry-pushback-ms");
        for pad in ["\u{a0}", "\u{2003}", "\u{3000}", "\u{feff}", "\u{85}"] {
            for padded in [format!("{pad}{value}"), format!("{value}{pad}")] {
                let mut refused = (None, None, None, None);
                if name == "ratelimit-limit" && value.contains(';') && padded.ends_with(pad) {
                    // The leading integer of a limit list is read; its tail is malformed.
                    refused.0 = want.0;
                }
                let got = reading(&[(name, &padded)]);
                assert_eq!(got, (refused, bad), "{name}: {padded:?}");
            }
        }
    }
    // One field shape, padded or not, reads the same.
    assert_eq!(reading(&[("x-ratelimit-remaining", " 5 ")]).0 .1, Some(5));
    let reset = Some(Duration::from_millis(64_570));
    assert_eq!(reading(&[("x-ratelimit-reset", " 64.57 ")]).0 .2, reset);
    assert_eq!(
        reading(&[("x-ratelimit-reset-after", " 64.57 ")]).0 .2,
        reset
    );
}

/// The readers of one value accept the same padding as the fields.
#[test]
fn value_readers_trim_sp_and_htab_only() {
    let s = Duration::from_secs;
    assert_eq!(parse_reset(" \t7\t ", now()), Some(s(7)));
    assert_eq!(parse_reset("\u{a0}7", now()), None);
    assert_eq!(parse_reset("7\u{2003}", now()), None);
    assert_eq!(parse_reset("\u{b}7", now()), None);
    let ra = |v: &str| crate::headers::parse::parse_retry_after(v.as_bytes(), now());
    assert_eq!(ra(" \t7\t "), Some(s(7)));
    assert_eq!(ra("\u{a0}7"), None);
    assert_eq!(ra("\u{b}7"), None);
    assert_eq!(ra("\u{c}7"), None);
    // Dates too (`httpdate` trims every ASCII space itself: form feed, vertical tab).
    let date = "Tue, 18 Oct 2022 22:27:40 GMT";
    assert_eq!(ra(&format!(" \t{date}\t ")), Some(s(60)));
    assert_eq!(parse_reset(&format!(" {date}\t"), now()), Some(s(60)));
    for pad in ["\u{b}", "\u{c}", "\r", "\n"] {
        for padded in [format!("{pad}{date}"), format!("{date}{pad}")] {
            assert_eq!(ra(&padded), None, "{padded:?}");
            assert_eq!(parse_reset(&padded, now()), None, "{padded:?}");
        }
    }
}

/// `n` items `f(i)` joined with `", "`.
fn items(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(", ")
}

/// A list of thousands of policies and states whose names do not match: at most
/// `MAX_ITEMS` of each are kept (the rest are counted once as malformed), so that reading it
/// stays cheap, and matching them is one lookup per state.
#[test]
fn long_lists_are_capped() {
    let n = 1000;
    let got = read(&[
        ("ratelimit-policy", &items(n, |i| format!("\"p{i}\";q=10"))),
        ("ratelimit", &items(n, |i| format!("\"s{i}\";r=5"))),
    ]);
    assert_eq!(
        (got.policies.len(), got.states.len()),
        (MAX_ITEMS, MAX_ITEMS)
    );
    assert_eq!(got.malformed, 2, "one for each field cut short");
    // A state without its policy still gives the remaining count (no limit).
    assert_eq!((got.limit, got.remaining), (None, Some(5)));
    let names: Vec<_> = got
        .policies
        .iter()
        .map(|p| p.name.clone().unwrap())
        .collect();
    assert_eq!(
        names[MAX_ITEMS - 1],
        format!("p{}", MAX_ITEMS - 1),
        "the first ones"
    );
}

/// Duplicate names: the first item of a name wins, in `RateLimit-Policy` and in
/// `RateLimit` alike; every later one is dropped and counted as malformed.
#[test]
fn duplicate_names_first_wins() {
    let got = read(&[
        (
            "ratelimit-policy",
            r#""a";q=10;w=1, "b";q=3, "a";q=1;w=60, "a";q=99"#,
        ),
        ("ratelimit", r#""a";r=7;t=2, "a";r=0;t=9, "b";r=2"#),
    ]);
    let quotas: Vec<_> = got
        .policies
        .iter()
        .map(|p| (p.name.as_deref(), p.quota))
        .collect();
    assert_eq!(quotas, [(Some("a"), 10), (Some("b"), 3)]);
    let states: Vec<_> = got
        .states
        .iter()
        .map(|s| (s.name.as_deref(), s.remaining))
        .collect();
    assert_eq!(states, [(Some("a"), 7), (Some("b"), 2)]);
    assert_eq!(
        (got.limit, got.remaining, got.malformed),
        (Some(3), Some(2), 3)
    );
    // Thousands of one name: one kept, each repeat counted (saturating).
    let got = read(&[
        ("ratelimit-policy", &items(5000, |_| "\"a\";q=10".into())),
        ("ratelimit", &items(5000, |_| "\"a\";r=4".into())),
    ]);
    assert_eq!((got.policies.len(), got.states.len()), (1, 1));
    assert_eq!(
        (got.limit, got.remaining, got.malformed),
        (Some(10), Some(4), 9998)
    );
}

/// Resets are capped like retry hints (1 day by default), with the flag set.
#[test]
fn resets_are_capped_like_retry_hints() {
    let day = DEFAULT_RESET_CAP;
    assert_eq!(day, crate::headers::parse::DEFAULT_HINT_CAP);
    // The largest epoch nanoseconds (the year 2554), 31 years of delta, a huge `t`.
    for pairs in [
        &[("x-ratelimit-reset", "18446744073709551615")][..],
        &[("x-ratelimit-reset", "999999999")],
        &[("x-ratelimit-reset-after", "99999999999999999999999")],
        &[("ratelimit-reset", "86401")],
        &[("ratelimit", "limit=5, remaining=0, reset=999999999999999")],
        &[("ratelimit", r#""a";r=0;t=999999999999999, "b";r=1;t=86401"#)],
    ] {
        let got = read(pairs);
        assert_eq!(
            (got.reset_after, got.capped),
            (Some(day), true),
            "{pairs:?}"
        );
        assert!(
            got.states.iter().all(|s| s.reset_after == Some(day)),
            "{pairs:?}"
        );
    }
    let got = read(&[("ratelimit-reset", "86400"), ("retry-after", "86400")]);
    assert_eq!(
        (got.reset_after, got.retry_after, got.capped),
        (Some(day), Some(day), false)
    );
    let got = read(&[("retry-after", "86401")]);
    assert_eq!((got.retry_after, got.capped), (Some(day), true));
    // Another cap.
    let minute = Duration::from_secs(60);
    let h = map(&[("x-ratelimit-reset", "61"), ("x-ratelimit-remaining", "0")]);
    let got = parse_rate_limit_capped(&h, now(), minute);
    assert_eq!((got.reset_after, got.capped), (Some(minute), true));
    let got = parse_rate_limit_capped(&h, now(), Duration::from_secs(61));
    assert_eq!(
        (got.reset_after, got.capped),
        (Some(Duration::from_secs(61)), false)
    );
}

/// Deterministic work count: reading `n` policies and `n` states compares or looks up names
/// at most `SMALL` times per member (comparing every state with every policy would be
/// `n²`).
#[test]
fn name_work_is_linear_in_the_members() {
    for n in [10, 100, 1000, 10_000] {
        for same in [false, true] {
            let state = |i| {
                if same {
                    format!("\"p{i}\";r=5")
                } else {
                    format!("\"s{i}\";r=5")
                }
            };
            let h = map(&[
                ("ratelimit-policy", &items(n, |i| format!("\"p{i}\";q=10"))),
                ("ratelimit", &items(n, state)),
            ]);
            draft11::PROBES.with(|p| p.set(0));
            let got = parse_rate_limit(&h, now());
            let probes = draft11::PROBES.with(std::cell::Cell::get);
            assert!(
                probes <= 8 * 2 * n as u64 + MAX_ITEMS as u64,
                "{n}: {probes} probes"
            );
            assert_eq!(got.limit, same.then_some(10), "{n}");
        }
    }
}

/// Integer policies synthesized from a limit field are kept to `MAX_ITEMS` too.
#[test]
fn synthesized_policies_are_capped() {
    for field in ["x-ratelimit-limit", "ratelimit-limit", "x-rate-limit-limit"] {
        let value = format!("10, {}", items(1000, |i| format!("{i};w=60")));
        let got = read(&[(field, &value)]);
        assert_eq!(
            (got.limit, got.policies.len(), got.malformed),
            (Some(10), MAX_ITEMS, 1)
        );
    }
}
