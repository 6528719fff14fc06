//! Clari's job polling (shared/reference/clari-client-practices.md, `poll_with_backoff`)
//! under paused time, with the job's state in the JSON body as Clari sends it. The layers
//! and the poll function are the `clari_poll` example's own (examples/support/clari.rs).
//!
//! Reproduced first, on the stack the example had before (a header predicate, bare 429s
//! on the default Retry-After delays): against JSON answers the poll stopped after one
//! attempt and returned the pending job as if finished, and the waits after two bare
//! 429s were 5.01 s and 12.17 s (doubled, with jitter) instead of 5 s and 5 s.

#[path = "../examples/support/clari.rs"]
mod clari;
#[path = "support/mock.rs"]
mod mock;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clari::{layers, poll_with_backoff, PollError, MAX_ATTEMPTS, MAX_BODY_BYTES};
use http::StatusCode;
use mock::{cumulative, json, secs, status, with, Mock, Reply};
use tower::ServiceBuilder;
use tower_throttle::backoff::Backoff;

const PENDING: &str = r#"{"jobId":"42","status":"PENDING"}"#;
const COMPLETED: &str = r#"{"jobId":"42","status":"COMPLETED","rows":1280}"#;
const FAILED: &str = r#"{"jobId":"42","status":"FAILED","error":"quota"}"#;

/// Polls job 42 on `mock` with the example's stack; the outcome and the job states the
/// predicate saw.
async fn poll(
    mock: &Mock,
    max_attempts: u32,
) -> (Result<serde_json::Value, PollError>, Vec<String>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (retry_after, backoff) = layers(max_attempts, move |s| {
        log.lock().unwrap().push(s.to_owned())
    })
    .unwrap();
    let svc = ServiceBuilder::new()
        .layer(retry_after)
        .layer(backoff)
        .service(mock.service());
    let out = poll_with_backoff(svc, "http://api.test", "42", Some("key")).await;
    let seen = seen.lock().unwrap().clone();
    (out, seen)
}

fn gaps(mock: &Mock) -> Vec<Duration> {
    mock.times().windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn pending_pending_completed_waits_5_then_7_5_s() {
    let mock = Mock::new(vec![json(PENDING), json(PENDING), json(COMPLETED)]);
    let (out, seen) = poll(&mock, MAX_ATTEMPTS).await;
    let job = out.unwrap();
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(
        job["rows"], 1280,
        "the caller gets the final body, byte for byte"
    );
    assert_eq!(gaps(&mock), [secs(5.0), secs(7.5)]);
    assert_eq!(seen, ["PENDING", "PENDING", "COMPLETED"]);
    let hits = mock.hits();
    assert!(hits.iter().all(|h| h.path == "/jobs/42"));
}

#[tokio::test(start_paused = true)]
async fn a_bare_429_waits_5_s_and_counts_as_an_attempt() {
    // The guide's loop: attempt 0 pending (5 s), attempt 1 is the 429 (5 s, its default),
    // attempt 2 pending waits 5 × 1.5² = 11.25 s, attempt 3 completes.
    let mock = Mock::new(vec![
        json(PENDING),
        status(429),
        json(PENDING),
        json(COMPLETED),
    ]);
    let (out, _) = poll(&mock, MAX_ATTEMPTS).await;
    assert_eq!(out.unwrap()["status"], "COMPLETED");
    assert_eq!(gaps(&mock), [secs(5.0), secs(5.0), secs(11.25)]);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_waits_exactly_that() {
    let mock = Mock::new(vec![
        with(429, &[("retry-after", "3")]),
        with(429, &[("retry-after", "12")]),
        json(PENDING),
        json(COMPLETED),
    ]);
    let (out, _) = poll(&mock, MAX_ATTEMPTS).await;
    assert_eq!(out.unwrap()["status"], "COMPLETED");
    // Then attempt 2 pending: 5 × 1.5² s.
    assert_eq!(gaps(&mock), [secs(3.0), secs(12.0), secs(11.25)]);
}

#[tokio::test(start_paused = true)]
async fn failed_ends_the_poll_with_the_jobs_state() {
    let mock = Mock::new(vec![json(PENDING), json(FAILED)]);
    let (out, seen) = poll(&mock, MAX_ATTEMPTS).await;
    let job = out.unwrap();
    assert_eq!(
        (job["status"].as_str(), job["error"].as_str()),
        (Some("FAILED"), Some("quota"))
    );
    assert_eq!(gaps(&mock), [secs(5.0)]);
    assert_eq!(seen, ["PENDING", "FAILED"]);
}

#[tokio::test(start_paused = true)]
async fn sixty_pending_answers_end_in_the_timeout_error() {
    let mock = Mock::with_fallback(vec![], json(PENDING));
    let (out, seen) = poll(&mock, MAX_ATTEMPTS).await;
    let err = out.unwrap_err();
    assert!(
        matches!(&err, PollError::Timeout { attempts: 60, job } if job == "42"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "TimeoutError: Job 42 did not complete in 60 attempts"
    );
    assert_eq!(seen.len(), 60);
    // min(5 × 1.5^n, 60) s between attempts n and n + 1: 59 waits (no sleep after the
    // last attempt, unlike the guide's loop).
    let schedule = Backoff::exponential(secs(5.0), 1.5)
        .unwrap()
        .max_delay(secs(60.0))
        .unwrap();
    let delays: Vec<Duration> = (0..59).map(|n| schedule.nominal(n)).collect();
    assert_eq!(delays[6], secs(56.953125));
    assert_eq!(delays[7..], [secs(60.0); 52]);
    assert_eq!(mock.times(), cumulative(&delays));
}

#[tokio::test(start_paused = true)]
async fn a_429_on_the_last_attempt_is_the_timeout_too() {
    let mock = Mock::new(vec![json(PENDING), json(PENDING), status(429)]);
    let (out, _) = poll(&mock, 3).await;
    assert!(
        matches!(out, Err(PollError::Timeout { attempts: 3, .. })),
        "{out:?}"
    );
    assert_eq!(gaps(&mock), [secs(5.0), secs(7.5)]);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_counts_429s() {
    // Three attempts allowed: pending, 429, pending. The guide's loop ends there too.
    let mock = Mock::new(vec![
        json(PENDING),
        status(429),
        json(PENDING),
        json(COMPLETED),
    ]);
    let (out, _) = poll(&mock, 3).await;
    assert!(
        matches!(out, Err(PollError::Timeout { attempts: 3, .. })),
        "{out:?}"
    );
    assert_eq!(mock.times().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_bound_is_passed_through_untouched() {
    // A pending job with a large payload: not read, so not retried, and the caller gets
    // every byte (and is told the poll stopped on an unread answer).
    let padding = "x".repeat(MAX_BODY_BYTES);
    let big = format!(r#"{{"jobId":"42","status":"PENDING","log":"{padding}"}}"#);
    let mock = Mock::new(vec![Reply::Body(200, Vec::new(), Bytes::from(big.clone()))]);
    let (out, seen) = poll(&mock, MAX_ATTEMPTS).await;
    match out {
        Err(PollError::Unread { state, bytes }) => {
            assert_eq!((state.as_str(), bytes), ("PENDING", big.len()));
        }
        other => panic!("{other:?}"),
    }
    assert!(seen.is_empty(), "the predicate never saw it");
    assert_eq!(mock.times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn other_errors_end_the_poll_as_raise_for_status() {
    for code in [400, 401, 404, 500, 503] {
        let mock = Mock::new(vec![json(PENDING), status(code)]);
        let (out, _) = poll(&mock, MAX_ATTEMPTS).await;
        assert!(
            matches!(out, Err(PollError::Status(s)) if s == StatusCode::from_u16(code).unwrap()),
            "{code}: {out:?}"
        );
        assert_eq!(mock.times().len(), 2, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_is_not_a_job_is_not_polled_again() {
    for body in ["not json", r#"{"state":"PENDING"}"#, r#"{"status":7}"#] {
        let mock = Mock::new(vec![Reply::Body(200, Vec::new(), Bytes::from(body))]);
        let (out, seen) = poll(&mock, MAX_ATTEMPTS).await;
        assert!(
            matches!(&out, Err(PollError::NotAJob(b)) if b == body),
            "{out:?}"
        );
        assert!(seen.is_empty());
        assert_eq!(mock.times().len(), 1, "{body}");
    }
}

#[tokio::test(start_paused = true)]
async fn other_states_keep_polling_as_the_guide() {
    // The guide returns only on COMPLETED or FAILED: any other state polls again.
    let running = r#"{"jobId":"42","status":"RUNNING"}"#;
    let mock = Mock::new(vec![json(running), json(COMPLETED)]);
    let (out, seen) = poll(&mock, MAX_ATTEMPTS).await;
    assert_eq!(out.unwrap()["status"], "COMPLETED");
    assert_eq!(seen, ["RUNNING", "COMPLETED"]);
    assert_eq!(gaps(&mock), [secs(5.0)]);
}

#[tokio::test(start_paused = true)]
async fn the_oversized_answer_reaches_the_caller_byte_for_byte() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let big = Bytes::from(format!(
        r#"{{"status":"PENDING","log":"{}"}}"#,
        "y".repeat(MAX_BODY_BYTES)
    ));
    let mock = Mock::new(vec![Reply::Body(200, Vec::new(), big.clone())]);
    let (retry_after, backoff) = layers(MAX_ATTEMPTS, |_| {}).unwrap();
    let svc = ServiceBuilder::new()
        .layer(retry_after)
        .layer(backoff)
        .service(mock.service());
    let req = http::Request::get("http://api.test/jobs/42")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert!(!res.body().is_buffered());
    let got = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got, big);
    assert_eq!(mock.times().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_is_down_is_a_failure_not_a_timeout() {
    // Connection refused: retried on the schedule (the request never reached the server),
    // then reported as the transport failure it is.
    let mock = Mock::with_fallback(vec![], Reply::Fail(std::io::ErrorKind::ConnectionRefused));
    let (out, _) = poll(&mock, 3).await;
    let err = out.unwrap_err();
    assert!(matches!(err, PollError::Failed(_)), "{err:?}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert_eq!(gaps(&mock), [secs(5.0), secs(7.5)]);
}
