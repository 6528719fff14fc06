//! The round trip: the crate's own client stack against a server enforcing 100 requests per
//! 10 s with the crate's own `RateLimitLayer`, in-process, under paused time. Shared by
//! `examples/round_trip.rs` and `tests/round_trip.rs`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_throttle::key::BearerToken;
use tower_throttle::monitor::{MonitorHandle, MonitorStats};
use tower_throttle::pacing::{Aimd, PacingLayer};
use tower_throttle::rate_limit::RateLimitBody;
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::ReplayBody;
use tower_throttle::{ClientStack, Quota, RateLimitHandle, RateLimitLayer, Rule};

type Body = RateLimitBody<Full<Bytes>>;
type Server = BoxCloneService<Request<ReplayBody>, Response<Body>, Infallible>;
type Client = BoxCloneService<Request<Full<Bytes>>, Response<Body>, tower_throttle::Error>;

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Requests the caller got a 2xx for.
    pub succeeded: u64,
    /// Responses with status 429 the caller saw.
    pub surfaced_429: u64,
    /// 429 answers the server sent (including ones a retry layer absorbed).
    pub server_429: u64,
    /// Simulated time from the first request to the last response.
    pub elapsed: Duration,
    /// The least time the server allows for these requests / the time taken.
    pub efficiency: f64,
    /// What the client's `HeaderMonitorLayer` counted, when the client has one.
    pub monitor: Option<MonitorStats>,
}

/// The limit on both sides: 100 requests per 10 s per API key.
pub fn rule() -> Rule {
    Rule::new(
        "api",
        Quota::new(100, Duration::from_secs(10)).expect("valid quota"),
    )
    .key(BearerToken)
}

fn server() -> (Server, RateLimitHandle) {
    let layer = RateLimitLayer::builder()
        .rule(rule())
        .build()
        .expect("valid layer");
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_req: Request<ReplayBody>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }));
    (BoxCloneService::new(svc), handle)
}

/// The least time the server needs for `n` requests: a burst of 100, then 10 per second.
pub fn minimum_time(n: u64) -> Duration {
    Duration::from_millis(n.saturating_sub(100) * 100)
}

/// The crate's client stack in its documented order ([`ClientStack`]): the Retry-After gate
/// and its retries outermost, backoff, pacing with the same rule as the server (so retries
/// are paced again), the header monitor next to the server.
pub fn paced_client(server: Server) -> (Client, Option<MonitorHandle>) {
    let pacing = RateLimitLayer::builder()
        .rule(rule())
        .build()
        .expect("valid rules")
        .pacing()
        .max_queue_wait(Duration::from_secs(3600))
        .build()
        .expect("valid pacing");
    stack(pacing, server)
}

/// The same stack with adaptive pacing only: no limit configured on the client (a rule
/// far above the server's), the server's limit learned from its first answer.
pub fn adaptive_client(server: Server) -> (Client, Option<MonitorHandle>) {
    let pacing = RateLimitLayer::builder()
        .rule(Rule::new(
            "unlimited",
            Quota::new(1_000_000, Duration::from_secs(1)).expect("valid quota"),
        ))
        .build()
        .expect("valid rules")
        .pacing()
        .max_queue_wait(Duration::from_secs(3600))
        .adaptive(Aimd::new(1.0).expect("valid start"))
        .build()
        .expect("valid pacing");
    stack(pacing, server)
}

fn stack(pacing: PacingLayer, server: Server) -> (Client, Option<MonitorHandle>) {
    let stack = ClientStack::builder(pacing)
        .retry_after(
            RetryAfterLayer::builder()
                .max_retries(100)
                .build()
                .expect("valid layer"),
        )
        .build();
    let handle = stack.monitor_handle();
    let client = BoxCloneService::new(ServiceBuilder::new().layer(stack).service(server));
    (client, Some(handle))
}

/// A naive client: retries a 429 after its Retry-After, nothing else.
pub fn naive_client(server: Server) -> (Client, Option<MonitorHandle>) {
    let client = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(
                RetryAfterLayer::builder()
                    .max_retries(10_000)
                    .gate(false)
                    .build()
                    .expect("valid layer"),
            )
            .service(server),
    );
    (client, None)
}

/// Sends `n` requests from `workers` concurrent callers through the client `make` builds.
pub async fn run(
    n: u64,
    workers: u64,
    make: fn(Server) -> (Client, Option<MonitorHandle>),
) -> Outcome {
    let (server, handle) = server();
    let (client, monitor) = make(server);
    let succeeded = Arc::new(AtomicU64::new(0));
    let surfaced = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let per_worker = n / workers;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, succeeded, surfaced) = (client.clone(), succeeded.clone(), surfaced.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_worker {
                let req = Request::get("http://api.test/v1/users")
                    .header("authorization", "Bearer sk_test_round_trip")
                    .body(Full::new(Bytes::new()))
                    .expect("valid request");
                match client.clone().oneshot(req).await {
                    Ok(res) if res.status().is_success() => {
                        succeeded.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(res) if res.status() == StatusCode::TOO_MANY_REQUESTS => {
                        surfaced.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(res) => panic!("unexpected status {}", res.status()),
                    Err(e) => panic!("request failed: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let elapsed = start.elapsed();
    Outcome {
        succeeded: succeeded.load(Ordering::Relaxed),
        surfaced_429: surfaced.load(Ordering::Relaxed),
        server_429: handle.rule("api").map_or(0, |r| r.limited),
        elapsed,
        efficiency: minimum_time(per_worker * workers).as_secs_f64()
            / elapsed.as_secs_f64().max(1e-9),
        monitor: monitor.map(|m| m.stats()),
    }
}
