//! A tonic client of `helloworld.Greeter/SayHello` through the crate's client stack, over
//! a tonic `Channel`: one call, retried as the server's gRPC status and
//! `grpc-retry-pushback-ms` say.
//!
//! ```text
//! cargo run --features tonic --example tonic_server                 # a server that limits
//! cargo run --features tonic --example tonic_client -- --api-key k1 --name Ada
//! ```
//!
//! Flags: `--url URL` (default `http://127.0.0.1:50051`), `--api-key KEY` (sent as
//! `x-api-key` metadata), `--name NAME` (default `world`). Exits 0 when the call finally
//! succeeded, 1 with the server's (or the stack's) status otherwise, 2 on bad flags.
//!
//! The stack, outermost first (the README's HTTP client stack, over a `Channel`):
//!
//! 1. `RetryAfterLayer` with its endpoint gate: after a refusal with pushback that it
//!    sees, new calls to the same method wait for the block to end, 30 s at most.
//! 2. `BackoffLayer`: `UNAVAILABLE`, and `RESOURCE_EXHAUSTED` with a pushback, are retried
//!    (gRPC's retry codes, whatever the method: every gRPC call is a POST), 3 times at
//!    most, after exactly the pushback, else 1 s × 2ⁿ with equal jitter. A server that is
//!    down is retried too (the call was never sent). It gives up rather than wait past
//!    30 s since the first attempt (`max_elapsed`): a longer pushback is returned to the
//!    caller as the server sent it. (The inner layer waits out what it retries, so the
//!    outer layer's `max_wait` alone would not bound the whole call.)
//! 3. `HeaderMonitorLayer`: reads the rate-limit metadata of every answer.
//! 4. A print of every attempt and answer.
//! 5. `TonicBodyLayer`: the one line a `Channel` needs (it takes only tonic's body type;
//!    the retrying layers send a body they can replay).
//!
//! Run it four times within 10 s against `tonic_server` with one API key (3 calls per
//! 10 s): the fourth call is refused with `RESOURCE_EXHAUSTED` and a pushback, waits
//! exactly that long and succeeds. Against no server at all, it retries and ends with
//! `UNAVAILABLE`.

#[path = "support/helloworld.rs"]
mod helloworld;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helloworld::{GreeterClient, HelloRequest};
use http::{Request, Response};
use tonic::metadata::MetadataValue;
use tower::ServiceBuilder;
use tower_throttle::backoff::{Backoff, BackoffLayer, Jitter};
use tower_throttle::headers::{grpc_status, GRPC_RETRY_PUSHBACK_MS};
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::{BoxError, HeaderMonitorLayer, ReplayBody, RetryContext, TonicBodyLayer};

struct Flags {
    url: String,
    api_key: Option<String>,
    name: String,
}

fn usage(why: &str) -> ! {
    eprintln!("tonic_client: {why}");
    eprintln!("usage: tonic_client [--url URL] [--api-key KEY] [--name NAME]");
    eprintln!("       (default --url http://127.0.0.1:50051 --name world)");
    std::process::exit(2)
}

fn flags() -> Flags {
    let mut flags = Flags {
        url: "http://127.0.0.1:50051".into(),
        api_key: None,
        name: "world".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            usage(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => flags.url = value,
            "--api-key" => flags.api_key = Some(value),
            "--name" => flags.name = value,
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    flags
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let flags = flags();
    let origin: http::Uri = flags
        .url
        .parse()
        .unwrap_or_else(|e| usage(&format!("bad --url: {e}")));
    let endpoint = tonic::transport::Endpoint::from_shared(flags.url.clone())
        .unwrap_or_else(|e| usage(&format!("bad --url: {e}")));
    let mut request = tonic::Request::new(HelloRequest { name: flags.name });
    if let Some(key) = &flags.api_key {
        let value = MetadataValue::try_from(key.as_str())
            .unwrap_or_else(|_| usage("--api-key must be visible ASCII"));
        request.metadata_mut().insert("x-api-key", value);
    }

    let retry_after = RetryAfterLayer::builder()
        .max_wait(Duration::from_secs(30))
        .build()?;
    let gate = retry_after.gate().cloned();
    let backoff = BackoffLayer::builder()
        .backoff(Backoff::exponential(Duration::from_secs(1), 2.0)?.jitter(Jitter::Equal))
        .max_retries(3)
        .max_elapsed(Duration::from_secs(30))
        .build()?;
    let monitor = HeaderMonitorLayer::new();
    let seen = monitor.handle();
    let started = Instant::now();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    // Lazy: a server that is down is an attempt that fails (and is retried), not a
    // failure to build the client.
    let channel = endpoint.connect_lazy();
    let stack = ServiceBuilder::new()
        .layer(retry_after)
        .layer(backoff)
        .layer(monitor)
        .map_request(move |req: Request<ReplayBody>| {
            counted.fetch_add(1, Ordering::Relaxed);
            let retry = req
                .extensions()
                .get::<RetryContext>()
                .map_or(0, RetryContext::retries);
            println!(
                "[{}] attempt {}: POST {}",
                secs(started),
                retry + 1,
                req.uri()
            );
            req
        })
        .map_response(move |res: Response<tonic::body::Body>| {
            let status =
                grpc_status(res.headers()).map_or("OK, in the trailers".into(), |c| c.to_string());
            let pushback = res.headers().get(GRPC_RETRY_PUSHBACK_MS);
            let pushback = pushback
                .and_then(|v| v.to_str().ok())
                .map(|ms| format!(", pushback {ms} ms"));
            println!(
                "[{}]   answer: {status}{}",
                secs(started),
                pushback.unwrap_or_default()
            );
            res
        })
        .map_err(move |e: tonic::transport::Error| {
            let cause = std::error::Error::source(&e)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            println!("[{}]   failed: {e}{cause}", secs(started));
            e
        })
        .layer(TonicBodyLayer)
        .service(channel);
    // Absolute URIs, so that the gate and the monitor key the method under the server.
    let mut client = GreeterClient::with_origin(stack, origin);

    let outcome = client.say_hello(request).await;
    let attempts = attempts.load(Ordering::Relaxed);
    let took = secs(started);
    for (endpoint, snap) in seen.snapshots() {
        println!(
            "monitor: {endpoint}: limit {:?}, remaining {:?}, reset in {:?}, last gRPC status {:?}",
            snap.limit,
            snap.remaining,
            snap.reset_after(),
            snap.last_grpc_status.map(|c| c.name()),
        );
    }
    let stats = seen.stats();
    println!(
        "monitor: {} answer(s) seen, {} hit(s), {} warning(s)",
        stats.responses, stats.hits, stats.warnings
    );
    if let Some(gate) = gate {
        println!("gate: blocked {:?}", gate.blocked_endpoints());
    }
    match outcome {
        Ok(reply) => {
            let message = reply.into_inner().message;
            println!("outcome: OK after {attempts} attempt(s) in {took}: {message:?}");
            Ok(())
        }
        Err(status) => {
            let pushback = status.metadata().get(GRPC_RETRY_PUSHBACK_MS.as_str());
            let pushback = pushback
                .and_then(|v| v.to_str().ok())
                .map(|ms| format!(" (pushback {ms} ms)"));
            println!(
                "outcome: {:?} after {attempts} attempt(s) in {took}: {:?}{}",
                status.code(),
                status.message(),
                pushback.unwrap_or_default(),
            );
            std::process::exit(1)
        }
    }
}

fn secs(since: Instant) -> String {
    format!("{:.3} s", since.elapsed().as_secs_f64())
}
