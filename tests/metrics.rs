//! Metrics (feature `metrics`) read back exactly from `metrics-util`'s DebuggingRecorder,
//! installed per test on the test's thread (current-thread runtimes, layers built after
//! the recorder is installed).
#![cfg(feature = "metrics")]

#[path = "support/mock.rs"]
mod mock;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use mock::{secs, status, Mock};
use tower::{service_fn, Layer, ServiceExt};
use tower_throttle::backoff::{Backoff, Jitter};
use tower_throttle::telemetry::{
    CLIENT_GIVE_UPS_TOTAL, CLIENT_RETRIES_TOTAL, GATE_WAITS_TOTAL, GATE_WAIT_SECONDS,
    PACING_WAIT_SECONDS, REQUESTS_TOTAL,
};
use tower_throttle::{BackoffLayer, Quota, RateLimitLayer, Rule};

type Snap = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// Everything recorded so far (a snapshot drains the recorder's counters: take one).
fn take(snap: &Snapshotter) -> Snap {
    snap.snapshot().into_vec()
}

/// The value of metric `name` with exactly `labels`, if recorded.
fn value<'a>(snap: &'a Snap, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    snap.iter()
        .find(|(k, ..)| {
            let key = k.key();
            let mut got: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            let mut want = labels.to_vec();
            got.sort();
            want.sort();
            key.name() == name && got == want
        })
        .map(|(.., v)| v)
}

fn counter(snap: &Snap, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snap, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?} in {snap:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn server_counts_admitted_and_limited_per_rule() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let layer = RateLimitLayer::builder()
        .rule(Rule::new(
            "global",
            Quota::new(3, Duration::from_secs(60)).unwrap(),
        ))
        .rule(Rule::new("trial", Quota::new(1, Duration::from_secs(60)).unwrap()).shadow(true))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    }));
    let mut codes = Vec::new();
    for _ in 0..5 {
        let req = Request::builder().uri("/x").body(Body::empty()).unwrap();
        codes.push(svc.clone().oneshot(req).await.unwrap().status().as_u16());
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let snap = take(&snap);
    let rule = |rule, outcome| {
        counter(
            &snap,
            REQUESTS_TOTAL,
            &[("rule", rule), ("outcome", outcome)],
        )
    };
    assert_eq!(rule("global", "admitted"), 3);
    assert_eq!(rule("global", "limited"), 2);
    assert_eq!(rule("global", "shadow_limited"), 0);
    // The shadow rule admits its first request, then would have refused each of the next
    // four (also those the enforced rule refused).
    assert_eq!(rule("trial", "admitted"), 1);
    assert_eq!(rule("trial", "shadow_limited"), 4);
    assert_eq!(rule("trial", "limited"), 0);
    // One store decision timed per checked request.
    match value(
        &snap,
        tower_throttle::telemetry::STORE_DURATION_SECONDS,
        &[],
    ) {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 5),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn client_counts_retries_by_reason_and_the_give_up() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mock = Mock::with_fallback(vec![], status(503));
    let svc = BackoffLayer::builder()
        .backoff(
            Backoff::exponential(secs(1.0), 2.0)
                .unwrap()
                .jitter(Jitter::None),
        )
        .budget(None)
        .max_retries(2)
        .build()
        .unwrap()
        .layer(mock.service());
    let req = Request::builder()
        .uri("http://api.test/v1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.retry_error().is_some(), "{err}");
    assert_eq!(mock.hits().len(), 3);
    let snap = take(&snap);
    let retries = |reason| {
        value(
            &snap,
            CLIENT_RETRIES_TOTAL,
            &[("layer", "backoff"), ("reason", reason)],
        )
    };
    assert_eq!(retries("status"), Some(&DebugValue::Counter(2)));
    assert_eq!(retries("connection"), None);
    assert_eq!(
        counter(
            &snap,
            CLIENT_GIVE_UPS_TOTAL,
            &[("layer", "backoff"), ("reason", "exhausted")]
        ),
        1
    );
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://api.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn histogram(snap: &Snap, name: &str) -> Vec<f64> {
    match value(snap, name, &[]) {
        Some(DebugValue::Histogram(v)) => {
            let mut v: Vec<f64> = v.iter().map(|x| x.into_inner()).collect();
            v.sort_by(f64::total_cmp);
            v
        }
        other => panic!("{name}: {other:?} in {snap:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_gate_counts_and_times_the_requests_it_holds() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mock = Mock::new(vec![mock::with(429, &[("retry-after", "10")])]);
    let svc = tower_throttle::RetryAfterLayer::builder()
        .release_jitter(Duration::ZERO)
        .build()
        .unwrap()
        .layer(mock.service());
    let first = tokio::spawn(svc.clone().oneshot(get("/v1/users")));
    tokio::time::sleep(secs(1.0)).await;
    let held = svc.oneshot(get("/v1/users")).await.unwrap();
    assert_eq!(held.status().as_u16(), 200);
    assert_eq!(first.await.unwrap().unwrap().status().as_u16(), 200);
    let snap = take(&snap);
    assert_eq!(counter(&snap, GATE_WAITS_TOTAL, &[]), 1);
    assert_eq!(histogram(&snap, GATE_WAIT_SECONDS), [9.0]);
    assert_eq!(
        counter(
            &snap,
            CLIENT_RETRIES_TOTAL,
            &[("layer", "retry_after"), ("reason", "status")]
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn pacing_waits_are_recorded_exactly() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let layer = RateLimitLayer::builder()
        .rule(Rule::new(
            "api",
            Quota::new(2, Duration::from_secs(1)).unwrap(),
        ))
        .build()
        .unwrap()
        .pacing()
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    let tasks: Vec<_> = (0..4)
        .map(|i| tokio::spawn(svc.clone().oneshot(get(&format!("/item/{i}")))))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status().as_u16(), 200);
    }
    let snap = take(&snap);
    // 2 per second: a burst of 2, then one every 0.5 s.
    assert_eq!(histogram(&snap, PACING_WAIT_SECONDS), [0.0, 0.0, 0.5, 1.0]);
}
