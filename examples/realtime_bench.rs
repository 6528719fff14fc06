//! The client stack in real time over real loopback HTTP: the Clerk stub server (the crate's
//! `RateLimitLayer`, 100 requests per 10 s per secret key) and 400 calls from 20 tasks with
//! one key, so 30 s at best (a burst of 100, then one per 100 ms). Three clients, each on a
//! fresh server:
//!
//! - `stack`: `ClientStack` (Retry-After, backoff, pacing with Clerk's documented limit,
//!   monitor), the documented order;
//! - `adaptive`: the same stack with no limit configured, adaptive pacing learning it from
//!   the server's first answer (starting from a guess of 1 per second);
//! - `naive`: a loop that retries 429s after their `Retry-After`.
//!
//! ```text
//! cargo run --release --example realtime_bench [-- --runs 3] [-- --only stack,adaptive]
//! ```
//!
//! Takes about 35 s per client and run. Not a test: CI runs the same shape under paused
//! time (tests/round_trip.rs).

#[path = "support/clerk.rs"]
mod clerk;
#[path = "support/race.rs"]
mod race;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_throttle::key::BearerToken;
use tower_throttle::pacing::{Aimd, PacingLayer};
use tower_throttle::{ClientStack, Quota, RateLimitLayer, ReplayBody, Rule};

const CALLS: u64 = 400;
const TASKS: u64 = 20;

/// What one run of one client measured.
struct Run {
    elapsed: Duration,
    served_429: u64,
    errors: u64,
    non_2xx: u64,
}

fn pacing(adaptive: bool) -> PacingLayer {
    let rule = if adaptive {
        // No limit on the client: a rule far above the server's.
        Rule::new(
            "none",
            Quota::new(1_000_000, Duration::from_secs(1)).expect("quota"),
        )
    } else {
        Rule::new(
            "instance",
            Quota::new(race::LIMIT, race::WINDOW).expect("quota"),
        )
        .key(BearerToken)
    };
    let builder = RateLimitLayer::builder()
        .rule(rule)
        .build()
        .expect("valid rule")
        .pacing()
        .max_queue_wait(Duration::from_secs(60));
    let builder = if adaptive {
        builder.adaptive(Aimd::new(1.0).expect("valid start"))
    } else {
        builder
    };
    builder.build().expect("valid pacing")
}

async fn stack(base: &str, adaptive: bool) -> (Duration, u64, u64) {
    let svc = ServiceBuilder::new()
        .layer(ClientStack::builder(pacing(adaptive)).build())
        .service(Client::builder(TokioExecutor::new()).build_http::<ReplayBody>());
    let (errors, non_2xx) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let workers: Vec<_> = (0..TASKS)
        .map(|_| {
            let (svc, base) = (svc.clone(), base.to_owned());
            let (errors, non_2xx) = (Arc::clone(&errors), Arc::clone(&non_2xx));
            tokio::spawn(async move {
                for _ in 0..CALLS / TASKS {
                    let req = Request::get(format!("{base}/v1/users"))
                        .header("authorization", "Bearer sk_test_bench")
                        .body(Full::new(Bytes::new()))
                        .expect("valid request");
                    match svc.clone().oneshot(req).await {
                        Ok(res) if res.status().is_success() => {}
                        Ok(_) => {
                            non_2xx.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("  caller error: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    (
        start.elapsed(),
        errors.load(Ordering::Relaxed),
        non_2xx.load(Ordering::Relaxed),
    )
}

async fn run(client: &str) -> Run {
    let (app, handle) = clerk::app(clerk::Instance::Development).expect("the Clerk table");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let server = tokio::spawn(clerk::serve(listener, app));
    let (elapsed, errors, non_2xx) = match client {
        "stack" => stack(&base, false).await,
        "adaptive" => stack(&base, true).await,
        _ => {
            let tally = Arc::new(race::Tally::default());
            let report = race::naive(base.clone(), CALLS, TASKS, Arc::clone(&tally)).await;
            let failed = tally.failed.load(Ordering::Relaxed);
            (report.elapsed, 0, failed)
        }
    };
    server.abort();
    Run {
        elapsed,
        served_429: handle.rules().iter().map(|r| r.limited).sum(),
        errors,
        non_2xx,
    }
}

#[tokio::main]
async fn main() {
    let mut runs = 1;
    let mut only = vec!["stack", "adaptive", "naive"];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next()) {
            ("--runs", Some(n)) => runs = n.parse().expect("--runs N"),
            ("--only", Some(list)) => only = list.split(',').map(|s| s.trim()).collect(),
            _ => panic!("usage: realtime_bench [--runs N] [--only stack,adaptive,naive]"),
        }
    }
    let least = race::least_time(CALLS);
    println!(
        "{CALLS} calls from {TASKS} tasks, one key, server limit {} per {} s: least time {:.1} s\n",
        race::LIMIT,
        race::WINDOW.as_secs(),
        least.as_secs_f64()
    );
    println!("| client   | run | wall time (s) | of least | of allowed throughput | 429s served | caller errors | non-2xx to callers |");
    println!("|----------|-----|---------------|----------|-----------------------|-------------|---------------|--------------------|");
    for client in &only {
        for n in 1..=runs {
            let r = run(client).await;
            let s = r.elapsed.as_secs_f64();
            println!(
                "| {client:<8} | {n:>3} | {s:>13.2} | {:>+7.1} % | {:>19.1} % | {:>11} | {:>13} | {:>18} |",
                100.0 * (s / least.as_secs_f64() - 1.0),
                100.0 * least.as_secs_f64() / s,
                r.served_429,
                r.errors,
                r.non_2xx,
            );
        }
    }
}
