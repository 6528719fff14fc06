//! What the retrying layers write to the logs: a span per attempt (the inner service's
//! events nest in it), a DEBUG event per retry scheduled (attempt, delay, reason), a WARN
//! per give-up (attempts, last status), an INFO when the gate starts blocking an endpoint
//! and a DEBUG when a request waits at it.

#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "support/mock.rs"]
mod mock;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use mock::{secs, with, Mock};
use tower::{Layer, ServiceExt};
use tower_throttle::retry_after::RetryAfterLayer;
use tracing::Level;

fn get() -> Request<Full<Bytes>> {
    Request::get("http://api.test/v1/users")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

const TARGET: &str = "tower_throttle";

/// The mock, logging each call (so the test sees in which span the inner service runs).
fn logged(
    mock: &Mock,
) -> tower::util::BoxCloneService<
    Request<tower_throttle::ReplayBody>,
    http::Response<Full<Bytes>>,
    std::io::Error,
> {
    let inner = mock.service();
    tower::util::BoxCloneService::new(tower::service_fn(move |req| {
        tracing::info!(target: "inner", "inner call");
        inner.clone().oneshot(req)
    }))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_are_logged_with_their_delay_and_reason_inside_attempt_spans() {
    let (captured, _guard) = log_capture::capture();
    let mock = Mock::new(vec![
        with(429, &[("retry-after", "2")]),
        with(503, &[("retry-after", "1")]),
    ]);
    let layer = RetryAfterLayer::builder()
        .release_jitter(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let res = layer.layer(logged(&mock)).oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(mock.times(), [secs(0.0), secs(2.0), secs(3.0)]);

    let spans: Vec<Option<String>> = captured
        .lines()
        .into_iter()
        .filter(|l| l.target == "inner")
        .map(|l| l.span)
        .collect();
    let span = |n: u32| {
        Some(format!(
            "attempt attempt={n} method=GET uri=http://api.test/v1/users"
        ))
    };
    assert_eq!(spans, [span(1), span(2), span(3)]);

    let retries: Vec<(Option<String>, Vec<String>)> = captured
        .at(Level::DEBUG, TARGET)
        .into_iter()
        .filter(|l| l.message == "retry scheduled")
        .map(|l| (l.span, l.fields))
        .collect();
    let fields = |attempt: u32, delay_ms: u64, status: u16| {
        vec![
            format!("attempt={attempt}"),
            format!("delay_ms={delay_ms}"),
            "reason=\"status\"".to_owned(),
            format!("status={status}"),
        ]
    };
    assert_eq!(
        retries,
        [
            (span(1), fields(1, 2000, 429)),
            (span(2), fields(2, 1000, 503))
        ]
    );
    let blocks: Vec<Vec<String>> = captured
        .at(Level::INFO, TARGET)
        .into_iter()
        .map(|l| l.fields)
        .collect();
    let block = |ms: u64| {
        vec![
            "endpoint=GET api.test/v1/users".to_owned(),
            format!("block_ms={ms}"),
        ]
    };
    assert_eq!(blocks, [block(2000), block(1000)]);
    assert!(captured.at(Level::WARN, TARGET).is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_give_up_is_one_warning_naming_attempts_and_last_status() {
    let (captured, _guard) = log_capture::capture();
    let refusal = || with(429, &[("retry-after", "1")]);
    let mock = Mock::new(vec![refusal(), refusal(), refusal(), refusal()]);
    let layer = RetryAfterLayer::builder()
        .release_jitter(std::time::Duration::ZERO)
        .max_retries(3)
        .build()
        .unwrap();
    let svc = layer.layer(logged(&mock));
    let err = svc.clone().oneshot(get()).await.unwrap_err();
    assert_eq!(err.retry_error().map(|e| e.attempts()), Some(4));
    let warns: Vec<(String, Vec<String>)> = captured
        .at(Level::WARN, TARGET)
        .into_iter()
        .map(|l| (l.message, l.fields))
        .collect();
    assert_eq!(
        warns,
        [(
            "gave up after 4 attempts; last: 429 Too Many Requests".to_owned(),
            vec!["attempts=4".to_owned(), "last_status=429".to_owned()]
        )]
    );
    // The give-up blocked the gate for 1 s: a new request waits there, and says so.
    let waits_before = captured.at(Level::DEBUG, TARGET).len();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let waits: Vec<Vec<String>> = captured.at(Level::DEBUG, TARGET)[waits_before..]
        .iter()
        .filter(|l| l.message == "waiting at the endpoint gate")
        .map(|l| l.fields.clone())
        .collect();
    assert_eq!(
        waits,
        [vec![
            "method=GET".to_owned(),
            "uri=http://api.test/v1/users".to_owned(),
            "wait_ms=1000".to_owned()
        ]]
    );
}
