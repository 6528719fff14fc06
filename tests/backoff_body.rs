//! `BackoffLayerBuilder::retry_if_body` under paused time: delays read from the body, hint
//! modes, what is never read, idempotency, bodies over the bound or failing, validation.

#[path = "support/mock.rs"]
mod mock;

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use mock::{json, secs, status, Mock, Reply};
use tower::{Layer, ServiceExt};
use tower_throttle::backoff::{
    Backoff, BackoffError, BackoffLayer, BackoffLayerBuilder, BodyDecision, HintMode, Jitter,
};
use tower_throttle::ReplayBody;

fn get() -> Request<Full<Bytes>> {
    Request::get("http://api.test/jobs/1")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// 1 s × 2ⁿ, no jitter, no budget, no listed status.
fn plain() -> BackoffLayerBuilder {
    BackoffLayer::builder()
        .backoff(
            Backoff::exponential(secs(1.0), 2.0)
                .unwrap()
                .jitter(Jitter::None),
        )
        .statuses([])
        .budget(None)
}

/// Reads `{"retry_after_ms": N}`: a delay hint in the body.
fn hint_in_body(_: StatusCode, _: &http::HeaderMap, body: &[u8]) -> BodyDecision {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match v["retry_after_ms"].as_u64() {
        Some(ms) => BodyDecision::RetryAfter(Duration::from_millis(ms)),
        None => BodyDecision::Return,
    }
}

fn gaps(mock: &Mock) -> Vec<Duration> {
    mock.times().windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn a_delay_read_from_the_body_is_waited_exactly() {
    let mock = Mock::new(vec![
        json(r#"{"retry_after_ms": 1500}"#),
        json(r#"{"retry_after_ms": 250}"#),
        json(r#"{"done": true}"#),
    ]);
    let svc = plain()
        .retry_if_body(hint_in_body)
        .build()
        .unwrap()
        .layer(mock.service());
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(
        res.body().buffered().map(|b| &b[..]),
        Some(&br#"{"done": true}"#[..])
    );
    assert_eq!(gaps(&mock), [secs(1.5), secs(0.25)]);
}

#[tokio::test(start_paused = true)]
async fn the_hint_mode_applies_to_a_body_delay_as_to_a_header() {
    // Retry 0's backoff is 1 s: at least that, or the schedule alone.
    for (mode, expect) in [(HintMode::AtLeastBackoff, 1.0), (HintMode::Ignore, 1.0)] {
        let mock = Mock::new(vec![json(r#"{"retry_after_ms": 300}"#), json("{}")]);
        let svc = plain()
            .hint_mode(mode)
            .retry_if_body(hint_in_body)
            .build()
            .unwrap()
            .layer(mock.service());
        svc.oneshot(get()).await.unwrap();
        assert_eq!(gaps(&mock), [secs(expect)], "{mode:?}");
    }
    let mock = Mock::new(vec![json(r#"{"retry_after_ms": 3000}"#), json("{}")]);
    let svc = plain()
        .hint_mode(HintMode::AtLeastBackoff)
        .retry_if_body(hint_in_body)
        .build()
        .unwrap()
        .layer(mock.service());
    svc.oneshot(get()).await.unwrap();
    assert_eq!(gaps(&mock), [secs(3.0)]);
}

#[tokio::test(start_paused = true)]
async fn a_hostile_body_delay_is_capped_at_one_day() {
    let mock = Mock::new(vec![
        json(r#"{"retry_after_ms": 18446744073709551615}"#),
        json("{}"),
    ]);
    let svc = plain()
        .retry_if_body(hint_in_body)
        .build()
        .unwrap()
        .layer(mock.service());
    svc.oneshot(get()).await.unwrap();
    assert_eq!(gaps(&mock), [Duration::from_secs(86_400)]);
}

#[tokio::test(start_paused = true)]
async fn a_body_delay_respects_max_elapsed() {
    let mock = Mock::new(vec![json(r#"{"retry_after_ms": 120000}"#)]);
    let svc = plain()
        .max_elapsed(secs(60.0))
        .retry_if_body(hint_in_body)
        .build()
        .unwrap()
        .layer(mock.service());
    let err = svc.oneshot(get()).await.unwrap_err();
    let err = err.retry_error().expect("a RetryError");
    assert_eq!(err.last_status(), Some(StatusCode::OK));
    assert_eq!(mock.times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_not_retried_for_their_body() {
    let mock = Mock::new(vec![json(r#"{"retry_after_ms": 10}"#)]);
    let svc = plain()
        .retry_if_body(hint_in_body)
        .build()
        .unwrap()
        .layer(mock.service());
    let post = Request::builder()
        .method(Method::POST)
        .uri("http://api.test/jobs")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let res = svc.oneshot(post).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(mock.times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn listed_statuses_are_retried_whether_or_not_the_body_was_read() {
    // A 503 over the bound: not read, still retried for its status, on the schedule.
    let big = Bytes::from(vec![b'x'; 100]);
    let mock = Mock::new(vec![Reply::Body(503, Vec::new(), big), status(200)]);
    let svc = plain()
        .statuses([StatusCode::SERVICE_UNAVAILABLE])
        .retry_if_body(|_, _, _| BodyDecision::Return)
        .max_response_bytes(10)
        .build()
        .unwrap()
        .layer(mock.service());
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(gaps(&mock), [secs(1.0)]);
}

#[tokio::test(start_paused = true)]
async fn grpc_bodies_are_never_read_or_asked_about() {
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = asked.clone();
    let grpc = Reply::Body(
        200,
        vec![("content-type", "application/grpc".to_owned())],
        Bytes::from_static(b"\0\0\0\0\x02hi"),
    );
    let mock = Mock::new(vec![grpc]);
    let svc = plain()
        .retry_if_body(move |_, _, _| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            BodyDecision::Retry
        })
        .build()
        .unwrap()
        .layer(mock.service());
    let res = svc.oneshot(get()).await.unwrap();
    assert!(!res.body().is_buffered());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"\0\0\0\0\x02hi");
    assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(mock.times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_failing_while_read_is_handed_on_with_its_error_and_not_retried() {
    let svc = tower::service_fn(|_req: Request<ReplayBody>| async {
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(br#"{"status":"PEN"#))),
            Err(io::Error::from(io::ErrorKind::ConnectionReset)),
        ];
        Ok::<_, Infallible>(Response::new(StreamBody::new(stream::iter(frames))))
    });
    let svc = plain()
        .retry_if_body(|_, _, _| BodyDecision::Retry)
        .build()
        .unwrap()
        .layer(svc);
    let res = svc.oneshot(get()).await.unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], br#"{"status":"PEN"#);
    let err = body.frame().await.unwrap().unwrap_err();
    let io = err
        .downcast_ref::<io::Error>()
        .expect("the body's own error");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_layer_and_the_attempt_limit_holds() {
    let mock = Mock::with_fallback(vec![], json(r#"{"retry_after_ms": 100}"#));
    let layer = plain()
        .max_retries(2)
        .retry_if_body(hint_in_body)
        .build()
        .unwrap();
    let svc = layer.clone().layer(mock.service());
    let err = svc.oneshot(get()).await.unwrap_err();
    assert_eq!(err.retry_error().map(|e| e.attempts()), Some(3));
    assert_eq!(gaps(&mock), [secs(0.1), secs(0.1)]);
}

#[test]
fn a_zero_bound_is_refused() {
    let err = plain()
        .retry_if_body(|_, _, _| BodyDecision::Return)
        .max_response_bytes(0)
        .build()
        .unwrap_err();
    assert_eq!(err, BackoffError::ZeroMaxResponseBytes);
    assert_eq!(
        err.to_string(),
        "backoff max_response_bytes must be above zero"
    );
}

#[test]
fn the_body_reading_stack_is_send_and_clone() {
    fn send_clone<T: Send + Clone>(_: &T) {}
    fn send_future<F: std::future::Future + Send>(_: &F) {}
    let mock = Mock::new(vec![]);
    let svc = plain()
        .retry_if_body(|_, _, _| BodyDecision::Return)
        .build()
        .unwrap()
        .layer(mock.service());
    send_clone(&svc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let fut = svc.oneshot(get());
    send_future(&fut);
    let res = rt.block_on(fut).unwrap();
    fn send_body<B: http_body::Body + Send + Unpin + 'static>(_: &B) {}
    send_body(res.body());
}
