//! RetryAfterLayer under paused time: exact waits, HTTP-dates, the endpoint gate, max_wait.

#[path = "support/mock.rs"]
mod mock;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use mock::{secs, status, with, Mock};
use tower::{Layer, ServiceExt};
use tower_throttle::headers::GrpcCode;
use tower_throttle::retry_after::{LongWait, RetryAfterConfigError, RetryAfterLayer};
use tower_throttle::RetryError;

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://api.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn exact() -> tower_throttle::retry_after::RetryAfterLayerBuilder {
    RetryAfterLayer::builder()
        .release_jitter(Duration::ZERO)
        .spread_bare_delays(false)
}

fn retry_error(e: tower_throttle::Error) -> RetryError {
    *e.into_inner()
        .downcast::<RetryError>()
        .expect("a RetryError")
}

#[tokio::test(start_paused = true)]
async fn waits_exactly_the_seconds_asked() {
    let mock = Mock::new(vec![
        with(429, &[("retry-after", "2")]),
        with(503, &[("retry-after", "1.5")]),
    ]);
    let svc = exact().build().unwrap().layer(mock.service());
    let res = svc.oneshot(get("/v1/users")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(mock.times(), [secs(0.0), secs(2.0), secs(3.5)]);
}

#[tokio::test(start_paused = true)]
async fn http_dates_are_measured_against_the_date_header() {
    let date = "Sun, 06 Nov 1994 08:49:37 GMT";
    for retry_after in [
        "Sun, 06 Nov 1994 08:49:47 GMT",
        "Sunday, 06-Nov-94 08:49:47 GMT",
        "Sun Nov  6 08:49:47 1994",
    ] {
        let mock = Mock::new(vec![with(
            429,
            &[("date", date), ("retry-after", retry_after)],
        )]);
        let svc = exact().build().unwrap().layer(mock.service());
        assert_eq!(
            svc.oneshot(get("/x")).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(mock.times(), [secs(0.0), secs(10.0)], "{retry_after}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_without_guidance_waits_the_default() {
    for (default, expected) in [(60.0, secs(60.0)), (5.0, secs(5.0))] {
        let mock = Mock::new(vec![status(429)]);
        let svc = exact()
            .default_delay(secs(default))
            .build()
            .unwrap()
            .layer(mock.service());
        assert_eq!(
            svc.oneshot(get("/x")).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(mock.times(), [secs(0.0), expected]);
    }
}

#[tokio::test(start_paused = true)]
async fn other_statuses_are_returned_untouched() {
    for code in [200, 400, 404, 500, 502] {
        let mock = Mock::new(vec![with(code, &[("retry-after", "1")])]);
        let svc = exact().build().unwrap().layer(mock.service());
        assert_eq!(
            svc.oneshot(get("/x")).await.unwrap().status().as_u16(),
            code
        );
        assert_eq!(mock.times().len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries_with_the_hint() {
    let mock = Mock::with_fallback(vec![], with(429, &[("retry-after", "1")]));
    let svc = exact()
        .max_retries(3)
        .build()
        .unwrap()
        .layer(mock.service());
    let err = retry_error(svc.oneshot(get("/x")).await.unwrap_err());
    assert!(
        matches!(err, RetryError::Exhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.last_status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(err.hint(), Some(secs(1.0)));
    assert_eq!(mock.times(), [secs(0.0), secs(1.0), secs(2.0), secs(3.0)]);
}

#[tokio::test(start_paused = true)]
async fn the_gate_holds_new_requests_to_a_blocked_endpoint() {
    let mock = Mock::new(vec![with(429, &[("retry-after", "10")])]);
    let svc = exact().build().unwrap().layer(mock.service());
    let first = tokio::spawn(svc.clone().oneshot(get("/v1/users")));
    let later = {
        let svc = svc.clone();
        tokio::spawn(async move {
            tokio::time::sleep(secs(1.0)).await;
            let other = svc.clone().oneshot(get("/v1/clients")).await.unwrap();
            let same = svc.oneshot(get("/v1/users")).await.unwrap();
            (other.status(), same.status())
        })
    };
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(later.await.unwrap(), (StatusCode::OK, StatusCode::OK));
    let hits: Vec<(String, Duration)> = mock.hits().into_iter().map(|h| (h.path, h.at)).collect();
    // Nothing reached /v1/users during the block; /v1/clients was not blocked.
    assert_eq!(
        hits,
        [
            ("/v1/users".to_owned(), secs(0.0)),
            ("/v1/clients".to_owned(), secs(1.0)),
            ("/v1/users".to_owned(), secs(10.0)),
            ("/v1/users".to_owned(), secs(10.0)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn released_requests_are_spread_upwards_only() {
    let mock = Mock::new(vec![with(429, &[("retry-after", "10")])]);
    let layer = RetryAfterLayer::builder()
        .release_jitter(Duration::from_millis(100))
        .seed(7)
        .build()
        .unwrap();
    let svc = layer.layer(mock.service());
    let first = tokio::spawn(svc.clone().oneshot(get("/b")));
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(
        layer.gate().unwrap().blocked_for("GET api.test/b"),
        Some(secs(9.0))
    );
    let waiting: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(get("/b"))))
        .collect();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    for t in waiting {
        assert_eq!(t.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let times = mock.times();
    assert_eq!(times[..2], [secs(0.0), secs(10.0)]);
    // Never before the server's time, at most 100 ms after it, and not all at once.
    assert_eq!(times.len(), 7);
    for t in &times[2..] {
        assert!(*t >= secs(10.0) && *t <= secs(10.1), "{times:?}");
    }
    let distinct: std::collections::BTreeSet<_> = times[2..].iter().collect();
    assert!(distinct.len() > 1, "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn max_wait_fails_fast_or_waits_the_cap() {
    let mock = Mock::new(vec![with(429, &[("retry-after", "3600")])]);
    let svc = exact()
        .max_wait(secs(60.0))
        .build()
        .unwrap()
        .layer(mock.service());
    let err = retry_error(svc.clone().oneshot(get("/x")).await.unwrap_err());
    assert!(matches!(
        err,
        RetryError::WaitTooLong { hint, max_wait, last_status: Some(StatusCode::TOO_MANY_REQUESTS), .. }
            if hint == secs(3600.0) && max_wait == secs(60.0)
    ));
    assert_eq!(mock.times(), [secs(0.0)]);
    // The endpoint is blocked for an hour: a new request fails at once, unsent.
    let err = retry_error(svc.oneshot(get("/x")).await.unwrap_err());
    assert!(
        matches!(
            err,
            RetryError::WaitTooLong {
                last_status: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.attempts(), 0);
    assert_eq!(mock.times().len(), 1);

    let mock = Mock::new(vec![with(429, &[("retry-after", "3600")])]);
    let svc = exact()
        .max_wait(secs(60.0))
        .on_long_wait(LongWait::WaitMax)
        .build()
        .unwrap()
        .layer(mock.service());
    assert_eq!(
        svc.oneshot(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(mock.times(), [secs(0.0), secs(60.0)]);
}

#[tokio::test(start_paused = true)]
async fn gate_can_be_disabled() {
    let mock = Mock::new(vec![with(429, &[("retry-after", "10")])]);
    let layer = exact().gate(false).build().unwrap();
    assert!(layer.gate().is_none());
    let svc = layer.layer(mock.service());
    let first = tokio::spawn(svc.clone().oneshot(get("/a")));
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(
        svc.oneshot(get("/a")).await.unwrap().status(),
        StatusCode::OK
    );
    first.await.unwrap().unwrap();
    assert_eq!(mock.times(), [secs(0.0), secs(1.0), secs(10.0)]);
}

/// A gRPC call, as tonic sends it: a POST to the method's path.
fn grpc_call(method: &str) -> Request<Full<Bytes>> {
    Request::post(format!("http://api.test/pkg.Svc/{method}"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A trailers-only gRPC response: HTTP 200, the status (and pushback) in the headers.
fn grpc(code: &'static str, pushback: Option<&'static str>) -> mock::Reply {
    let mut headers = vec![("content-type", "application/grpc"), ("grpc-status", code)];
    headers.extend(pushback.map(|ms| ("grpc-retry-pushback-ms", ms)));
    with(200, &headers)
}

#[tokio::test(start_paused = true)]
async fn a_grpc_pushback_blocks_the_method_and_is_waited_exactly() {
    let mock = Mock::new(vec![grpc("8", Some("2000")), grpc("14", Some("500"))]);
    let layer = exact().build().unwrap();
    let gate = layer.gate().unwrap().clone();
    let svc = layer.layer(mock.service());
    let first = tokio::spawn(svc.clone().oneshot(grpc_call("Get")));
    tokio::task::yield_now().await;
    assert_eq!(
        gate.blocked_for("POST api.test/pkg.Svc/Get"),
        Some(secs(2.0))
    );
    // Another method of the same service goes at once.
    let other = svc.clone().oneshot(grpc_call("List")).await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    let res = first.await.unwrap().unwrap();
    assert_eq!(
        res.headers().get("grpc-status"),
        None,
        "the mock's final OK"
    );
    // Get at 0 (8, pushback 2 s), List at 0 (14, pushback 0.5 s), List at 0.5, Get at 2.
    assert_eq!(mock.times(), [secs(0.0), secs(0.0), secs(0.5), secs(2.0)]);
    let paths: Vec<_> = mock.hits().iter().map(|h| h.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/pkg.Svc/Get",
            "/pkg.Svc/List",
            "/pkg.Svc/List",
            "/pkg.Svc/Get"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_codes_follow_the_grpc_rules() {
    // A retry code without pushback waits the default delay; HTTP statuses are not read
    // (a trailers-only refusal is a 200).
    let mock = Mock::new(vec![grpc("14", None)]);
    let layer = exact().default_delay(secs(5.0)).build().unwrap();
    let gate = layer.gate().unwrap().clone();
    layer
        .layer(mock.service())
        .oneshot(grpc_call("Get"))
        .await
        .unwrap();
    assert_eq!(mock.times(), [secs(0.0), secs(5.0)]);
    assert!(gate.blocked_endpoints().is_empty(), "no pushback, no block");

    // Not retried: RESOURCE_EXHAUSTED without pushback, a negative pushback, a code that
    // is never retried (even with a pushback, which then blocks nothing).
    for reply in [
        grpc("8", None),
        grpc("14", Some("-1")),
        grpc("3", Some("100")),
    ] {
        let mock = Mock::new(vec![reply]);
        let layer = exact().build().unwrap();
        let gate = layer.gate().unwrap().clone();
        let res = layer
            .layer(mock.service())
            .oneshot(grpc_call("Get"))
            .await
            .unwrap();
        assert!(res.headers().contains_key("grpc-status"));
        assert_eq!(mock.times(), [secs(0.0)]);
        assert!(gate.blocked_endpoints().is_empty());
    }

    // Listed codes are retried; a Retry-After on a gRPC response without pushback is its
    // delay.
    let mock = Mock::new(vec![with(
        200,
        &[("grpc-status", "8"), ("retry-after", "3")],
    )]);
    let layer = exact()
        .grpc_retry_codes([GrpcCode::ResourceExhausted])
        .build()
        .unwrap();
    layer
        .layer(mock.service())
        .oneshot(grpc_call("Get"))
        .await
        .unwrap();
    assert_eq!(mock.times(), [secs(0.0), secs(3.0)]);

    let err = exact()
        .grpc_retry_codes([GrpcCode::PermissionDenied])
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        RetryAfterConfigError::UnretryableGrpcCode(GrpcCode::PermissionDenied)
    );
}

/// Past `max_wait`, a gRPC call gets the server's response (not a `RetryError`); a new
/// call to the blocked method is refused unsent with a `RetryError` (carrying, with
/// feature `tonic`, the `tonic::Status` tonic reads), an HTTP request with none.
#[tokio::test(start_paused = true)]
async fn a_grpc_wait_past_max_wait() {
    let mock = Mock::new(vec![grpc("8", Some("120000"))]);
    let svc = exact()
        .max_wait(secs(60.0))
        .build()
        .unwrap()
        .layer(mock.service());
    let res = svc.clone().oneshot(grpc_call("Get")).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "8");
    let err = retry_error(svc.clone().oneshot(grpc_call("Get")).await.unwrap_err());
    assert!(
        matches!(err, RetryError::WaitTooLong { hint, last_status: None, .. } if hint == secs(120.0)),
        "{err:?}"
    );
    let source = std::error::Error::source(&err);
    #[cfg(feature = "tonic")]
    {
        let status = source.unwrap().downcast_ref::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "120000"
        );
    }
    #[cfg(not(feature = "tonic"))]
    assert!(source.is_none());
    // The same endpoint and method, without the gRPC content type: an HTTP request.
    let plain = Request::post("http://api.test/pkg.Svc/Get").body(Full::new(Bytes::new()));
    let err = retry_error(svc.oneshot(plain.unwrap()).await.unwrap_err());
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(mock.times(), [secs(0.0)]);
}
