//! Clari's `poll_with_backoff` (shared/reference/clari-client-practices.md) as tower
//! layers, shared by the `clari_poll` example and `tests/clari.rs` (which runs it under
//! paused time), so the tests check exactly what the example runs.
//!
//! The guide's loop, and where each line went:
//!
//! | Python | here |
//! | --- | --- |
//! | `for attempt in range(max_attempts)` | both layers' `max_retries(max_attempts - 1)`: they share one attempt count |
//! | `429`: `sleep(Retry-After or 5)`, `continue` | `RetryAfterLayer` for 429 only, `default_delay(5 s)`, not doubled, no jitter |
//! | `resp.raise_for_status()` | no status is retried by the backoff layer: [`PollError::Status`] |
//! | `status["status"] in ("COMPLETED", "FAILED")` | `retry_if_body`: any other state polls again |
//! | `sleep(min(5 × 1.5 ** attempt, 60))` | `Backoff::exponential(5 s, 1.5)`, max 60 s, no jitter, on the shared count |
//! | `raise TimeoutError` | [`PollError::Timeout`] (`RetryError::Exhausted`), without the loop's last, useless sleep |
//! | `requests.get` raising on a connection error | the backoff layer's default: a request that never reached the server (connection refused) is retried on the same schedule; when the attempts run out, [`PollError::Failed`] |
#![allow(dead_code)]

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::{Service, ServiceExt};
use tower_throttle::backoff::{Backoff, BackoffLayer, BodyDecision, Jitter, ReadsBody};
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::{BoxError, RetryError};

/// The guide's `base_delay`: the first poll delay, and the wait after a 429 without
/// `Retry-After`.
pub const BASE_DELAY: Duration = Duration::from_secs(5);
/// The guide's `max_delay`.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// The guide's `max_attempts`.
pub const MAX_ATTEMPTS: u32 = 60;
/// The longest `Retry-After` obeyed (the guide's loop has no bound; a hostile or broken
/// server must not park the poll for days). A longer one fails the poll.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Most bytes of a job answer read (Clari's job status is a small JSON object).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The job's state in a JSON answer (`{"status": "PENDING", …}`), if it has one.
pub fn state_of(job: &Value) -> Option<&str> {
    job.get("status")?.as_str()
}

/// Whether a job in this state is done (the guide's two final states).
pub fn is_final(state: &str) -> bool {
    matches!(state, "COMPLETED" | "FAILED")
}

/// The poll's layers, outermost first: Retry-After for 429s, then the body-reading
/// backoff. `seen` is told each job state read (the example prints them).
pub fn layers(
    max_attempts: u32,
    seen: impl Fn(&str) + Send + Sync + 'static,
) -> Result<(RetryAfterLayer, BackoffLayer<ReadsBody>), BoxError> {
    let max_retries = max_attempts
        .checked_sub(1)
        .ok_or("max_attempts must be at least 1")?;
    let retry_after = RetryAfterLayer::builder()
        .statuses([StatusCode::TOO_MANY_REQUESTS])
        .default_delay(BASE_DELAY)
        .double_bare_delays(false)
        .spread_bare_delays(false)
        .max_wait(MAX_RETRY_AFTER)
        .max_retries(max_retries)
        .build()?;
    let backoff = BackoffLayer::builder()
        .backoff(
            Backoff::exponential(BASE_DELAY, 1.5)?
                .max_delay(MAX_DELAY)?
                .jitter(Jitter::None),
        )
        .max_retries(max_retries)
        // No status is retried here: a 429 goes up to the Retry-After layer, and any
        // other error ends the poll (the guide's `raise_for_status()`).
        .statuses([])
        // Polling is not an overload signal: no retry budget.
        .budget(None)
        .retry_if_body(move |status, _headers, body| {
            let job: Option<Value> = serde_json::from_slice(body).ok();
            let Some(state) = job.as_ref().and_then(state_of) else {
                return BodyDecision::Return;
            };
            seen(state);
            match status == StatusCode::OK && !is_final(state) {
                true => BodyDecision::Retry,
                false => BodyDecision::Return,
            }
        })
        .read_body_when(|status, _headers| status == StatusCode::OK)
        .max_response_bytes(MAX_BODY_BYTES)
        .build()?;
    Ok((retry_after, backoff))
}

/// Why a poll ended without the job's final state.
#[derive(Debug)]
pub enum PollError {
    /// Every attempt was made and the job was still pending (the guide's `TimeoutError`).
    Timeout { job: String, attempts: u32 },
    /// The API answered an error status (the guide's `raise_for_status()`).
    Status(StatusCode),
    /// A `200` whose body is not a job (no JSON `status` string).
    NotAJob(String),
    /// A `200` whose job is not done, handed on because the layers could not read it
    /// (a body over [`MAX_BODY_BYTES`] is passed through, never retried on).
    Unread { state: String, bytes: usize },
    /// The request failed (transport error, a `Retry-After` over the bound, …).
    Failed(BoxError),
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Timeout { job, attempts } => write!(
                f,
                "TimeoutError: Job {job} did not complete in {attempts} attempts"
            ),
            PollError::Status(status) => write!(f, "HTTP error {status}"),
            PollError::NotAJob(body) => write!(f, "not a job status: {body}"),
            PollError::Unread { state, bytes } => write!(
                f,
                "the poll stopped at state {state}: the answer ({bytes} bytes) is over \
                 the {MAX_BODY_BYTES}-byte bound and was not read"
            ),
            PollError::Failed(e) => write!(f, "request failed: {e}"),
        }
    }
}

impl std::error::Error for PollError {}

/// Polls `GET {base}/jobs/{job}` through `svc` (the stack built from [`layers`]) until
/// the job is done: its final JSON (`"status"` is `COMPLETED` or `FAILED`), or why not.
pub async fn poll_with_backoff<S, B>(
    svc: S,
    base: &str,
    job: &str,
    api_key: Option<&str>,
) -> Result<Value, PollError>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>, Error = tower_throttle::Error>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let mut req = Request::get(format!("{base}/jobs/{job}"));
    if let Some(key) = api_key {
        req = req.header("apikey", key);
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| PollError::Failed(e.into()))?;
    let res = match svc.oneshot(req).await {
        Ok(res) => res,
        Err(e) => {
            return Err(match RetryError::find(&e) {
                // Every attempt answered (pending, or 429): the guide's timeout. Attempts
                // that failed without an answer are a transport failure, not a timeout.
                Some(RetryError::Exhausted {
                    attempts,
                    last_status: Some(_),
                    ..
                }) => PollError::Timeout {
                    job: job.to_owned(),
                    attempts: *attempts,
                },
                _ => PollError::Failed(e.into()),
            });
        }
    };
    if !res.status().is_success() {
        return Err(PollError::Status(res.status()));
    }
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| PollError::Failed(e.into()))?
        .to_bytes();
    let job: Option<Value> = serde_json::from_slice(&body).ok();
    match job.as_ref().and_then(state_of) {
        Some(state) if is_final(state) => Ok(job.unwrap_or_default()),
        Some(state) => Err(PollError::Unread {
            state: state.to_owned(),
            bytes: body.len(),
        }),
        None => {
            let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Err(PollError::NotAJob(shown))
        }
    }
}
