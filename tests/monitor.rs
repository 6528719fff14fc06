//! HeaderMonitorLayer under paused time: thresholds, hits, per-endpoint snapshots,
//! exact reset instants, events, shared handles, eviction.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_throttle::headers::{Dialect, RateLimitPolicy, RateLimitState};
use tower_throttle::monitor::{
    HeaderMonitorLayer, MonitorConfigError, MonitorEvent, MonitorHandle, MonitorStats, Threshold,
};

type Res = Response<Full<Bytes>>;

fn reply(status: u16, headers: &[(&str, &str)]) -> Res {
    let mut res = Response::new(Full::new(Bytes::from_static(b"body")));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        res.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    res
}

fn limit(remaining: &str) -> Res {
    reply(
        200,
        &[
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-remaining", remaining),
        ],
    )
}

/// An inner service answering with `replies` in order, then plain `200`s.
fn script(
    replies: Vec<Res>,
) -> impl Service<Request<Full<Bytes>>, Response = Res, Error = Infallible, Future: Send> + Clone {
    let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
    tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let next = queue
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| reply(200, &[]));
        async move { Ok(next) }
    })
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::new(Bytes::new())).unwrap()
}

async fn send<S>(svc: &mut S, uri: &str) -> S::Response
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(get(uri)).await.unwrap()
}

type Events = Arc<Mutex<Vec<MonitorEvent>>>;

/// A layer (from `builder`'s settings) whose events are collected.
fn collecting(
    builder: tower_throttle::monitor::HeaderMonitorLayerBuilder,
) -> (HeaderMonitorLayer, MonitorHandle, Events) {
    let events = Events::default();
    let sink = Arc::clone(&events);
    let layer = builder
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let handle = layer.handle();
    (layer, handle, events)
}

fn stats(responses: u64, warnings: u64, hits: u64, malformed: u64) -> MonitorStats {
    MonitorStats {
        responses,
        warnings,
        hits,
        malformed,
    }
}

const USERS: &str = "http://api.test/v1/users";
const USERS_KEY: &str = "api.test/v1/users";

#[tokio::test(start_paused = true)]
async fn clerk_rule_warns_below_ten_percent_and_counts_hits() {
    let (layer, handle, events) = collecting(HeaderMonitorLayer::builder());
    let mut svc = layer.layer(script(vec![
        limit("10"),
        limit("9"),
        limit("0"),
        reply(429, &[]),
    ]));

    send(&mut svc, USERS).await;
    assert_eq!(
        handle.stats(),
        stats(1, 0, 0, 0),
        "10 of 100 is not below 10%"
    );
    send(&mut svc, USERS).await;
    assert_eq!(handle.stats(), stats(2, 1, 0, 0), "9 of 100 is");
    send(&mut svc, USERS).await;
    assert_eq!(handle.stats(), stats(3, 1, 1, 0), "remaining 0 is a hit");
    let res = send(&mut svc, USERS).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(handle.stats(), stats(4, 1, 2, 0), "a 429 is a hit");

    assert_eq!(
        *events.lock().unwrap(),
        [
            MonitorEvent::LowRemaining {
                endpoint: USERS_KEY.into(),
                remaining: 9,
                limit: Some(100),
            },
            MonitorEvent::Hit {
                endpoint: USERS_KEY.into(),
                status: StatusCode::OK,
                grpc_status: None,
                remaining: Some(0),
            },
            MonitorEvent::Hit {
                endpoint: USERS_KEY.into(),
                status: StatusCode::TOO_MANY_REQUESTS,
                grpc_status: None,
                remaining: None,
            },
        ]
    );
    // The 429 had no rate-limit headers: the snapshot is still the remaining-0 one.
    let snap = handle.snapshot(USERS_KEY).unwrap();
    assert_eq!((snap.limit, snap.remaining), (Some(100), Some(0)));
    assert_eq!(snap.last_status, StatusCode::OK);
    assert_eq!(snap.dialect, Some(Dialect::XRateLimit));
}

#[tokio::test(start_paused = true)]
async fn a_429_with_headers_is_one_hit() {
    let (layer, handle, events) = collecting(HeaderMonitorLayer::builder());
    let mut svc = layer.layer(script(vec![reply(
        429,
        &[("x-ratelimit-limit", "100"), ("x-ratelimit-remaining", "0")],
    )]));
    send(&mut svc, USERS).await;
    assert_eq!(handle.stats(), stats(1, 0, 1, 0));
    assert_eq!(events.lock().unwrap().len(), 1);
    let snap = handle.snapshot(USERS_KEY).unwrap();
    assert_eq!(snap.last_status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn count_threshold() {
    let (layer, handle, events) =
        collecting(HeaderMonitorLayer::builder().threshold(Threshold::Remaining(5)));
    let mut svc = layer.layer(script(vec![
        limit("5"),
        limit("4"),
        reply(200, &[("x-ratelimit-remaining", "3")]),
    ]));
    for _ in 0..3 {
        send(&mut svc, USERS).await;
    }
    assert_eq!(handle.stats(), stats(3, 2, 0, 0));
    assert_eq!(
        *events.lock().unwrap(),
        [
            MonitorEvent::LowRemaining {
                endpoint: USERS_KEY.into(),
                remaining: 4,
                limit: Some(100),
            },
            MonitorEvent::LowRemaining {
                endpoint: USERS_KEY.into(),
                remaining: 3,
                limit: None,
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fraction_needs_a_limit() {
    let (layer, handle, _) = collecting(HeaderMonitorLayer::builder());
    let mut svc = layer.layer(script(vec![reply(200, &[("x-ratelimit-remaining", "1")])]));
    send(&mut svc, USERS).await;
    assert_eq!(handle.stats(), stats(1, 0, 0, 0));
    assert_eq!(handle.snapshot(USERS_KEY).unwrap().remaining, Some(1));
}

#[tokio::test(start_paused = true)]
async fn snapshots_are_per_endpoint_and_ignore_the_query() {
    let layer = HeaderMonitorLayer::new();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![limit("50"), limit("40"), limit("30")]));
    send(&mut svc, "http://api.test/v1/users?page=1").await;
    send(&mut svc, "http://api.test/v1/orgs").await;
    send(&mut svc, "http://api.test/v1/users?page=2").await;

    let users = handle.snapshot(USERS_KEY).unwrap();
    let orgs = handle.snapshot("api.test/v1/orgs").unwrap();
    assert_eq!(users.remaining, Some(30));
    assert_eq!(orgs.remaining, Some(40));
    assert_eq!(handle.snapshot("api.test/v1/users?page=2"), None);
    let all = handle.snapshots();
    let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["api.test/v1/orgs", USERS_KEY]);
    assert_eq!(all[1].1, users);
}

#[tokio::test(start_paused = true)]
async fn reset_at_is_exact() {
    let layer = HeaderMonitorLayer::new();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![reply(
        200,
        &[
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-remaining", "99"),
            ("x-ratelimit-reset", "30"),
        ],
    )]));
    let start = Instant::now();
    send(&mut svc, USERS).await;
    let snap = handle.snapshot(USERS_KEY).unwrap();
    assert_eq!(snap.reset_at, Some(start + Duration::from_secs(30)));
    assert_eq!(snap.last_seen, start);
    assert_eq!(snap.reset_after(), Some(Duration::from_secs(30)));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(snap.reset_after(), Some(Duration::from_secs(20)));
    tokio::time::advance(Duration::from_secs(25)).await;
    assert_eq!(snap.reset_after(), Some(Duration::ZERO), "past the reset");
}

#[tokio::test(start_paused = true)]
async fn draft_11_policies_are_stored() {
    let layer = HeaderMonitorLayer::new();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![reply(
        200,
        &[
            (
                "ratelimit-policy",
                r#""burst";q=100;w=60, "daily";q=1000;w=86400"#,
            ),
            ("ratelimit", r#""burst";r=42;t=30"#),
        ],
    )]));
    let start = Instant::now();
    send(&mut svc, USERS).await;
    let snap = handle.snapshot(USERS_KEY).unwrap();
    assert_eq!(snap.dialect, Some(Dialect::IetfDraft11));
    assert_eq!(
        snap.policies,
        [
            RateLimitPolicy {
                name: Some("burst".into()),
                quota: 100,
                window: Some(Duration::from_secs(60)),
                partition_key: None,
            },
            RateLimitPolicy {
                name: Some("daily".into()),
                quota: 1000,
                window: Some(Duration::from_secs(86400)),
                partition_key: None,
            },
        ]
    );
    assert_eq!(
        snap.states,
        [RateLimitState {
            name: Some("burst".into()),
            remaining: 42,
            reset_after: Some(Duration::from_secs(30)),
            partition_key: None,
        }]
    );
    assert_eq!(snap.remaining, Some(42));
    assert_eq!(snap.reset_at, Some(start + Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn callback_receives_events_in_order() {
    let (layer, handle, events) = collecting(HeaderMonitorLayer::builder());
    let mut svc = layer.layer(script(vec![
        limit("5"),
        reply(
            429,
            &[
                ("x-ratelimit-limit", "many"),
                ("x-ratelimit-remaining", "0"),
            ],
        ),
        limit("8"),
    ]));
    send(&mut svc, USERS).await;
    send(&mut svc, "http://other.test/a").await;
    send(&mut svc, USERS).await;
    assert_eq!(handle.stats(), stats(3, 2, 1, 1));
    assert_eq!(
        *events.lock().unwrap(),
        [
            MonitorEvent::LowRemaining {
                endpoint: USERS_KEY.into(),
                remaining: 5,
                limit: Some(100),
            },
            MonitorEvent::Malformed {
                endpoint: "other.test/a".into(),
                count: 1,
            },
            MonitorEvent::Hit {
                endpoint: "other.test/a".into(),
                status: StatusCode::TOO_MANY_REQUESTS,
                grpc_status: None,
                remaining: Some(0),
            },
            MonitorEvent::LowRemaining {
                endpoint: USERS_KEY.into(),
                remaining: 8,
                limit: Some(100),
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn handle_is_shared_across_clones() {
    let (layer, handle, events) = collecting(HeaderMonitorLayer::builder());
    let other_layer = layer.clone();
    let inner = script(vec![limit("90"), limit("3")]);
    let mut a = layer.layer(inner.clone());
    let mut b = other_layer.layer(inner).clone();
    send(&mut a, USERS).await;
    send(&mut b, USERS).await;
    let from_clone = other_layer.handle();
    assert_eq!(from_clone.stats(), stats(2, 1, 0, 0));
    assert_eq!(handle.stats(), from_clone.stats());
    assert_eq!(from_clone.snapshot(USERS_KEY).unwrap().remaining, Some(3));
    assert_eq!(handle.clone().snapshots(), from_clone.snapshots());
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn responses_without_headers_leave_the_snapshot() {
    let (layer, handle, _) = collecting(HeaderMonitorLayer::builder());
    let mut svc = layer.layer(script(vec![
        reply(
            201,
            &[
                ("x-ratelimit-limit", "100"),
                ("x-ratelimit-remaining", "42"),
            ],
        ),
        reply(200, &[]),
        reply(429, &[]),
    ]));
    let start = Instant::now();
    send(&mut svc, USERS).await;
    let first = handle.snapshot(USERS_KEY).unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    send(&mut svc, USERS).await;
    send(&mut svc, USERS).await;
    let last = handle.snapshot(USERS_KEY).unwrap();
    assert_eq!(last, first);
    assert_eq!(
        (last.remaining, last.last_status, last.last_seen),
        (Some(42), StatusCode::CREATED, start)
    );
    assert_eq!(
        handle.stats(),
        stats(3, 0, 1, 0),
        "the bare 429 still counts"
    );
    assert_eq!(handle.snapshot("api.test/never"), None);
}

#[tokio::test(start_paused = true)]
async fn malformed_fields_are_counted() {
    let (layer, handle, events) = collecting(HeaderMonitorLayer::builder());
    let mut svc = layer.layer(script(vec![
        reply(
            200,
            &[
                ("x-ratelimit-limit", "100"),
                ("x-ratelimit-remaining", "lots"),
            ],
        ),
        reply(
            200,
            &[
                ("x-ratelimit-limit", "1e3"),
                ("x-ratelimit-remaining", "-1"),
            ],
        ),
    ]));
    send(&mut svc, USERS).await;
    send(&mut svc, USERS).await;
    assert_eq!(handle.stats(), stats(2, 0, 0, 3));
    assert_eq!(
        *events.lock().unwrap(),
        [
            MonitorEvent::Malformed {
                endpoint: USERS_KEY.into(),
                count: 1,
            },
            MonitorEvent::Malformed {
                endpoint: USERS_KEY.into(),
                count: 2,
            },
        ]
    );
    // The well-formed limit of the first response was kept.
    assert_eq!(handle.snapshot(USERS_KEY).unwrap().limit, Some(100));
}

#[tokio::test(start_paused = true)]
async fn max_endpoints_drops_the_least_recently_seen() {
    let layer = HeaderMonitorLayer::builder()
        .max_endpoints(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![limit("50"); 4]));
    send(&mut svc, "http://api.test/a").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    send(&mut svc, "http://api.test/b").await;
    tokio::time::advance(Duration::from_secs(1)).await;
    send(&mut svc, "http://api.test/a").await; // a is now the most recently seen
    tokio::time::advance(Duration::from_secs(1)).await;
    send(&mut svc, "http://api.test/c").await; // drops b
    let keys: Vec<String> = handle.snapshots().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["api.test/a", "api.test/c"]);
    assert_eq!(handle.snapshot("api.test/b"), None);
    assert_eq!(handle.stats().responses, 4);
}

#[tokio::test(start_paused = true)]
async fn custom_endpoint_key() {
    let layer = HeaderMonitorLayer::builder()
        .endpoint_key(|head| format!("{} {}", head.method, head.uri.path()))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![limit("77")]));
    send(&mut svc, USERS).await;
    assert_eq!(
        handle.snapshot("GET /v1/users").unwrap().remaining,
        Some(77)
    );
}

#[test]
fn bad_threshold_is_rejected() {
    for bad in [1.5, -0.1, f64::INFINITY, f64::NEG_INFINITY] {
        let err = HeaderMonitorLayer::builder()
            .threshold(Threshold::Fraction(bad))
            .build()
            .unwrap_err();
        assert_eq!(err, MonitorConfigError::BadFraction(bad));
    }
    let nan = HeaderMonitorLayer::builder()
        .threshold(Threshold::Fraction(f64::NAN))
        .build();
    assert!(matches!(nan, Err(MonitorConfigError::BadFraction(f)) if f.is_nan()));
    for ok in [
        Threshold::Fraction(0.0),
        Threshold::Fraction(1.0),
        Threshold::Remaining(0),
    ] {
        assert!(HeaderMonitorLayer::builder().threshold(ok).build().is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn responses_and_errors_pass_through_unchanged() {
    let layer = HeaderMonitorLayer::new();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![reply(
        503,
        &[("x-ratelimit-remaining", "2"), ("x-custom", "kept")],
    )]));
    let res = send(&mut svc, USERS).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers().len(), 2);
    assert_eq!(res.headers()["x-custom"], "kept");
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "body");

    let failing = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Err::<Res, _>(io::Error::other("connection refused"))
    });
    let err = layer.layer(failing).oneshot(get(USERS)).await.unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
    assert_eq!(
        handle.stats(),
        stats(1, 0, 0, 0),
        "errors are not responses"
    );
}

/// Resets and retry-after are capped at the monitor's `reset_cap` (default 1 day), and the
/// snapshot says so; a remaining above the limit (burst > count) is kept as sent.
#[tokio::test(start_paused = true)]
async fn resets_are_capped_and_flagged() {
    let start = Instant::now();
    let day = Duration::from_secs(86_400);
    let layer = HeaderMonitorLayer::new();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![
        reply(
            200,
            &[
                ("x-ratelimit-limit", "20"),
                ("x-ratelimit-remaining", "39"),
                ("x-ratelimit-reset", "18446744073709551615"),
            ],
        ),
        reply(
            429,
            &[("x-ratelimit-remaining", "0"), ("retry-after", "90000")],
        ),
        reply(
            200,
            &[
                ("ratelimit-policy", r#""free";q=20;w=10"#),
                ("ratelimit", r#""free";r=39;t=1"#),
            ],
        ),
    ]));
    let read = |h: &MonitorHandle| {
        let s = h.snapshot(USERS_KEY).unwrap();
        (s.limit, s.remaining, s.reset_at, s.capped)
    };
    send(&mut svc, USERS).await;
    assert_eq!(read(&handle), (Some(20), Some(39), Some(start + day), true));
    send(&mut svc, USERS).await;
    assert_eq!(read(&handle), (None, Some(0), Some(start + day), true));
    send(&mut svc, USERS).await;
    let second = Some(start + Duration::from_secs(1));
    assert_eq!(read(&handle), (Some(20), Some(39), second, false));
    assert_eq!(handle.stats().malformed, 0);

    let minute = Duration::from_secs(60);
    let layer = HeaderMonitorLayer::builder()
        .reset_cap(minute)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(script(vec![
        reply(200, &[("ratelimit", r#""a";r=0;t=61"#)]),
        reply(200, &[("ratelimit", r#""a";r=0;t=60"#)]),
    ]));
    send(&mut svc, USERS).await;
    assert_eq!(read(&handle), (None, Some(0), Some(start + minute), true));
    let snap = handle.snapshot(USERS_KEY).unwrap();
    assert_eq!(snap.states[0].reset_after, Some(minute));
    send(&mut svc, USERS).await;
    assert_eq!(read(&handle), (None, Some(0), Some(start + minute), false));
}
