//! Multi-dimension limits (issue 14): legacy suffixed families and IETF named policies
//! read as dimensions, the headline being the most restrictive one; the monitor's
//! snapshot lists them.

use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_throttle::headers::{
    parse_rate_limit, Dialect, Dimension, RateLimitInfo, MAX_DIMENSIONS,
};
use tower_throttle::monitor::HeaderMonitorLayer;

type Row = (String, Option<u64>, Option<u64>, Option<Duration>);

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for &(name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        headers.append(name, HeaderValue::from_str(value).unwrap());
    }
    headers
}

fn read(pairs: &[(&str, &str)]) -> RateLimitInfo {
    parse_rate_limit(&map(pairs), UNIX_EPOCH + Duration::from_secs(1_666_132_000))
}

fn rows(dimensions: &[Dimension]) -> Vec<Row> {
    dimensions
        .iter()
        .map(|d| (d.name.clone(), d.limit, d.remaining, d.reset_after))
        .collect()
}

fn row(name: &str, limit: u64, remaining: u64, reset: Duration) -> Row {
    (name.to_owned(), Some(limit), Some(remaining), Some(reset))
}

fn headline(info: &RateLimitInfo) -> (Option<u64>, Option<u64>, Option<Duration>) {
    (info.limit, info.remaining, info.reset_after)
}

const OPENAI: [(&str, &str); 6] = [
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-remaining-requests", "9000"),
    ("x-ratelimit-reset-requests", "6m0s"),
    ("x-ratelimit-limit-tokens", "1000000"),
    ("x-ratelimit-remaining-tokens", "500"),
    ("x-ratelimit-reset-tokens", "20ms"),
];

#[test]
fn tokens_nearly_spent_is_the_headline() {
    let info = read(&OPENAI);
    assert_eq!(
        rows(&info.dimensions),
        [
            row("requests", 10_000, 9_000, Duration::from_secs(360)),
            row("tokens", 1_000_000, 500, Duration::from_millis(20)),
        ]
    );
    assert_eq!(info.dialect, Some(Dialect::XRateLimit));
    assert_eq!(
        headline(&info),
        (Some(1_000_000), Some(500), Some(Duration::from_millis(20)))
    );
    assert_eq!(info.malformed, 0);
}

#[test]
fn both_exhausted_the_longest_reset_wins() {
    let info = read(&[
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-limit-tokens", "1000000"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ]);
    assert_eq!(info.dimensions.len(), 2);
    assert_eq!(
        headline(&info),
        (Some(1_000_000), Some(0), Some(Duration::from_secs(360)))
    );
    assert_eq!(info.available_after(), Some(Duration::from_secs(360)));
    // Exhausted beats a lower fraction: requests 0 of 10000 over tokens 1 of 1000000.
    let info = read(&[
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-limit-tokens", "1000000"),
        ("x-ratelimit-remaining-tokens", "1"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ]);
    assert_eq!(
        headline(&info),
        (Some(10_000), Some(0), Some(Duration::from_secs(1)))
    );
}

#[test]
fn hostile_suffixes_keep_at_most_eight_dimensions() {
    let names: Vec<String> = (0..64)
        .map(|i| format!("x-ratelimit-remaining-bogus{i}"))
        .collect();
    let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "7")).collect();
    // Not suffixes: empty, upper-case is impossible in a HeaderName, `reset-after`.
    pairs.push(("x-ratelimit-remaining-", "1"));
    pairs.push(("x-ratelimit-reset-after", "5"));
    pairs.push(("x-ratelimit-limit-bogus0", "not a number"));
    let info = read(&pairs);
    assert_eq!(MAX_DIMENSIONS, 8);
    assert_eq!(info.dimensions.len(), 8);
    let expected: Vec<Row> = (0..8)
        .map(|i| (format!("bogus{i}"), None, Some(7), None))
        .collect();
    assert_eq!(rows(&info.dimensions), expected);
    // One for the cut, one for the unparsable limit.
    assert_eq!(info.malformed, 2);
    assert_eq!(info.remaining, Some(7));
}

#[test]
fn ietf_named_policies_are_two_dimensions() {
    let info = read(&[
        (
            "ratelimit-policy",
            r#""requests";q=100;w=60, "tokens";q=50000;w=60"#,
        ),
        ("ratelimit", r#""requests";r=90;t=30, "tokens";r=1000;t=45"#),
    ]);
    assert_eq!(info.dialect, Some(Dialect::IetfDraft11));
    assert_eq!(
        rows(&info.dimensions),
        [
            row("requests", 100, 90, Duration::from_secs(30)),
            row("tokens", 50_000, 1_000, Duration::from_secs(45)),
        ]
    );
    // Tokens: 2 % left, requests 90 %.
    assert_eq!(
        headline(&info),
        (Some(50_000), Some(1_000), Some(Duration::from_secs(45)))
    );
}

#[test]
fn a_single_unsuffixed_reading_is_the_default_dimension() {
    let info = read(&[
        ("x-ratelimit-limit", "100"),
        ("x-ratelimit-remaining", "4"),
        ("x-ratelimit-reset", "30"),
    ]);
    assert_eq!(
        rows(&info.dimensions),
        [row("", 100, 4, Duration::from_secs(30))]
    );
    assert_eq!(
        headline(&info),
        (Some(100), Some(4), Some(Duration::from_secs(30)))
    );
}

#[tokio::test(start_paused = true)]
async fn the_monitor_snapshot_lists_both() {
    let layer = HeaderMonitorLayer::new();
    let handle = layer.handle();
    let mut svc = layer.layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.headers_mut() = map(&OPENAI);
        Ok::<_, Infallible>(res)
    }));
    let start = Instant::now();
    let req = Request::get("http://api.test/v1/chat")
        .body(Full::new(Bytes::new()))
        .unwrap();
    svc.ready().await.unwrap().call(req).await.unwrap();
    let snap = handle.snapshot("api.test/v1/chat").unwrap();
    assert_eq!(
        rows(snap.dimensions()),
        [
            row("requests", 10_000, 9_000, Duration::from_secs(360)),
            row("tokens", 1_000_000, 500, Duration::from_millis(20)),
        ]
    );
    assert_eq!((snap.limit, snap.remaining), (Some(1_000_000), Some(500)));
    assert_eq!(snap.reset_at, Some(start + Duration::from_millis(20)));
}
