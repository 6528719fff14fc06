use super::*;

#[test]
fn ceil_secs_saturates() {
    assert_eq!(ceil_secs(Duration::MAX), u64::MAX);
    assert_eq!(ceil_secs(Duration::new(5, 1)), 6);
    assert_eq!(ceil_secs(Duration::from_secs(5)), 5);
    assert_eq!(ceil_secs(Duration::ZERO), 0);
}

#[test]
fn writes_both_dialects() {
    let quota = Quota::new(5, Duration::from_secs(10)).unwrap();
    let mut h = HeaderMap::new();
    let snap = LimitSnapshot {
        policy: "sign_in",
        quota: &quota,
        remaining: 0,
        reset_after: Duration::from_millis(9_500),
    };
    write_limit_headers(&mut h, HeaderDialects::ALL, &snap);
    assert_eq!(h[X_RATELIMIT_LIMIT], "5");
    assert_eq!(h[X_RATELIMIT_REMAINING], "0");
    assert_eq!(h[X_RATELIMIT_RESET], "10");
    assert_eq!(h[RATELIMIT_POLICY], r#""sign_in";q=5;w=10"#);
    assert_eq!(h[RATELIMIT], r#""sign_in";r=0;t=10"#);
    // Round trip through a real Structured Field parser.
    let parsed = sfv::Parser::new(h[RATELIMIT].as_bytes())
        .parse::<sfv::List>()
        .unwrap();
    assert_eq!(parsed.len(), 1);

    let mut only_legacy = HeaderMap::new();
    write_limit_headers(&mut only_legacy, HeaderDialects::LEGACY, &snap);
    assert!(only_legacy.get(RATELIMIT).is_none());
    let mut none = HeaderMap::new();
    write_limit_headers(&mut none, HeaderDialects::NONE, &snap);
    assert!(none.is_empty());
}

/// A reference writer: every field serialized by `sfv` on each call, nothing prepared.
fn reference(dialects: HeaderDialects, snap: &LimitSnapshot<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let reset = ceil_secs(snap.reset_after);
    if dialects.legacy {
        headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(snap.quota.count()));
        headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(snap.remaining));
        let legacy_reset = reset.min(LEGACY_RESET_MAX);
        headers.insert(X_RATELIMIT_RESET, HeaderValue::from(legacy_reset));
    }
    let Ok(name) = StringRef::from_str(snap.policy) else {
        return headers;
    };
    if dialects.ietf {
        let (q, w) = policy_window(snap.quota);
        for (field, (a, b), (x, y)) in [
            (RATELIMIT_POLICY, ("q", q), ("w", w)),
            (RATELIMIT, ("r", snap.remaining), ("t", reset)),
        ] {
            let mut list = ListSerializer::new();
            list.bare_item(name)
                .parameter(KeyRef::from_str(a).unwrap(), sf_int(b))
                .parameter(KeyRef::from_str(x).unwrap(), sf_int(y));
            headers.insert(
                field,
                HeaderValue::try_from(list.finish().unwrap()).unwrap(),
            );
        }
    }
    headers
}

fn assert_same(a: &HeaderMap, b: &HeaderMap) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (name, value) in a {
        assert_eq!(value.as_bytes(), b[name].as_bytes(), "{name}");
    }
}

#[test]
fn prepared_values_match_the_sfv_serialization() {
    let printable: String = (0x20u8..0x7f).map(char::from).collect();
    // Too long for the shared in-place `RateLimit` value: the separate-values path.
    let long = "n\\".repeat(60);
    let names = [
        long.as_str(),
        "sign_in",
        r#"quo"te"#,
        r"back\slash",
        r#""\""#,
        " spaced out ",
        printable.as_str(),
        "caf\u{e9}",
        "tab\there",
        "",
    ];
    let mut values: Vec<u64> = (0..=300).collect();
    for p in 1..=19 {
        let t = 10u64.pow(p);
        values.extend([t - 1, t, t + 1]);
    }
    values.extend([SF_MAX - 1, SF_MAX, SF_MAX + 1, u64::MAX - 1, u64::MAX]);
    let quotas = [
        Quota::new(5, Duration::from_secs(10)).unwrap(),
        Quota::new(10, Duration::from_millis(100)).unwrap(),
        Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap(),
        Quota::new(7, Duration::from_millis(1500)).unwrap(),
        Quota::per_hour(25).unwrap(),
    ];
    let dialects = [
        HeaderDialects::ALL,
        HeaderDialects::LEGACY,
        HeaderDialects::IETF,
        HeaderDialects::NONE,
    ];
    for name in names {
        for quota in &quotas {
            let prepared = LimitHeaders::new(name, quota);
            for &v in &values {
                let reset_after = Duration::from_millis(v.saturating_mul(999) / 1000);
                for (remaining, reset_after) in [
                    (v, reset_after),
                    (v / 7, Duration::from_secs(v)),
                    (u64::MAX - v, Duration::new(v / 2, 1)),
                ] {
                    let snap = LimitSnapshot {
                        policy: name,
                        quota,
                        remaining,
                        reset_after,
                    };
                    for d in dialects {
                        let mut fast = HeaderMap::new();
                        prepared.write(&mut fast, d, remaining, reset_after);
                        assert_same(&fast, &reference(d, &snap));
                    }
                }
            }
        }
    }
}

/// A reset the readers would take for an epoch time (10^9 s and more: a quota may hold 36
/// years of burst) is written as `LEGACY_RESET_MAX` in the legacy dialect, as is in `t`.
#[test]
fn legacy_reset_stays_a_delta() {
    let quota = Quota::new(1, crate::engine::quota::MAX_PERIOD)
        .unwrap()
        .with_burst(36)
        .unwrap();
    let prepared = LimitHeaders::new("long", &quota);
    for (reset, legacy) in [
        (999_999_999, "999999999"),
        (1_000_000_000, "999999999"),
        (1_136_000_000, "999999999"),
        (999_999_998, "999999998"),
    ] {
        let mut h = HeaderMap::new();
        prepared.write(&mut h, HeaderDialects::ALL, 0, Duration::from_secs(reset));
        assert_eq!(h[X_RATELIMIT_RESET], legacy, "{reset}");
        assert_eq!(h[RATELIMIT], format!("\"long\";r=0;t={reset}"), "{reset}");
    }
}

#[test]
fn int_values_match_http() {
    let mut values: Vec<u64> = (0..=10_000).collect();
    values.extend([u64::from(u32::MAX), u64::MAX - 1, u64::MAX]);
    for n in values {
        assert_eq!(int_value(n), HeaderValue::from(n), "{n}");
    }
}

#[test]
fn replaces_earlier_values_and_keeps_other_headers() {
    let quota = Quota::new(5, Duration::from_secs(10)).unwrap();
    let prepared = LimitHeaders::new("sign_in", &quota);
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    h.insert(X_RATELIMIT_REMAINING, HeaderValue::from_static("999"));
    h.append(RATELIMIT, HeaderValue::from_static("other"));
    prepared.write(&mut h, HeaderDialects::ALL, 3, Duration::from_secs(2));
    assert_eq!(h.len(), 6);
    assert_eq!(h[http::header::CONTENT_TYPE], "text/plain");
    assert_eq!(h.get_all(X_RATELIMIT_REMAINING).iter().count(), 1);
    assert_eq!(h[X_RATELIMIT_REMAINING], "3");
    assert_eq!(h.get_all(RATELIMIT).iter().count(), 1);
    assert_eq!(h[RATELIMIT], r#""sign_in";r=3;t=2"#);

    let escaped = LimitHeaders::new(r#"a"b\c"#, &quota);
    let mut h = HeaderMap::new();
    escaped.write(&mut h, HeaderDialects::IETF, 120, Duration::from_millis(1));
    assert_eq!(h[RATELIMIT_POLICY], r#""a\"b\\c";q=5;w=10"#);
    assert_eq!(h[RATELIMIT], r#""a\"b\\c";r=120;t=1"#);
}

#[test]
fn sub_second_windows_publish_the_same_rate() {
    let q = Quota::new(10, Duration::from_millis(100)).unwrap();
    assert_eq!(policy_window(&q), (100, 1));
    let q = Quota::new(3, Duration::from_millis(1500)).unwrap();
    assert_eq!(policy_window(&q), (4, 2));
    assert_eq!(policy_window(&Quota::per_hour(25).unwrap()), (25, 3600));
}

#[test]
fn retry_after_rounds_up_and_is_at_least_one() {
    assert_eq!(retry_after_value(Duration::ZERO), "1");
    assert_eq!(retry_after_value(Duration::from_nanos(1)), "1");
    assert_eq!(retry_after_value(Duration::from_secs(2)), "2");
    assert_eq!(retry_after_value(Duration::from_nanos(2_000_000_001)), "3");
    assert_eq!(retry_after_value(Duration::from_secs(144)), "144");
}
