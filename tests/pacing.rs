//! Client mode (PacingLayer) under paused time: FIFO pacing, several limits, concurrency,
//! queue limits, cancellation and usage quotas.

#[path = "support/mock.rs"]
mod mock;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use mock::{secs, Mock};
use tower::{Layer, ServiceExt};
use tower_throttle::headers::GrpcCode;
use tower_throttle::key::Header;
use tower_throttle::pacing::{PacingError, UsageQuota, UsageStatus};
use tower_throttle::{MissingKey, Quota, RateLimitLayer, Route, Rule};

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://api.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn tenant(path: &str, tenant: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://api.test{path}"))
        .header("x-tenant", tenant)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn pacing_error(e: tower_throttle::Error) -> PacingError {
    *e.into_inner()
        .downcast::<PacingError>()
        .expect("a PacingError")
}

fn quota(count: u32, secs: u64) -> Quota {
    Quota::new(count, Duration::from_secs(secs)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn requests_wait_their_turn_in_order_instead_of_being_refused() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("api", quota(2, 1)))
        .build()
        .unwrap()
        .pacing()
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(get(&format!("/item/{i}"))).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let hits: Vec<(String, Duration)> = mock.hits().into_iter().map(|h| (h.path, h.at)).collect();
    let expected: Vec<(String, Duration)> = [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("/item/{i}"), secs(*t)))
        .collect();
    assert_eq!(hits, expected, "FIFO, at exactly the admitted instants");
    let stats = layer.handle().rule("api").unwrap();
    assert_eq!((stats.admitted, stats.limited), (6, 4));
}

#[tokio::test(start_paused = true)]
async fn several_limits_at_once_and_the_wait_limit() {
    // Clay: 10 per second and 20 per hour.
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("per_second", Quota::per_second(10).unwrap()))
        .rule(Rule::new("per_hour", Quota::per_hour(20).unwrap()))
        .build()
        .unwrap()
        .pacing()
        .max_queue_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    for _ in 0..20 {
        assert_eq!(
            svc.clone().oneshot(get("/x")).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let times = mock.times();
    assert_eq!(times[9], secs(0.0));
    assert_eq!(times[10], secs(0.1));
    assert_eq!(times[19], secs(1.0));
    // The 21st would be admitted by the hourly rule only in 180 s: past the 60 s limit,
    // it fails at once, unsent.
    let err = pacing_error(svc.oneshot(get("/x")).await.unwrap_err());
    match err {
        PacingError::WaitTooLong { rule, wait, .. } => {
            assert_eq!(rule, "per_hour");
            assert_eq!(wait, secs(179.0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.times().len(), 20);
}

#[tokio::test(start_paused = true)]
async fn keyed_concurrency_cap() {
    let layer = RateLimitLayer::builder()
        .rule(
            Rule::new("tenant", quota(100, 1))
                .key(Header::new("x-tenant".parse().unwrap()))
                .concurrency(1),
        )
        .build()
        .unwrap()
        .pacing()
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let slow = tower::ServiceBuilder::new()
        .then(|r| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            r
        })
        .service(mock.service());
    let svc = layer.layer(slow);
    let tasks: Vec<_> = [("a", 0), ("a", 1), ("b", 2), ("a", 3)]
        .into_iter()
        .map(|(t, i)| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(tenant(&format!("/{i}"), t)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let hits: Vec<(String, Duration)> = mock.hits().into_iter().map(|h| (h.path, h.at)).collect();
    assert_eq!(
        hits,
        [
            ("/0".into(), secs(0.0)),
            ("/2".into(), secs(0.0)),
            ("/1".into(), secs(1.0)),
            ("/3".into(), secs(2.0)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_and_cancellation_give_the_place_back() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("slow", quota(1, 10)))
        .build()
        .unwrap()
        .pacing()
        .max_queue_wait(Duration::from_secs(15))
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    svc.clone().oneshot(get("/1")).await.unwrap();
    // #2 waits for t = 10 s, holding the turn; #3 queues behind it.
    let second = tokio::spawn(svc.clone().oneshot(get("/2")));
    tokio::time::sleep(secs(1.0)).await;
    let third = tokio::spawn(svc.clone().oneshot(get("/3")));
    tokio::time::sleep(secs(1.0)).await;
    // Cancel #2: #3 takes its place and goes at 10 s, not 20 s.
    second.abort();
    assert!(second.await.unwrap_err().is_cancelled());
    assert_eq!(third.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(mock.times(), [secs(0.0), secs(10.0)]);

    // Behind a request that holds the turn past its own limit, a queued one times out.
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("slow", quota(1, 10)))
        .build()
        .unwrap()
        .pacing()
        .max_queue_wait(Duration::from_secs(12))
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    svc.clone().oneshot(get("/1")).await.unwrap();
    let second = tokio::spawn(svc.clone().oneshot(get("/2")));
    tokio::time::sleep(secs(5.0)).await;
    let start = tokio::time::Instant::now();
    let err = pacing_error(svc.oneshot(get("/3")).await.unwrap_err());
    // #3 needed the turn (free at 10 s) and then 10 s more: past its 12 s at 20 s.
    assert!(matches!(err, PacingError::WaitTooLong { .. }), "{err:?}");
    assert_eq!(start.elapsed(), secs(5.0));
    second.await.unwrap().unwrap();
    assert_eq!(mock.times(), [secs(0.0), secs(10.0)]);
}

#[tokio::test(start_paused = true)]
async fn usage_quota_warns_then_fails_per_key() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("api", Quota::per_second(100).unwrap()))
        .build()
        .unwrap()
        .pacing()
        .usage_quota(
            UsageQuota::lifetime("submissions", 5)
                .warn_at(4)
                .key(Header::new("x-tenant".parse().unwrap())),
        )
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    for i in 1..=5u64 {
        let res = svc
            .clone()
            .oneshot(tenant("/submit", "hook-1"))
            .await
            .unwrap();
        let status = &res.extensions().get::<Vec<UsageStatus>>().unwrap()[0];
        assert_eq!(status.lifetime_used, i);
        assert_eq!(status.lifetime_remaining, Some(5 - i));
        assert_eq!(status.warned, i == 4);
    }
    assert_eq!(layer.usage_warnings("submissions"), Some(1));
    let err = pacing_error(
        svc.clone()
            .oneshot(tenant("/submit", "hook-1"))
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(
            err,
            PacingError::UsageExhausted {
                lifetime_used: 5,
                ..
            }
        ),
        "{err:?}"
    );
    // Another key has its own quota; the refused request was not sent.
    assert!(svc.oneshot(tenant("/submit", "hook-2")).await.is_ok());
    assert_eq!(mock.times().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn missing_key_rejection_is_an_error_not_a_send() {
    let layer = RateLimitLayer::builder()
        .rule(
            Rule::new("tenant", quota(1, 1))
                .route(Route::get("/t"))
                .key(Header::new("x-tenant".parse().unwrap()))
                .on_missing_key(MissingKey::Reject),
        )
        .build()
        .unwrap()
        .pacing()
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    let err = pacing_error(svc.clone().oneshot(get("/t")).await.unwrap_err());
    assert!(matches!(err, PacingError::MissingKey { .. }));
    // Routes no rule covers go straight through.
    assert!(svc.oneshot(get("/other")).await.is_ok());
    assert_eq!(mock.times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_concurrency_slot_times_out() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("one_at_a_time", quota(100, 1)).concurrency(1))
        .build()
        .unwrap()
        .pacing()
        .max_queue_wait(Duration::from_secs(3))
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let slow = tower::ServiceBuilder::new()
        .then(|r| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            r
        })
        .service(mock.service());
    let svc = layer.layer(slow);
    let first = tokio::spawn(svc.clone().oneshot(get("/1")));
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    let err = pacing_error(svc.oneshot(get("/2")).await.unwrap_err());
    assert!(matches!(err, PacingError::QueueTimeout { waited, .. } if waited == secs(3.0)));
    assert_eq!(start.elapsed(), secs(3.0));
    first.await.unwrap().unwrap();
    assert_eq!(mock.times(), [secs(0.0)]);
}

#[tokio::test(start_paused = true)]
async fn adaptive_pacing_spreads_the_remaining_quota_and_backs_off_on_429() {
    use tower_throttle::pacing::Aimd;
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("loose", Quota::per_second(1000).unwrap()))
        .build()
        .unwrap()
        .pacing()
        .adaptive(Aimd::new(10.0).unwrap())
        .build()
        .unwrap();
    let low = mock::with(
        200,
        &[("x-ratelimit-remaining", "4"), ("x-ratelimit-reset", "10")],
    );
    let mock = Mock::new(vec![
        low.clone(),
        low.clone(),
        mock::with(429, &[("retry-after", "5")]),
        mock::status(200),
    ]);
    let svc = layer.layer(mock.service());
    for _ in 0..4 {
        let _ = svc.clone().oneshot(get("/jobs")).await.unwrap();
    }
    // 0 s at the initial 10/s; then 4 left for 10 s: 0.4/s, one every 2.5 s; the 429
    // halves that to 0.2/s and holds the endpoint for the 5 s the server asked.
    assert_eq!(mock.times(), [secs(0.0), secs(0.1), secs(2.6), secs(7.6)]);
    assert_eq!(layer.adaptive_rate("api.test/jobs"), Some(0.2 + 5.0 * 1.0));
}

/// A unary gRPC call to `/helloworld.Greeter/SayHello` (as a tonic client sends it), with
/// `x-api-key: key` when there is a key.
fn grpc_call(key: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::post("http://api.test/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

/// The rule of examples/tonic_server.rs, on the client side: 3 calls per 10 s per key.
fn per_api_key_pacing(max_queue_wait: Duration) -> tower_throttle::pacing::PacingLayer {
    RateLimitLayer::builder()
        .rule(
            Rule::new("per_api_key", quota(3, 10))
                .route(Route::grpc_method("helloworld.Greeter", "SayHello"))
                .key(Header::new("x-api-key".parse().unwrap()))
                .on_missing_key(MissingKey::Reject),
        )
        .build()
        .unwrap()
        .pacing()
        .max_queue_wait(max_queue_wait)
        .build()
        .unwrap()
}

/// The status a tonic caller reads from a pacing error (tonic's own `Status::from_error`),
/// and its pushback metadata.
#[cfg(feature = "tonic")]
fn as_tonic_reads(e: tower_throttle::Error) -> (tonic::Code, String, Option<String>) {
    let status = tonic::Status::from_error(Box::new(e));
    let pushback = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .map(|v| v.to_str().unwrap().to_owned());
    (status.code(), status.message().to_owned(), pushback)
}

/// A gRPC call that pacing does not send fails with an error that says its gRPC code and
/// wait; with feature `tonic` its source is the `tonic::Status` a tonic caller gets (not
/// `UNKNOWN`); without, there is no source. An HTTP request's error never has one.
#[tokio::test(start_paused = true)]
async fn a_grpc_call_that_is_not_sent_says_its_grpc_status() {
    let layer = per_api_key_pacing(Duration::from_secs(1));
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    for _ in 0..3 {
        svc.clone().oneshot(grpc_call(Some("k1"))).await.unwrap();
    }
    // The 4th would be admitted in 10/3 s, past the 1 s limit: not sent.
    let err = svc
        .clone()
        .oneshot(grpc_call(Some("k1")))
        .await
        .unwrap_err();
    let message = err.to_string();
    let pacing = err
        .downcast_ref::<PacingError>()
        .expect("still a PacingError");
    assert!(
        matches!(pacing, PacingError::WaitTooLong { rule, .. } if rule == "per_api_key"),
        "{pacing:?}"
    );
    assert_eq!(pacing.grpc_code(), GrpcCode::ResourceExhausted);
    // 10/3 s in whole nanoseconds; the pushback rounds it up, never early.
    let wait = Duration::from_nanos(3_333_333_333);
    assert_eq!(pacing.retry_pushback(), Some(wait));
    #[cfg(feature = "tonic")]
    assert_eq!(
        as_tonic_reads(err),
        (tonic::Code::ResourceExhausted, message, Some("3334".into()))
    );
    #[cfg(not(feature = "tonic"))]
    {
        assert!(std::error::Error::source(&err).is_none(), "{message}");
    }

    // A missing key: INVALID_ARGUMENT (the call lacks what the client's own rule needs).
    let err = svc.clone().oneshot(grpc_call(None)).await.unwrap_err();
    let pacing = err.downcast_ref::<PacingError>().unwrap();
    assert!(
        matches!(pacing, PacingError::MissingKey { .. }),
        "{pacing:?}"
    );
    assert_eq!(pacing.grpc_code(), GrpcCode::InvalidArgument);
    #[cfg(feature = "tonic")]
    {
        let (code, _, pushback) = as_tonic_reads(err);
        assert_eq!((code, pushback), (tonic::Code::InvalidArgument, None));
    }

    // The same wait on an HTTP request: no status in the chain, whatever the features.
    let http = Request::post("http://api.test/helloworld.Greeter/SayHello")
        .header("x-api-key", "k1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = svc.oneshot(http).await.unwrap_err();
    assert!(err.is::<PacingError>());
    assert!(std::error::Error::source(&err).is_none(), "{err}");
    assert_eq!(mock.times(), [secs(0.0); 3], "refused calls are not sent");
}

/// A used-up usage window: RESOURCE_EXHAUSTED with the window's reset as the pushback; a
/// used-up lifetime never resets, so its status has none.
#[tokio::test(start_paused = true)]
async fn a_used_up_quota_of_a_grpc_call_says_when_it_resets() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("loose", Quota::per_second(1000).unwrap()))
        .build()
        .unwrap()
        .pacing()
        .usage_quota(UsageQuota::per_window(
            "hourly",
            1,
            Duration::from_secs(3600),
        ))
        .usage_quota(UsageQuota::lifetime("lifetime", 2))
        .build()
        .unwrap();
    let mock = Mock::new(vec![]);
    let svc = layer.layer(mock.service());
    svc.clone().oneshot(grpc_call(None)).await.unwrap();
    tokio::time::advance(Duration::from_secs(600)).await;
    let err = svc.clone().oneshot(grpc_call(None)).await.unwrap_err();
    let pacing = err.downcast_ref::<PacingError>().unwrap();
    assert_eq!(pacing.grpc_code(), GrpcCode::ResourceExhausted);
    assert_eq!(pacing.retry_pushback(), Some(Duration::from_secs(3000)));
    #[cfg(feature = "tonic")]
    {
        let (code, _, pushback) = as_tonic_reads(err);
        assert_eq!(
            (code, pushback.as_deref()),
            (tonic::Code::ResourceExhausted, Some("3000000"))
        );
    }
    // The next window: the 2nd call is sent; the 3rd, a window later, finds the
    // lifetime used up, with no reset to push back to.
    tokio::time::advance(Duration::from_secs(3000)).await;
    svc.clone().oneshot(grpc_call(None)).await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    let err = svc.oneshot(grpc_call(None)).await.unwrap_err();
    let pacing = err.downcast_ref::<PacingError>().unwrap();
    assert!(
        matches!(pacing, PacingError::UsageExhausted { usage_quota, .. } if usage_quota == "lifetime"),
        "{pacing:?}"
    );
    assert_eq!(pacing.retry_pushback(), None);
    #[cfg(feature = "tonic")]
    {
        let (code, _, pushback) = as_tonic_reads(err);
        assert_eq!((code, pushback), (tonic::Code::ResourceExhausted, None));
    }
    assert_eq!(
        mock.times(),
        [secs(0.0), secs(3600.0)],
        "refused calls are not sent"
    );
}

/// Adaptive pacing on gRPC: a trailers-only RESOURCE_EXHAUSTED (HTTP 200, the status in
/// the headers) is a refusal as a 429 is: the rate halves and the endpoint is held for
/// the pushback, which comes before a `Retry-After` on a gRPC response. A trailers-only
/// UNAVAILABLE is no rate-limit signal.
#[tokio::test(start_paused = true)]
async fn adaptive_pacing_backs_off_on_a_grpc_refusal_for_the_pushback() {
    use tower_throttle::pacing::Aimd;
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("loose", Quota::per_second(1000).unwrap()))
        .build()
        .unwrap()
        .pacing()
        .adaptive(Aimd::new(2.0).unwrap().increase_per_second(0.0).unwrap())
        .build()
        .unwrap();
    let mock = Mock::new(vec![
        mock::with(
            200,
            &[
                ("content-type", "application/grpc"),
                ("grpc-status", "8"),
                ("grpc-message", "rate%20limit"),
                ("retry-after", "9"),
                ("grpc-retry-pushback-ms", "3334"),
            ],
        ),
        mock::with(
            200,
            &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "100")],
        ),
        mock::status(200),
    ]);
    let svc = layer.layer(mock.service());
    for _ in 0..4 {
        let _ = svc.clone().oneshot(grpc_call(None)).await.unwrap();
    }
    let endpoint = "api.test/helloworld.Greeter/SayHello";
    assert_eq!(layer.adaptive_rate(endpoint), Some(1.0), "halved once");
    // 0 s; the refusal holds until 3.334 s (not 9 s, nor 0.5 s at the rate); then one
    // every second at the halved rate, UNAVAILABLE changing nothing.
    assert_eq!(
        mock.times(),
        [secs(0.0), secs(3.334), secs(4.334), secs(5.334)]
    );
}
