use super::*;

/// 2022-10-18T22:26:40Z, a moment GitHub's documented reset values are relative to.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_666_132_000)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

struct Case {
    api: &'static str,
    headers: &'static [(&'static str, &'static str)],
    dialect: Option<Dialect>,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_after: Option<Duration>,
    malformed: u32,
}

#[test]
fn real_values_from_public_apis() {
    let cases = [
        Case {
            api: "GitHub: epoch seconds",
            headers: &[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "4999"),
                ("x-ratelimit-reset", "1666132381"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: Some(5000),
            remaining: Some(4999),
            reset_after: Some(secs(381.0)),
            malformed: 0,
        },
        Case {
            api: "Discord: epoch seconds with decimals, Reset-After preferred",
            headers: &[
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1666132064.57"),
                ("x-ratelimit-reset-after", "64.57"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: Some(5),
            remaining: Some(0),
            reset_after: Some(Duration::from_millis(64_570)),
            malformed: 0,
        },
        Case {
            api: "Discord: epoch seconds with decimals alone",
            headers: &[
                ("x-ratelimit-remaining", "1"),
                ("x-ratelimit-reset", "1666132064.5"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: None,
            remaining: Some(1),
            reset_after: Some(Duration::from_millis(64_500)),
            malformed: 0,
        },
        Case {
            api: "OpenAI: -requests suffix, Go durations",
            headers: &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "59"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: Some(60),
            remaining: Some(59),
            reset_after: Some(secs(1.0)),
            malformed: 0,
        },
        Case {
            api: "Twitter/X: dashed spelling, epoch seconds",
            headers: &[
                ("x-rate-limit-limit", "900"),
                ("x-rate-limit-remaining", "899"),
                ("x-rate-limit-reset", "1666132900"),
            ],
            dialect: Some(Dialect::XRateLimitDashed),
            limit: Some(900),
            remaining: Some(899),
            reset_after: Some(secs(900.0)),
            malformed: 0,
        },
        Case {
            api: "Clerk guide: seconds until reset",
            headers: &[
                ("x-ratelimit-limit", "100"),
                ("x-ratelimit-remaining", "9"),
                ("x-ratelimit-reset", "10"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: Some(100),
            remaining: Some(9),
            reset_after: Some(secs(10.0)),
            malformed: 0,
        },
        Case {
            api: "epoch milliseconds",
            headers: &[
                ("x-ratelimit-remaining", "3"),
                ("x-ratelimit-reset", "1666132012500"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: None,
            remaining: Some(3),
            reset_after: Some(Duration::from_millis(12_500)),
            malformed: 0,
        },
        Case {
            api: "RFC 3339 with offset and fraction",
            headers: &[
                ("x-ratelimit-remaining", "3"),
                ("x-ratelimit-reset", "2022-10-19T00:27:00.25+02:00"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: None,
            remaining: Some(3),
            reset_after: Some(Duration::from_millis(20_250)),
            malformed: 0,
        },
        Case {
            api: "HTTP-date against the Date header",
            headers: &[
                ("date", "Tue, 18 Oct 2022 22:00:00 GMT"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "Tue, 18 Oct 2022 22:01:30 GMT"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: None,
            remaining: Some(0),
            reset_after: Some(secs(90.0)),
            malformed: 0,
        },
        Case {
            api: "limit with a policy suffix",
            headers: &[
                ("x-ratelimit-limit", "100, 100;w=60"),
                ("x-ratelimit-remaining", "99"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: Some(100),
            remaining: Some(99),
            reset_after: None,
            malformed: 0,
        },
        Case {
            api: "IETF draft-11, two policies: the fewest remaining is the headline",
            headers: &[
                (
                    "ratelimit-policy",
                    r#""burst";q=100;w=60, "daily";q=1000;w=86400"#,
                ),
                ("ratelimit", r#""burst";r=50;t=30, "daily";r=5;t=3600"#),
            ],
            dialect: Some(Dialect::IetfDraft11),
            limit: Some(1000),
            remaining: Some(5),
            reset_after: Some(secs(3600.0)),
            malformed: 0,
        },
        Case {
            api: "IETF draft-07 dictionary",
            headers: &[
                ("ratelimit", "limit=100, remaining=50, reset=30"),
                ("ratelimit-policy", "100;w=60"),
            ],
            dialect: Some(Dialect::IetfDraft07),
            limit: Some(100),
            remaining: Some(50),
            reset_after: Some(secs(30.0)),
            malformed: 0,
        },
        Case {
            api: "IETF separate fields (<= draft-06)",
            headers: &[
                ("ratelimit-limit", "10"),
                ("ratelimit-remaining", "2"),
                ("ratelimit-reset", "7"),
            ],
            dialect: Some(Dialect::IetfSeparate),
            limit: Some(10),
            remaining: Some(2),
            reset_after: Some(secs(7.0)),
            malformed: 0,
        },
        Case {
            api: "malformed remaining",
            headers: &[
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "abc"),
            ],
            dialect: Some(Dialect::XRateLimit),
            limit: Some(10),
            remaining: None,
            reset_after: None,
            malformed: 1,
        },
        Case {
            api: "contradictory: remaining above limit",
            headers: &[("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "11")],
            dialect: Some(Dialect::XRateLimit),
            limit: Some(10),
            remaining: None,
            reset_after: None,
            malformed: 1,
        },
        Case {
            api: "negative reset",
            headers: &[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "-5")],
            dialect: Some(Dialect::XRateLimit),
            limit: None,
            remaining: Some(1),
            reset_after: None,
            malformed: 1,
        },
        Case {
            api: "nothing at all",
            headers: &[("content-type", "text/plain")],
            dialect: None,
            limit: None,
            remaining: None,
            reset_after: None,
            malformed: 0,
        },
    ];
    for c in cases {
        let info = parse_rate_limit(&headers(c.headers), now());
        assert_eq!(info.dialect, c.dialect, "{}", c.api);
        assert_eq!(info.limit, c.limit, "{}", c.api);
        assert_eq!(info.remaining, c.remaining, "{}", c.api);
        assert_eq!(info.reset_after, c.reset_after, "{}", c.api);
        assert_eq!(info.malformed, c.malformed, "{}", c.api);
    }
}

#[test]
fn draft11_policies_and_states_in_full() {
    let info = parse_rate_limit(
        &headers(&[
            (
                "ratelimit-policy",
                r#""burst";q=100;w=60;pk=:YWJj:, "daily";q=1000;w=86400"#,
            ),
            ("ratelimit", r#""burst";r=50;t=30;pk=:YWJj:, "daily";r=5"#),
        ]),
        now(),
    );
    assert_eq!(
        info.policies,
        [
            QuotaPolicy {
                name: Some("burst".into()),
                quota: 100,
                window: Some(secs(60.0)),
                partition_key: Some(b"abc".to_vec()),
            },
            QuotaPolicy {
                name: Some("daily".into()),
                quota: 1000,
                window: Some(secs(86_400.0)),
                partition_key: None,
            },
        ]
    );
    assert_eq!(info.states[1].reset_after, None);
    assert_eq!(info.available_after(), Some(Duration::ZERO));
    // Bad Structured Field syntax and an item without `r` are counted.
    let bad = parse_rate_limit(
        &headers(&[
            ("ratelimit", r#""a";t=3, "b";r=1"#),
            ("ratelimit-policy", "(("),
        ]),
        now(),
    );
    assert_eq!(bad.remaining, Some(1));
    assert_eq!(bad.malformed, 2);
}

#[test]
fn retry_after_takes_precedence() {
    let info = parse_rate_limit(
        &headers(&[
            ("x-ratelimit-remaining", "5"),
            ("x-ratelimit-reset", "60"),
            ("retry-after", "7"),
        ]),
        now(),
    );
    assert_eq!(info.available_after(), Some(secs(7.0)));
    let only = parse_rate_limit(&headers(&[("retry-after", "3")]), now());
    assert_eq!(only.dialect, Some(Dialect::RetryAfterOnly));
    assert_eq!(only.available_after(), Some(secs(3.0)));
    let exhausted = parse_rate_limit(
        &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "9")]),
        now(),
    );
    assert_eq!(exhausted.available_after(), Some(secs(9.0)));
    assert!(parse_rate_limit(&HeaderMap::new(), now()).is_empty());
}

#[test]
fn reset_disambiguation() {
    let r = now();
    for (value, expected) in [
        ("1s", Some(secs(1.0))),
        ("6m0s", Some(secs(360.0))),
        ("12ms", Some(Duration::from_millis(12))),
        ("1h2m3.5s", Some(secs(3723.5))),
        ("250us", Some(Duration::from_micros(250))),
        ("30", Some(secs(30.0))),
        ("1.5", Some(secs(1.5))),
        ("1666132100", Some(secs(100.0))),
        ("1666131000", Some(Duration::ZERO)),
        ("1666132000500", Some(Duration::from_millis(500))),
        ("2022-10-18T22:28:00Z", Some(secs(80.0))),
        ("Tue, 18 Oct 2022 22:27:00 GMT", Some(secs(20.0))),
        ("-1", None),
        ("soon", None),
        ("", None),
        ("1x", None),
        ("2022-13-01T00:00:00Z", None),
    ] {
        assert_eq!(parse_reset(value, r), expected, "{value:?}");
    }
}
