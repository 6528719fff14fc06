//! Shared by the `clerk_client`, `clay_client` and `clari_poll` examples:
//!
//! - [`Logged`], a tower service wrapped around the HTTP client (under the retrying layers,
//!   so it sees every attempt) that prints each attempt as it happens: time since start,
//!   attempt number, the wait before it, the status, `Retry-After` and chosen headers;
//! - small scripted axum servers standing in for the Clerk, Clay and Clari APIs, started on
//!   `127.0.0.1:0` when an example is run without `--url`.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use tower::Service;
use tower_throttle::RetryContext;

// ---------------------------------------------------------------------------------------
// Client side: printing every attempt.
// ---------------------------------------------------------------------------------------

/// The attempt log shared by every clone of a [`Logged`] service.
#[derive(Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

struct LogInner {
    start: Instant,
    /// Response headers printed after the status (`Retry-After` is always printed).
    show: Vec<HeaderName>,
    /// When the last response arrived: the gap to the next attempt is the delay chosen.
    last_response: Mutex<Option<Instant>>,
    /// Attempts sent since the last [`Log::take_attempts`].
    attempts: AtomicUsize,
}

impl Log {
    /// A log whose clock starts now, printing `show` response headers on every attempt.
    pub fn new(show: &[&'static str]) -> Log {
        Log {
            inner: Arc::new(LogInner {
                start: Instant::now(),
                show: show.iter().map(|h| HeaderName::from_static(h)).collect(),
                last_response: Mutex::new(None),
                attempts: AtomicUsize::new(0),
            }),
        }
    }

    /// Time since the log was made, formatted `[  2.004s]`.
    pub fn stamp(&self) -> String {
        format!("[{:>8.3}s]", self.inner.start.elapsed().as_secs_f64())
    }

    /// Prints `line` with a time stamp.
    pub fn say(&self, line: impl std::fmt::Display) {
        println!("{} {line}", self.stamp());
    }

    /// Attempts sent since the previous call.
    pub fn take_attempts(&self) -> usize {
        self.inner.attempts.swap(0, Ordering::Relaxed)
    }

    fn before<B>(&self, req: &Request<B>) {
        self.inner.attempts.fetch_add(1, Ordering::Relaxed);
        // The retrying layers share one `RetryContext` per original request.
        let retries = req
            .extensions()
            .get::<RetryContext>()
            .map_or(0, RetryContext::retries);
        let last = self
            .inner
            .last_response
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let waited = match last {
            Some(t) if retries > 0 => format!(" after waiting {:.3} s", t.elapsed().as_secs_f64()),
            _ => String::new(),
        };
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map_or(String::new(), |k| format!(" [Idempotency-Key {k}]"));
        self.say(format_args!(
            "attempt {}: {} {}{key}{waited}",
            retries + 1,
            req.method(),
            req.uri().path(),
        ));
    }

    fn after<ResB, E: std::fmt::Display>(&self, result: &Result<Response<ResB>, E>) {
        *self
            .inner
            .last_response
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let res = match result {
            Ok(res) => res,
            Err(e) => return self.say(format_args!("  <- error: {e}")),
        };
        let headers = res.headers();
        let retry_after = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "none".to_owned(), str::to_owned);
        let mut line = format!("  <- {}, Retry-After: {retry_after}", res.status());
        for name in &self.inner.show {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                line.push_str(&format!(", {name}: {v}"));
            }
        }
        self.say(line);
    }
}

/// Wraps the HTTP client: prints each attempt's request and response through a [`Log`].
#[derive(Clone)]
pub struct Logged<S> {
    inner: S,
    log: Log,
}

impl<S> Logged<S> {
    pub fn new(inner: S, log: Log) -> Logged<S> {
        Logged { inner, log }
    }
}

impl<S, B, ResB> Service<Request<B>> for Logged<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: std::fmt::Display,
    S::Future: Send + 'static,
    ResB: 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.log.before(&req);
        let fut = self.inner.call(req);
        let log = self.log.clone();
        Box::pin(async move {
            let result = fut.await;
            log.after(&result);
            result
        })
    }
}

// ---------------------------------------------------------------------------------------
// Server side: the scripted mocks.
// ---------------------------------------------------------------------------------------

/// Serves `app` on a free loopback port; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn spawn(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("mock server failed: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

/// Requests seen so far by one mock route.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl Counter {
    /// The index of this request (0 for the first).
    fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

fn header(name: &'static str, value: impl ToString) -> (HeaderName, HeaderValue) {
    let value = HeaderValue::try_from(value.to_string()).expect("mock header values are ASCII");
    (HeaderName::from_static(name), value)
}

/// Clerk's `GET /v1/users`: `429` with `Retry-After: 2`, then `429` without
/// `Retry-After`, then `200` with `X-RateLimit-*` headers (8 of 100 left, below Clerk's
/// 10 % warning line). Every later request gets `200`.
pub fn clerk() -> Router {
    async fn users(State(seen): State<Counter>) -> Response<axum::body::Body> {
        let limit = header("x-ratelimit-limit", 100);
        let reset = header("x-ratelimit-reset", 10);
        match seen.next() {
            0 => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    header("retry-after", 2),
                    limit,
                    header("x-ratelimit-remaining", 0),
                    reset,
                ],
                Json(serde_json::json!({"errors": [{"code": "too_many_requests"}]})),
            )
                .into_response(),
            1 => (
                StatusCode::TOO_MANY_REQUESTS,
                [limit, header("x-ratelimit-remaining", 0), reset],
                Json(serde_json::json!({"errors": [{"code": "too_many_requests"}]})),
            )
                .into_response(),
            _ => (
                StatusCode::OK,
                [limit, header("x-ratelimit-remaining", 8), reset],
                Json(serde_json::json!([
                    {"id": "user_2a", "first_name": "Ada"},
                    {"id": "user_2b", "first_name": "Grace"}
                ])),
            )
                .into_response(),
        }
    }
    Router::new()
        .route("/v1/users", get(users))
        .with_state(Counter::default())
}

/// A 64-bit FNV-1a digest, to show that a replayed body is byte-identical.
pub fn digest(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Clay's `POST /webhook`. Every response echoes the body's length and digest
/// (`x-received-bytes`, `x-received-digest`). Scripted by request number: `503`, `500`,
/// then normal handling; the 5th request gets `429` with `Retry-After: 1`. Normal handling
/// answers `200` for a JSON object with an `"email"`, `400` otherwise.
pub fn clay() -> Router {
    async fn webhook(State(seen): State<Counter>, body: Bytes) -> Response<axum::body::Body> {
        let echo = [
            header("x-received-bytes", body.len()),
            header("x-received-digest", digest(&body)),
        ];
        let scripted = match seen.next() {
            0 => Some((StatusCode::SERVICE_UNAVAILABLE, None)),
            1 => Some((StatusCode::INTERNAL_SERVER_ERROR, None)),
            4 => Some((StatusCode::TOO_MANY_REQUESTS, Some(1))),
            _ => None,
        };
        if let Some((status, retry_after)) = scripted {
            let mut res = (status, echo).into_response();
            if let Some(secs) = retry_after {
                let (name, value) = header("retry-after", secs);
                res.headers_mut().insert(name, value);
            }
            return res;
        }
        let record: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        match record.as_ref().and_then(|r| r.get("email")) {
            Some(_) => (
                StatusCode::OK,
                echo,
                Json(serde_json::json!({"received_bytes": body.len()})),
            )
                .into_response(),
            None => (
                StatusCode::BAD_REQUEST,
                echo,
                Json(serde_json::json!({"error": "record has no email"})),
            )
                .into_response(),
        }
    }
    Router::new()
        .route("/webhook", post(webhook))
        .with_state(Counter::default())
}

/// What the Clari mock answers: `pending` times `PENDING`, then `end` (`COMPLETED` or
/// `FAILED`); with `first_429`, the very first request gets a `429` without `Retry-After`.
#[derive(Clone, Copy)]
pub struct ClariScript {
    pub first_429: bool,
    pub pending: usize,
    pub end: &'static str,
}

/// Clari's `GET /jobs/{id}`, answering as Clari does: the job's state in a JSON body
/// (`{"jobId": …, "status": "PENDING" | "COMPLETED" | "FAILED", …}`), nothing in headers.
pub fn clari(script: ClariScript) -> Router {
    #[derive(Clone)]
    struct Job {
        seen: Counter,
        script: ClariScript,
    }
    async fn job(State(job): State<Job>, Path(id): Path<String>) -> Response<axum::body::Body> {
        let mut n = job.seen.next();
        if job.script.first_429 {
            if n == 0 {
                return StatusCode::TOO_MANY_REQUESTS.into_response();
            }
            n -= 1;
        }
        let body = match n < job.script.pending {
            true => serde_json::json!({"jobId": id, "status": "PENDING"}),
            false => match job.script.end {
                "FAILED" => serde_json::json!({"jobId": id, "status": "FAILED",
                    "error": "export failed: forecast not found"}),
                end => serde_json::json!({"jobId": id, "status": end, "rows": 1280,
                    "downloadUrl": format!("/exports/{id}.csv")}),
            },
        };
        (StatusCode::OK, Json(body)).into_response()
    }
    Router::new().route("/jobs/{id}", get(job)).with_state(Job {
        seen: Counter::default(),
        script,
    })
}

/// Formats a duration as seconds with millisecond precision.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}
