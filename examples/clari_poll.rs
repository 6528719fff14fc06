//! Polling a Clari export job until it is done, as Clari's client guide does
//! (shared/reference/clari-client-practices.md, `poll_with_backoff`), on the job's JSON
//! body (`{"status": "PENDING" | "COMPLETED" | "FAILED", …}`):
//!
//! - while the job is neither `COMPLETED` nor `FAILED`, poll again after
//!   `min(5 × 1.5^attempt, 60)` s (5, 7.5, 11.25, 16.875, … 56.953125, 60, 60 s);
//! - a `429` waits exactly `Retry-After`, 5 s when the header is absent, and counts as an
//!   attempt, so the poll after it waits one step further along, as the guide's loop;
//! - any other error status ends the poll (the guide's `raise_for_status()`);
//! - at most 60 attempts in all, then the guide's timeout error.
//!
//! ```text
//! cargo run --example clari_poll                       # a local mock: pending, pending, completed
//! cargo run --example clari_poll -- --mock-429         # the mock answers a bare 429 first
//! cargo run --example clari_poll -- --mock-failed      # the job fails
//! cargo run --example clari_poll -- --max-attempts 2   # the timeout error, after 5 s
//! CLARI_API_KEY=… cargo run --example clari_poll -- --url http://HOST/v4/export --job ID
//! ```
//!
//! Requests go to `BASE_URL/jobs/ID` with the `apikey` header from `CLARI_API_KEY`. The
//! client is hyper-util's plain-HTTP client: for `https://api.clari.com/v4/export`, build it
//! with a TLS connector (hyper-rustls or hyper-tls) instead; the layers do not change.
//!
//! Exit status: 0 when the job completed, 3 when it failed (its state is printed), 1 on
//! the timeout error or another poll error, 2 on a bad command line.
//!
//! The stack, outermost first (built in `support/clari.rs`, which tests/clari.rs runs
//! under paused time):
//!
//! 1. `RetryAfterLayer` for `429` only: `Retry-After` exactly, else 5 s (not doubled, no
//!    jitter), at most 10 minutes.
//! 2. `BackoffLayer` with `retry_if_body`: it reads each `200` body (up to 16 KiB) and polls
//!    again while the JSON `status` is not final; `Backoff::exponential(5 s, 1.5)`, max
//!    60 s, no jitter, no retried statuses, no retry budget.
//! 3. A logging wrapper (prints every attempt) around the HTTP client.
//!
//! Both layers share one attempt count: the backoff schedule and the 60-attempt limit count
//! the 429s too, and both allow `max_attempts - 1` retries.

#[path = "support/clari.rs"]
mod clari;
#[path = "support/logging.rs"]
mod logging;
#[path = "support/mock.rs"]
mod mock;

use std::time::Instant;

use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_throttle::{BoxError, ReplayBody};

fn usage() -> ! {
    eprintln!(
        "usage: clari_poll [--url BASE_URL] [--job ID] [--max-attempts N] [--mock-429] \
         [--mock-failed]\n\
         defaults: a local mock server, --job 42, --max-attempts 60"
    );
    std::process::exit(2)
}

/// The command line.
struct Args {
    url: Option<String>,
    job: String,
    max_attempts: u32,
    mock: mock::ClariScript,
}

impl Args {
    fn parse() -> Args {
        let mut parsed = Args {
            url: None,
            job: "42".to_owned(),
            max_attempts: clari::MAX_ATTEMPTS,
            mock: mock::ClariScript {
                first_429: false,
                pending: 2,
                end: "COMPLETED",
            },
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--mock-429" => parsed.mock.first_429 = true,
                "--mock-failed" => parsed.mock.end = "FAILED",
                "--url" | "--job" | "--max-attempts" => {
                    let Some(value) = args.next() else { usage() };
                    match flag.as_str() {
                        "--url" => parsed.url = Some(value.trim_end_matches('/').to_owned()),
                        "--job" if !value.is_empty() && !value.contains(['/', '?', '#']) => {
                            parsed.job = value
                        }
                        "--max-attempts" => match value.parse() {
                            Ok(n) if n >= 1 => parsed.max_attempts = n,
                            _ => usage(),
                        },
                        _ => usage(),
                    }
                }
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
        let url = mock::spawn(mock::clari(self.mock)).await?;
        let first = if self.mock.first_429 {
            "429 (no Retry-After), "
        } else {
            ""
        };
        let end = self.mock.end;
        println!("mock Clari API on {url}: {first}PENDING, PENDING, {end}");
        Ok(url)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    logging::init();
    let args = Args::parse();
    let base = args.base_url().await?;
    let log = mock::Log::new(&["content-type"]);
    let states = log.clone();
    let (retry_after, backoff) = clari::layers(args.max_attempts, move |state| {
        states.say(format_args!("  job state: {state}"))
    })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let svc = ServiceBuilder::new()
        .layer(retry_after)
        .layer(backoff)
        .service(mock::Logged::new(client, log.clone()));

    let key = std::env::var("CLARI_API_KEY").ok();
    let started = Instant::now();
    let outcome = clari::poll_with_backoff(svc, &base, &args.job, key.as_deref()).await;
    let attempts = log.take_attempts();
    let took = mock::secs(started.elapsed());
    let job = &args.job;
    let code = match outcome {
        Ok(done) => {
            let state = clari::state_of(&done).unwrap_or_default();
            log.say(format_args!(
                "outcome: job {job} {state} after {attempts} attempt(s) in {took}: {done}"
            ));
            if state == "COMPLETED" {
                0
            } else {
                3
            }
        }
        Err(e) => {
            log.say(format_args!(
                "outcome: {e} (after {attempts} attempt(s) in {took})"
            ));
            eprintln!("{e}");
            1
        }
    };
    std::process::exit(code)
}
