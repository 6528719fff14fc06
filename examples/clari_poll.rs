//! Polling a Clari export job until it is done, following Clari's client guide
//! (shared/reference/clari-client-practices.md, `poll_with_backoff`):
//!
//! - a `429` waits exactly `Retry-After`, 5 s when the header is absent;
//! - while the job is pending, poll again after 5 × 1.5ⁿ s, capped at 60 s
//!   (5, 7.5, 11.25, 16.875, … 56.953125, 60, 60 s);
//! - at most 60 attempts, then a timeout error.
//!
//! ```text
//! cargo run --example clari_poll                          # against a scripted local mock
//! cargo run --example clari_poll -- --max-attempts 2      # the timeout path, in 5 s
//! cargo run --example clari_poll -- --mock-429            # the mock answers 429 first
//! CLARI_API_KEY=… cargo run --example clari_poll -- --url https://api.clari.com/v4/export --job ID
//! ```
//!
//! The poll is one request through this stack, outermost first:
//!
//! 1. `RetryAfterLayer` for `429` only, `default_delay(5 s)`, `max_retries(59)`.
//! 2. `BackoffLayer`: `Backoff::exponential(5 s, 1.5)`, max 60 s, no jitter,
//!    `max_retries(59)`, no retried statuses (a `5xx` is an error, as the guide's
//!    `raise_for_status()`), `retry_if` the response is `200` with `x-job-status: pending`,
//!    no retry budget (polling is not an overload signal).
//! 3. A logging wrapper (prints every attempt) around a hyper-util client.
//!
//! Both layers share one attempt count, bounded by the smaller `max_retries`, so **both**
//! must allow 59 retries: the `RetryAfterLayer`'s default of 3 would end the poll after 4
//! attempts. When the count runs out the `BackoffLayer` returns
//! `RetryError::Exhausted { last_status: Some(200), .. }`: the guide's `TimeoutError`.
//!
//! `retry_if` sees the status and headers, not the body, so the job state must come from a
//! header. The mock sends `x-job-status: pending` twice, then `done` (waits of 5 s and 7.5 s,
//! about 12.5 s in all). Clari itself reports the state in its JSON body; against it, map the
//! body to a header in a small service under the layers.
//!
//! A `429` goes to the outer `RetryAfterLayer`, which sends the poll through the
//! `BackoffLayer` again: the backoff schedule then starts over at 5 s (the guide's loop keeps
//! counting, so its next poll delay would be one step further along).

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
use tower_throttle::backoff::{Backoff, BackoffLayer, Jitter};
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::BoxError;
use tower_throttle::ReplayBody;
use tower_throttle::RetryError;

fn usage() -> ! {
    eprintln!(
        "usage: clari_poll [--url BASE_URL] [--job ID] [--max-attempts N] [--mock-429]\n\
         defaults: a local mock server, --job 42, --max-attempts 60"
    );
    std::process::exit(2)
}

/// The command line.
struct Args {
    url: Option<String>,
    job: String,
    max_attempts: u32,
    mock_429: bool,
}

impl Args {
    fn parse() -> Args {
        let mut parsed = Args {
            url: None,
            job: "42".to_owned(),
            max_attempts: 60,
            mock_429: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--mock-429" {
                parsed.mock_429 = true;
                continue;
            }
            match (flag.as_str(), args.next()) {
                ("--url", Some(v)) => parsed.url = Some(v.trim_end_matches('/').to_owned()),
                ("--job", Some(v)) => parsed.job = v,
                ("--max-attempts", Some(v)) => match v.parse() {
                    Ok(n) if n >= 1 => parsed.max_attempts = n,
                    _ => usage(),
                },
                _ => usage(),
            }
        }
        parsed
    }

    /// The API to call: `--url`, or a local mock of Clari's.
    async fn base_url(&self) -> Result<String, BoxError> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        let url = mock::spawn(mock::clari(self.mock_429)).await?;
        let first = if self.mock_429 {
            "429 (no Retry-After), "
        } else {
            ""
        };
        println!("mock Clari API on {url}: {first}pending, pending, done");
        Ok(url)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    logging::init();
    let args = Args::parse();
    let (base, job) = (args.base_url().await?, &args.job);
    let max_retries = args.max_attempts - 1;

    let retry_after = RetryAfterLayer::builder()
        .statuses([StatusCode::TOO_MANY_REQUESTS])
        .default_delay(Duration::from_secs(5))
        .max_retries(max_retries)
        .build()?;
    let backoff = BackoffLayer::builder()
        .backoff(
            Backoff::exponential(Duration::from_secs(5), 1.5)?
                .max_delay(Duration::from_secs(60))?
                .jitter(Jitter::None),
        )
        .max_retries(max_retries)
        .statuses(Vec::new())
        .retry_if(|status, headers| {
            status == StatusCode::OK
                && headers
                    .get("x-job-status")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"pending"))
        })
        .budget(None)
        .build()?;
    let log = mock::Log::new(&["x-job-status"]);
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let svc = ServiceBuilder::new()
        .layer(retry_after)
        .layer(backoff)
        .service(mock::Logged::new(client, log.clone()));

    let mut req = Request::get(format!("{base}/jobs/{job}"));
    if let Ok(key) = std::env::var("CLARI_API_KEY") {
        req = req.header("apikey", key);
    }
    let req = req.body(Full::new(Bytes::new()))?;

    let started = Instant::now();
    let outcome = svc.oneshot(req).await;
    let attempts = log.take_attempts();
    let took = mock::secs(started.elapsed());
    if !report(&log, job, outcome, attempts, &took).await? {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints the outcome; whether the job finished.
async fn report<B>(
    log: &mock::Log,
    job: &str,
    outcome: Result<http::Response<B>, tower_throttle::Error>,
    attempts: usize,
    took: &str,
) -> Result<bool, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    match outcome {
        Ok(res) if res.status().is_success() => {
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(Into::into)?
                .to_bytes();
            log.say(format_args!(
                "outcome: job {job} finished ({status}) after {attempts} attempt(s) in {took}: {}",
                String::from_utf8_lossy(&body)
            ));
            Ok(true)
        }
        Ok(res) => {
            log.say(format_args!(
                "outcome: error {} after {attempts} attempt(s) in {took}",
                res.status()
            ));
            Ok(false)
        }
        Err(e) => {
            match e.downcast_ref::<RetryError>() {
                Some(RetryError::Exhausted {
                    last_status: Some(StatusCode::OK),
                    ..
                }) => log.say(format_args!(
                    "outcome: TimeoutError: job {job} did not complete in {attempts} attempts \
                     ({took}; layer: {e})"
                )),
                Some(other) => log.say(format_args!(
                    "outcome: gave up after {attempts} attempt(s) in {took}: {other}"
                )),
                None => log.say(format_args!("outcome: request failed after {took}: {e}")),
            }
            Ok(false)
        }
    }
}
