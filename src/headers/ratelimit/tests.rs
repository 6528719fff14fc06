use super::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use Dialect as D;

/// 2022-10-18T22:26:40Z.
const NOW: u64 = 1_666_132_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for &(name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        headers.append(name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
    }
    headers
}

/// A reading without policies or states.
fn info(
    dialect: Option<Dialect>,
    (limit, remaining, reset_after): (Option<u64>, Option<u64>, Option<Duration>),
    retry_after: Option<Duration>,
    malformed: u32,
) -> RateLimitInfo {
    let mut info = RateLimitInfo {
        dialect,
        limit,
        remaining,
        reset_after,
        retry_after,
        policies: Vec::new(),
        states: Vec::new(),
        dimensions: Vec::new(),
        malformed,
        capped: false,
    };
    // The single unsuffixed dimension `""` of every dialect but draft-11.
    if dialect.is_some_and(|d| d != Dialect::IetfDraft11) {
        info.dimensions = dims::headline(&info);
    }
    info
}

fn policy(name: Option<&str>, quota: u64, window: Option<u64>) -> RateLimitPolicy {
    RateLimitPolicy {
        name: name.map(str::to_owned),
        quota,
        window: window.map(secs),
        partition_key: None,
    }
}

fn state(name: &str, remaining: u64, reset_after: Option<u64>) -> RateLimitState {
    RateLimitState {
        name: Some(name.to_owned()),
        remaining,
        reset_after: reset_after.map(secs),
        partition_key: None,
    }
}

fn with(
    mut info: RateLimitInfo,
    policies: Vec<RateLimitPolicy>,
    states: Vec<RateLimitState>,
) -> RateLimitInfo {
    info.policies = policies;
    info.states = states;
    if info.dialect == Some(Dialect::IetfDraft11) {
        info.dimensions = dims::from_ietf(&info.policies, &info.states);
    }
    info
}

/// A dimension (its fields are all known).
fn dim(
    name: &str,
    (limit, remaining, reset_after): (Option<u64>, Option<u64>, Option<Duration>),
) -> Dimension {
    Dimension {
        name: name.to_owned(),
        limit,
        remaining,
        reset_after,
    }
}

type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    RateLimitInfo,
);

fn cases() -> Vec<Case> {
    let some = |l: u64, r: u64, t: Duration| (Some(l), Some(r), Some(t));
    vec![
        (
            "GitHub: epoch seconds",
            &[
                ("X-RateLimit-Limit", "5000"),
                ("X-RateLimit-Remaining", "4999"),
                ("X-RateLimit-Reset", "1666132381"),
                ("X-RateLimit-Used", "1"),
                ("X-RateLimit-Resource", "core"),
            ],
            info(Some(D::XRateLimit), some(5000, 4999, secs(381)), None, 0),
        ),
        (
            "Discord: Reset-After preferred over epoch decimals",
            &[
                ("X-RateLimit-Limit", "5"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "1470173023.123"),
                ("X-RateLimit-Reset-After", "64.57"),
                ("X-RateLimit-Bucket", "abcd1234"),
            ],
            info(Some(D::XRateLimit), some(5, 0, ms(64_570)), None, 0),
        ),
        (
            "Discord: epoch decimals alone",
            &[
                ("X-RateLimit-Remaining", "1"),
                ("X-RateLimit-Reset", "1666132064.57"),
            ],
            info(
                Some(D::XRateLimit),
                (None, Some(1), Some(ms(64_570))),
                None,
                0,
            ),
        ),
        (
            "OpenAI: -requests headline, Go durations",
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-limit-tokens", "150000"),
                ("x-ratelimit-remaining-requests", "59"),
                ("x-ratelimit-remaining-tokens", "149984"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ],
            RateLimitInfo {
                dimensions: vec![
                    dim("requests", some(60, 59, secs(1))),
                    dim("tokens", some(150_000, 149_984, secs(360))),
                ],
                ..info(Some(D::XRateLimit), some(60, 59, secs(1)), None, 0)
            },
        ),
        (
            "Twitter/X: dashed, epoch seconds",
            &[
                ("x-rate-limit-limit", "900"),
                ("x-rate-limit-remaining", "899"),
                ("x-rate-limit-reset", "1666132900"),
            ],
            info(
                Some(D::XRateLimitDashed),
                some(900, 899, secs(900)),
                None,
                0,
            ),
        ),
        (
            "Clerk guide: seconds until reset",
            &[
                ("X-RateLimit-Limit", "5"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "10"),
            ],
            info(Some(D::XRateLimit), some(5, 0, secs(10)), None, 0),
        ),
        (
            "epoch milliseconds",
            &[
                ("X-RateLimit-Remaining", "3"),
                ("X-RateLimit-Reset", "1666132030500"),
            ],
            info(
                Some(D::XRateLimit),
                (None, Some(3), Some(ms(30_500))),
                None,
                0,
            ),
        ),
        (
            "RFC 3339 with offset",
            &[("X-RateLimit-Reset", "2022-10-19T00:27:40+02:00")],
            info(Some(D::XRateLimit), (None, None, Some(secs(60))), None, 0),
        ),
        (
            "HTTP-date",
            &[("X-RateLimit-Reset", "Tue, 18 Oct 2022 22:27:40 GMT")],
            info(Some(D::XRateLimit), (None, None, Some(secs(60))), None, 0),
        ),
        (
            "Date header is the reference",
            &[
                ("Date", "Tue, 18 Oct 2022 22:25:00 GMT"),
                ("X-RateLimit-Reset", "1666131960"),
            ],
            info(Some(D::XRateLimit), (None, None, Some(secs(60))), None, 0),
        ),
        (
            "limit with policy tail",
            &[
                ("X-RateLimit-Limit", "100, 100;w=60"),
                ("X-RateLimit-Remaining", "99"),
            ],
            with(
                info(Some(D::XRateLimit), (Some(100), Some(99), None), None, 0),
                vec![policy(None, 100, Some(60))],
                vec![],
            ),
        ),
        (
            "draft-11: two policies, headline = lowest remaining",
            &[
                (
                    "RateLimit-Policy",
                    "\"burst\";q=100;w=60,\"daily\";q=1000;w=86400",
                ),
                ("RateLimit", "\"burst\";r=50;t=30, \"daily\";r=20;t=40000"),
            ],
            with(
                info(Some(D::IetfDraft11), some(1000, 20, secs(40_000)), None, 0),
                vec![
                    policy(Some("burst"), 100, Some(60)),
                    policy(Some("daily"), 1000, Some(86_400)),
                ],
                vec![
                    state("burst", 50, Some(30)),
                    state("daily", 20, Some(40_000)),
                ],
            ),
        ),
        (
            "draft-11: tokens, two lines, tie -> longest reset",
            &[
                ("RateLimit-Policy", "a;q=10;w=1"),
                ("RateLimit-Policy", "b;q=50;w=60;qu=\"requests\""),
                ("RateLimit", "a;r=0;t=1, b;r=0;t=45"),
            ],
            with(
                info(Some(D::IetfDraft11), some(50, 0, secs(45)), None, 0),
                vec![
                    policy(Some("a"), 10, Some(1)),
                    policy(Some("b"), 50, Some(60)),
                ],
                vec![state("a", 0, Some(1)), state("b", 0, Some(45))],
            ),
        ),
        (
            "draft-07 dictionary + Integer policy",
            &[
                ("RateLimit", "limit=100, remaining=50, reset=30"),
                ("RateLimit-Policy", "100;w=60"),
            ],
            with(
                info(Some(D::IetfDraft07), some(100, 50, secs(30)), None, 0),
                vec![policy(None, 100, Some(60))],
                vec![],
            ),
        ),
        (
            "separate IETF fields",
            &[
                ("RateLimit-Limit", "10, 10;w=1, 50;w=60"),
                ("RateLimit-Remaining", "9"),
                ("RateLimit-Reset", "1"),
            ],
            with(
                info(Some(D::IetfSeparate), some(10, 9, secs(1)), None, 0),
                vec![policy(None, 10, Some(1)), policy(None, 50, Some(60))],
                vec![],
            ),
        ),
        (
            "precedence: draft-07 over X-RateLimit",
            &[
                ("RateLimit", "limit=10, remaining=1, reset=5"),
                ("X-RateLimit-Limit", "99"),
                ("X-RateLimit-Remaining", "98"),
            ],
            info(Some(D::IetfDraft07), some(10, 1, secs(5)), None, 0),
        ),
        (
            "precedence: X-RateLimit over X-Rate-Limit",
            &[
                ("x-rate-limit-remaining", "7"),
                ("x-ratelimit-remaining", "3"),
            ],
            info(Some(D::XRateLimit), (None, Some(3), None), None, 0),
        ),
        (
            "Retry-After alongside a dialect",
            &[
                ("X-RateLimit-Limit", "60"),
                ("X-RateLimit-Remaining", "5"),
                ("Retry-After", "120"),
            ],
            info(
                Some(D::XRateLimit),
                (Some(60), Some(5), None),
                Some(secs(120)),
                0,
            ),
        ),
        (
            "Retry-After only",
            &[("Retry-After", "30")],
            info(
                Some(D::RetryAfterOnly),
                (None, None, None),
                Some(secs(30)),
                0,
            ),
        ),
        (
            "retry-after-ms only",
            &[("retry-after-ms", "1500")],
            info(
                Some(D::RetryAfterOnly),
                (None, None, None),
                Some(ms(1500)),
                0,
            ),
        ),
        (
            "malformed: remaining abc",
            &[
                ("X-RateLimit-Limit", "60"),
                ("X-RateLimit-Remaining", "abc"),
            ],
            info(Some(D::XRateLimit), (Some(60), None, None), None, 1),
        ),
        (
            "remaining > limit (a burst above the count) is read as sent",
            &[("X-RateLimit-Limit", "10"), ("X-RateLimit-Remaining", "20")],
            info(Some(D::XRateLimit), (Some(10), Some(20), None), None, 0),
        ),
        (
            "malformed: bad SF syntax",
            &[
                ("RateLimit", "\"burst\";r=,;;"),
                ("X-RateLimit-Remaining", "4"),
            ],
            info(Some(D::XRateLimit), (None, Some(4), None), None, 1),
        ),
        (
            "malformed: negative reset",
            &[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "-5")],
            info(Some(D::XRateLimit), (None, Some(0), None), None, 1),
        ),
        (
            "malformed: RateLimit item missing r",
            &[
                ("RateLimit-Policy", "\"burst\";q=100"),
                ("RateLimit", "\"burst\";t=3"),
            ],
            with(
                info(Some(D::IetfDraft11), (Some(100), None, None), None, 1),
                vec![policy(Some("burst"), 100, None)],
                vec![],
            ),
        ),
        (
            "malformed: draft-11 bad w (r > q is read as sent)",
            &[
                ("RateLimit-Policy", "\"p\";q=5;w=-1"),
                ("RateLimit", "\"p\";r=9"),
            ],
            with(
                info(Some(D::IetfDraft11), (Some(5), Some(9), None), None, 1),
                vec![policy(Some("p"), 5, None)],
                vec![state("p", 9, None)],
            ),
        ),
        (
            "malformed only: nothing usable",
            &[("X-RateLimit-Remaining", "1e3"), ("Retry-After", "soon")],
            info(None, (None, None, None), None, 2),
        ),
        (
            "nothing at all",
            &[("Content-Type", "text/plain")],
            RateLimitInfo::default(),
        ),
    ]
}

#[test]
fn real_and_malformed_headers() {
    for (name, pairs, want) in cases() {
        assert_eq!(parse_rate_limit(&map(pairs), now()), want, "{name}");
    }
}

#[test]
fn draft11_partition_key() {
    let h = map(&[
        ("RateLimit-Policy", "\"user\";q=10;pk=:dXNlcjE=:"),
        ("RateLimit", "\"user\";r=3;t=2;pk=:dXNlcjE=:"),
    ]);
    let got = parse_rate_limit(&h, now());
    let pk = Some(b"user1".to_vec());
    assert_eq!(got.policies[0].partition_key, pk);
    assert_eq!(got.states[0].partition_key, pk);
    assert_eq!(
        (got.limit, got.remaining, got.reset_after),
        (Some(10), Some(3), Some(secs(2)))
    );
}

#[test]
fn available_after_rules() {
    let base = |remaining, reset: Option<Duration>, retry| RateLimitInfo {
        dialect: Some(D::XRateLimit),
        remaining,
        reset_after: reset,
        retry_after: retry,
        ..RateLimitInfo::default()
    };
    assert_eq!(
        base(Some(5), Some(secs(9)), Some(secs(3))).available_after(),
        Some(secs(3))
    );
    assert_eq!(
        base(Some(0), Some(secs(9)), None).available_after(),
        Some(secs(9))
    );
    assert_eq!(base(Some(0), None, None).available_after(), None);
    assert_eq!(
        base(Some(2), Some(secs(9)), None).available_after(),
        Some(Duration::ZERO)
    );
    assert_eq!(
        base(None, Some(secs(9)), None).available_after(),
        Some(Duration::ZERO)
    );
    assert_eq!(RateLimitInfo::default().available_after(), None);
    assert!(RateLimitInfo::default().is_empty());
    assert!(!base(None, None, None).is_empty());
    let malformed_only = RateLimitInfo {
        malformed: 3,
        ..RateLimitInfo::default()
    };
    assert!(malformed_only.is_empty());
}

#[test]
fn garbage_never_panics() {
    let names = [
        "ratelimit",
        "ratelimit-policy",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-reset-after",
        "x-rate-limit-reset",
        "retry-after",
        "date",
    ];
    let alphabet = b"0123456789.-+:;,=\"*?() TZtzsmhnuw\xc2\xb5\xffabcqrpk";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap_or(0)
        };
        let len = next() % 24;
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[next() % alphabet.len()])
            .collect();
        let name = names[next() % names.len()];
        let mut h = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            h.append(name, value);
        }
        let _ = parse_rate_limit(&h, now());
        let _ = parse_reset(&String::from_utf8_lossy(&bytes), now());
    }
}
