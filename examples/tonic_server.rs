//! A tonic gRPC server, tonic's canonical `helloworld.Greeter/SayHello`, rate limited:
//!
//! - `per_api_key`: 3 calls per 10 s for each `x-api-key` metadata value (on `SayHello`;
//!   calls without a key share one bucket, or with `--require-key` are refused
//!   `UNAUTHENTICATED`);
//! - `per_ip`: 10 calls per 10 s for each client IP address (every method);
//! - `grpc.health.v1.Health` is exempt (this example serves no health service, so such
//!   calls get tonic's `UNIMPLEMENTED`, but never a limit: add `tonic-health` to serve one).
//!
//! ```text
//! cargo run --example tonic_server --features tonic -- [--addr HOST:PORT] [--require-key]
//! ```
//!
//! Refused calls end with a gRPC status any client can read: `RESOURCE_EXHAUSTED` with the
//! rule, quota and wait in the message and `grpc-retry-pushback-ms` (plus the rate-limit
//! metadata), `UNAUTHENTICATED` for a missing key. The server prints each refusal too.
//!
//! Try it with the client example (`cargo run --example tonic_client --features tonic --
//! --url http://127.0.0.1:50051`), or with grpcurl and the proto of
//! `examples/support/helloworld.rs` saved as `helloworld.proto` (the server has no
//! reflection service):
//!
//! ```text
//! grpcurl -plaintext -proto helloworld.proto -H 'x-api-key: k1' -d '{"name":"x"}' \
//!     127.0.0.1:50051 helloworld.Greeter/SayHello
//! ```
//!
//! The fourth call within 10 s answers `Code: ResourceExhausted`, `Message: rate limit
//! 'per_api_key' exceeded (3 per 10s); retry in 3334 ms` (add `-v` to see the metadata).

#[path = "support/helloworld.rs"]
mod helloworld;
#[path = "support/logging.rs"]
mod logging;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tower_throttle::key::{Header, PeerIp};
use tower_throttle::rate_limit::{AutoResponder, Responder};
use tower_throttle::{MissingKey, Quota, RateLimitLayer, Rejection, Route, Rule};

use helloworld::GreeterServer;

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\n\
         usage: tonic_server [--addr HOST:PORT] [--require-key]\n\
         defaults: --addr 127.0.0.1:50051; calls without x-api-key share one bucket \
         unless --require-key"
    );
    std::process::exit(2)
}

/// The address of `--addr HOST:PORT`; exits with a clear message when it is not one.
fn parse_addr(value: &str) -> SocketAddr {
    match value.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => usage(&format!("--addr {value:?}: the host has no address")),
        Err(e) => usage(&format!("--addr {value:?}: expected HOST:PORT ({e})")),
    }
}

/// The limits of the example.
fn layer(require_key: bool) -> Result<RateLimitLayer, Box<dyn std::error::Error>> {
    let per_api_key = Rule::new("per_api_key", Quota::new(3, Duration::from_secs(10))?)
        .route(Route::grpc_method("helloworld.Greeter", "SayHello"))
        .key(Header::new("x-api-key".parse()?))
        .on_missing_key(if require_key {
            MissingKey::Reject
        } else {
            MissingKey::Shared
        });
    let per_ip = Rule::new("per_ip", Quota::new(10, Duration::from_secs(10))?).key(PeerIp::new());
    // The default responder (gRPC calls the gRPC way), printing each refusal first.
    let answer = AutoResponder::new();
    let layer = RateLimitLayer::builder()
        .rule(per_api_key)
        .rule(per_ip)
        .exempt(Route::grpc_service("grpc.health.v1.Health"))
        .responder(move |r: &Rejection<'_>| {
            let wait = r
                .retry_after()
                .map(|w| format!(", retry in {w:?}"))
                .unwrap_or_default();
            println!(
                "refused {}: {:?} (rule {}){wait}",
                r.uri().path(),
                r.reason(),
                r.rule().unwrap_or("-"),
            );
            answer.respond(r)
        })
        .build()?;
    Ok(layer)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let mut addr = parse_addr("127.0.0.1:50051");
    let mut require_key = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--addr" => match args.next() {
                Some(v) => addr = parse_addr(&v),
                None => usage("--addr needs a value"),
            },
            "--require-key" => require_key = true,
            "-h" | "--help" => usage("tonic_server: helloworld.Greeter with rate limits"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let layer = layer(require_key)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "helloworld.Greeter/SayHello on http://{} (gRPC, plaintext HTTP/2)\n\
         limits: per_api_key 3 calls / 10 s per x-api-key ({}), per_ip 10 calls / 10 s \
         per client IP; grpc.health.v1.Health exempt",
        listener.local_addr()?,
        if require_key {
            "required"
        } else {
            "calls without one share a bucket"
        },
    );
    // On the whole server: every call, whichever service it is for.
    Server::builder()
        .layer(layer)
        .add_service(GreeterServer::greeting())
        .serve_with_incoming(TcpIncoming::from(listener))
        .await?;
    Ok(())
}
