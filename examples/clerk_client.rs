//! A Clerk Backend API client that retries rate-limited requests the way Clerk's client
//! guide does (shared/reference/clerk-client-practices.md, "Step 2"):
//!
//! > on `429`, wait `Retry-After` seconds if present, else `2^attempt` seconds (1, 2, 4);
//! > at most 3 retries.
//!
//! and monitors `X-RateLimit-Limit` / `X-RateLimit-Remaining`, warning below 10 % ("Step 5").
//!
//! ```text
//! cargo run --example clerk_client                      # against a scripted local mock
//! CLERK_SECRET_KEY=sk_test_… cargo run --example clerk_client -- --url https://api.clerk.com
//! ```
//!
//! The stack, outermost first:
//!
//! 1. `RetryAfterLayer` with its endpoint gate: after a `429` with `Retry-After` that it
//!    sees, new requests to the same endpoint wait for the block to expire.
//! 2. `BackoffLayer`: 1 s × 2ⁿ without jitter, 3 retries, `429` only, `Retry-After` honored
//!    exactly (`HintMode::Exact`).
//! 3. A logging wrapper (prints every attempt) around a hyper-util client.
//!
//! Without `--url`, a mock on 127.0.0.1 answers `GET /v1/users` with `429` +
//! `Retry-After: 2`, then `429` without `Retry-After`, then `200`. What the stack does:
//!
//! - attempt 1 → 429, `Retry-After: 2` → the backoff layer waits exactly 2 s (the hint);
//! - attempt 2 → 429, no hint → the backoff layer uses its schedule for retry number 1
//!   (retries count from 0): 1 s × 2¹ = 2 s. The guide's loop gives the same: its
//!   `attempt` is 1 on the second try, and `2^1` s = 2 s;
//! - attempt 3 → 200, about 4 s after the start.
//!
//! Both 429s are retried by the inner `BackoffLayer`, so the outer `RetryAfterLayer` only
//! ever sees the final `200`: its gate stays empty (printed at the end). The gate learns
//! of a block when the `RetryAfterLayer` sees a 429 with guidance itself, or when the
//! inner layer gives up on one (its `RetryError::Exhausted` carries the hint).

#[path = "support/logging.rs"]
mod logging;
#[path = "support/mock.rs"]
mod mock;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_throttle::backoff::{Backoff, BackoffLayer, HintMode, Jitter};
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::BoxError;
use tower_throttle::ReplayBody;
use tower_throttle::RetryError;

fn usage() -> ! {
    eprintln!("usage: clerk_client [--url BASE_URL]   (default: a local mock server)");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    logging::init();
    let base = base_url().await?;
    let retry_after = RetryAfterLayer::builder()
        .statuses([StatusCode::TOO_MANY_REQUESTS])
        .max_retries(3)
        .gate(true)
        .build()?;
    let gate = retry_after.gate().cloned();
    let backoff = BackoffLayer::builder()
        .backoff(Backoff::exponential(Duration::from_secs(1), 2.0)?.jitter(Jitter::None))
        .max_retries(3)
        .statuses([StatusCode::TOO_MANY_REQUESTS])
        .hint_mode(HintMode::Exact)
        .build()?;
    let log = mock::Log::new(&["x-ratelimit-limit", "x-ratelimit-remaining"]);
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let svc = ServiceBuilder::new()
        .layer(retry_after)
        .layer(backoff)
        .service(mock::Logged::new(client, log.clone()));

    let mut req = Request::get(format!("{base}/v1/users?limit=10"));
    if let Ok(key) = std::env::var("CLERK_SECRET_KEY") {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = req.body(Full::new(Bytes::new()))?;

    let started = Instant::now();
    let outcome = svc.oneshot(req).await;
    let attempts = log.take_attempts();
    let took = mock::secs(started.elapsed());
    if let Some(gate) = gate {
        let blocked = gate.blocked_endpoints();
        log.say(format_args!(
            "RetryAfterLayer gate: blocked endpoints {blocked:?}"
        ));
    }
    let ok = report(&log, outcome, attempts, &took).await?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// The API to call: `--url`, or a local mock of Clerk's.
async fn base_url() -> Result<String, BoxError> {
    let mut url = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--url", Some(v)) => url = Some(v.trim_end_matches('/').to_owned()),
            _ => usage(),
        }
    }
    if let Some(url) = url {
        return Ok(url);
    }
    let url = mock::spawn(mock::clerk()).await?;
    println!("mock Clerk API on {url}: 429 (Retry-After: 2), 429 (no Retry-After), 200");
    Ok(url)
}

/// Prints the outcome; whether it was a success.
async fn report<B>(
    log: &mock::Log,
    outcome: Result<http::Response<B>, tower_throttle::Error>,
    attempts: usize,
    took: &str,
) -> Result<bool, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let res = match outcome {
        Ok(res) => res,
        Err(e) => {
            match e.downcast_ref::<RetryError>() {
                Some(RetryError::Exhausted { last_status, .. }) => log.say(format_args!(
                    "outcome: max retries exceeded after {attempts} attempt(s) in {took} \
                     (last status {last_status:?}): {e}"
                )),
                Some(other) => log.say(format_args!("outcome: gave up after {took}: {other}")),
                None => log.say(format_args!("outcome: request failed after {took}: {e}")),
            }
            return Ok(false);
        }
    };
    let status = res.status();
    let header =
        |name: &str| -> Option<u64> { res.headers().get(name)?.to_str().ok()?.trim().parse().ok() };
    let (limit, remaining) = (header("x-ratelimit-limit"), header("x-ratelimit-remaining"));
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(Into::into)?
        .to_bytes();
    // Clerk guide, step 5: warn when under 10 % of the window is left.
    let monitor = match (limit, remaining) {
        (Some(limit), Some(0)) => format!("; rate limit hit (0/{limit} left)"),
        (Some(limit), Some(left)) if left * 10 < limit => {
            format!("; WARNING: rate limit low, {left}/{limit} remaining")
        }
        (Some(limit), Some(left)) => format!("; {left}/{limit} remaining"),
        _ => String::new(),
    };
    log.say(format_args!(
        "outcome: {status} after {attempts} attempt(s) in {took}, {} body bytes{monitor}",
        body.len()
    ));
    Ok(status.is_success())
}
