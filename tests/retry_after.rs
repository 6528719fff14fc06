//! RetryAfterLayer under paused time: exact waits, HTTP-dates, the endpoint gate, max_wait.

#[path = "support/mock.rs"]
mod mock;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use mock::{secs, status, with, Mock};
use tower::{Layer, ServiceExt};
use tower_throttle::retry_after::{LongWait, RetryAfterLayer};
use tower_throttle::RetryError;

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://api.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn exact() -> tower_throttle::retry_after::RetryAfterLayerBuilder {
    RetryAfterLayer::builder().release_jitter(Duration::ZERO)
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
