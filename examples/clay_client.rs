//! Submitting records to a Clay webhook with the retry rules of Clay's client guide
//! (shared/reference/clay-client-practices.md, steps 2 and 3):
//!
//! - back off 1, 2, 4, 8, 16 s, plus up to 500 ms of random jitter, capped at 60 s;
//!   at most 5 retries;
//! - retry `429` and `5xx` only, never another `4xx` (a bad record stays bad);
//! - a `429` waits `Retry-After` seconds, 60 s when the header is absent.
//!
//! ```text
//! cargo run --example clay_client                        # against a scripted local mock
//! cargo run --example clay_client -- --url https://api.clay.com/v3/sources/webhook/…
//! ```
//!
//! `--url` is the full webhook URL (the mock's is `http://127.0.0.1:PORT/webhook`).
//!
//! The stack, outermost first:
//!
//! 1. `BackoffLayer`: `Backoff::exponential(1 s, 2.0)`, max 60 s, `Jitter::Additive(500 ms)`,
//!    5 retries, statuses 429/500/502/503/504. Webhook submissions are `POST`s, which the
//!    layer only retries when they are idempotent: `generate_idempotency_key(true)` adds one
//!    `Idempotency-Key`, the same on every attempt, so they are.
//! 2. `RetryAfterLayer` for `429` only, `default_delay(60 s)`: it sits closest to the client,
//!    so it sees every `429` first and waits `Retry-After` (or 60 s) exactly, as the guide
//!    asks. A `BackoffLayer` alone would wait its schedule (1 s, 2 s, …) after a `429`
//!    without `Retry-After`: it has no "default hint". Both layers count against one shared
//!    total of 5 retries.
//! 3. A logging wrapper (prints every attempt) around a hyper-util client.
//!
//! Without `--url`, a mock on 127.0.0.1 plays three records:
//!
//! - record 1 gets `503`, `500`, then `200`: waits of 1.0–1.5 s and 2.0–2.5 s (about 3.x s
//!   in all). The mock echoes the body's length and digest on every attempt, showing the
//!   retried body is byte-identical (and the `Idempotency-Key` unchanged);
//! - record 2 has no email and gets `400`: returned at once, not retried;
//! - record 3 gets `429` with `Retry-After: 1`, waits exactly 1 s (no jitter), then `200`.

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
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_throttle::backoff::{Backoff, BackoffLayer, Jitter};
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::BoxError;
use tower_throttle::ReplayBody;
use tower_throttle::RetryError;

fn usage() -> ! {
    eprintln!("usage: clay_client [--url WEBHOOK_URL]   (default: a local mock server)");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    logging::init();
    let webhook = webhook_url().await?;
    let (backoff, retry_after) = layers()?;
    let log = mock::Log::new(&["x-received-bytes", "x-received-digest"]);
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let mut svc = ServiceBuilder::new()
        .layer(backoff)
        .layer(retry_after)
        .service(mock::Logged::new(client, log.clone()));

    let records = [
        serde_json::json!({"email": "ada@example.com", "company": "Analytical Engines Ltd"}),
        serde_json::json!({"company": "No Email Inc"}),
        serde_json::json!({"email": "grace@example.com", "company": "COBOL Works"}),
    ];
    let started = Instant::now();
    // Rejected records are reported, not fatal: the mock rejects record 2 on purpose.
    let (mut ok, mut failed) = (0, 0);
    for (n, record) in (1..).zip(&records) {
        let body = serde_json::to_vec(record)?;
        log.say(format_args!(
            "record {n}: {} bytes, digest {}",
            body.len(),
            mock::digest(&body)
        ));
        let req = Request::post(&webhook)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        // The stack accepts any request body type, so `ready` needs it spelled out.
        let ready = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc).await?;
        let outcome = ready.call(req).await;
        let attempts = log.take_attempts();
        if report_record(&log, n, outcome, attempts).await? {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    log.say(format_args!(
        "outcome: {ok} of {} records accepted, {failed} rejected, in {}",
        records.len(),
        mock::secs(started.elapsed())
    ));
    Ok(())
}

/// The webhook to call: `--url`, or a local mock of Clay's.
async fn webhook_url() -> Result<String, BoxError> {
    let mut url = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--url", Some(v)) => url = Some(v),
            _ => usage(),
        }
    }
    if let Some(url) = url {
        return Ok(url);
    }
    let base = mock::spawn(mock::clay()).await?;
    println!(
        "mock Clay webhook on {base}/webhook: 503, 500, 200; 400 for a record \
         without email; 429 (Retry-After: 1), 200"
    );
    Ok(format!("{base}/webhook"))
}

/// Clay's guide as layers: backoff for server errors, Retry-After for 429.
fn layers() -> Result<(BackoffLayer, RetryAfterLayer), BoxError> {
    let backoff = BackoffLayer::builder()
        .backoff(
            Backoff::exponential(Duration::from_secs(1), 2.0)?
                .max_delay(Duration::from_secs(60))?
                .jitter(Jitter::Additive(Duration::from_millis(500))),
        )
        .max_retries(5)
        .statuses([
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ])
        .generate_idempotency_key(true)
        .build()?;
    let retry_after = RetryAfterLayer::builder()
        .statuses([StatusCode::TOO_MANY_REQUESTS])
        .max_retries(5)
        .default_delay(Duration::from_secs(60))
        .max_wait(Duration::from_secs(300))
        .gate(false)
        .build()?;
    Ok((backoff, retry_after))
}

/// Prints one record's outcome; whether it was accepted.
async fn report_record<B>(
    log: &mock::Log,
    n: usize,
    outcome: Result<http::Response<B>, tower_throttle::Error>,
    attempts: usize,
) -> Result<bool, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    match outcome {
        Ok(res) => {
            let status = res.status();
            let reply = res
                .into_body()
                .collect()
                .await
                .map_err(Into::into)?
                .to_bytes();
            let reply = String::from_utf8_lossy(&reply);
            if status.is_success() {
                log.say(format_args!(
                    "record {n}: {status} after {attempts} attempt(s): {reply}"
                ));
            } else {
                log.say(format_args!(
                    "record {n}: {status} after {attempts} attempt(s), not retried: {reply}"
                ));
            }
            Ok(status.is_success())
        }
        Err(e) => {
            let why = match e.downcast_ref::<RetryError>() {
                Some(RetryError::Exhausted { last_status, .. }) => {
                    format!("gave up ({e}; last status {last_status:?})")
                }
                Some(other) => format!("gave up ({other})"),
                None => format!("failed ({e})"),
            };
            log.say(format_args!(
                "record {n}: {why} after {attempts} attempt(s)"
            ));
            Ok(false)
        }
    }
}
