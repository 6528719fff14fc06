//! The whole story over real loopback, our layers on both sides: a tonic server behind
//! `RateLimitLayer` (examples/tonic_server.rs' `per_api_key` rule: 3 `SayHello` calls per
//! 10 s per `x-api-key`) and a tonic client through our client stacks (the README's
//! retrying stack, or pacing) over a `Channel`.
//!
//! Time is paused. The server records the virtual instant of every call that reaches it,
//! before the rate limiter (`arrivals`), and of every call its handler answers
//! (`answered`). Under paused time tokio jumps to the next timer whenever the runtime
//! idles, also while IO is in flight; nothing here (tonic's server, client and channel
//! by default, the limiter, the monitor) sets a timer of its own, and the client layers
//! set one only between attempts, when no IO is in flight. So a round trip takes no
//! virtual time, every wait is the client's own, and the instants below are exact; each
//! test checks that time did not move where it must not.
#![cfg(feature = "tonic")]

#[path = "support/greeter_rules.rs"]
mod greeter_rules;
#[path = "tonic_client/harness.rs"]
mod harness;
#[path = "../examples/support/helloworld.rs"]
mod helloworld;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greeter_rules::per_api_key;
use harness::{boxed, connect, ms, Svc};
use helloworld::{GreeterClient, GreeterServer, HelloReply, HelloRequest};
use tokio::time::Instant;
use tonic::{Code, Status};
use tower::util::MapRequestLayer;
use tower::{Layer, ServiceBuilder};
use tower_throttle::backoff::{Backoff, BackoffLayer, BackoffLayerBuilder, Jitter};
use tower_throttle::headers::GrpcCode;
use tower_throttle::monitor::MonitorEvent;
use tower_throttle::pacing::PacingError;
use tower_throttle::retry_after::{RetryAfterLayer, RetryAfterLayerBuilder};
use tower_throttle::{HeaderMonitorLayer, MonitorHandle, RateLimitLayer, TonicBodyLayer};

/// Virtual instants, as offsets from the test's start.
#[derive(Clone)]
struct Instants {
    start: Instant,
    seen: Arc<Mutex<Vec<Duration>>>,
}

impl Instants {
    fn new(start: Instant) -> Self {
        Instants {
            start,
            seen: Arc::default(),
        }
    }

    fn record(&self) {
        self.seen.lock().unwrap().push(self.start.elapsed());
    }

    fn get(&self) -> Vec<Duration> {
        self.seen.lock().unwrap().clone()
    }
}

/// Offsets in milliseconds.
fn at(offsets: &[u64]) -> Vec<Duration> {
    offsets.iter().copied().map(ms).collect()
}

fn rules() -> RateLimitLayer {
    RateLimitLayer::builder()
        .rule(per_api_key())
        .build()
        .unwrap()
}

struct Server {
    addr: SocketAddr,
    /// Every call that reached the server (refused ones too).
    arrivals: Instants,
    /// Every call the handler answered (the admitted ones).
    answered: Instants,
}

impl Server {
    fn origin(&self) -> http::Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// The monitor's (and the gate's) endpoint: authority + gRPC method.
    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}/helloworld.Greeter/SayHello", self.addr.port())
    }
}

/// The greeter behind `RateLimitLayer` on the whole server, on a fresh loopback port.
async fn serve(start: Instant) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrivals, answered) = (Instants::new(start), Instants::new(start));
    let arrived = arrivals.clone();
    let record = MapRequestLayer::new(move |req: http::Request<tonic::body::Body>| {
        arrived.record();
        req
    });
    let handled = answered.clone();
    let greeter = GreeterServer::new(move |req| {
        handled.record();
        let message = format!("Hello {}!", req.into_inner().name);
        Ok(tonic::Response::new(HelloReply { message }))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(record)
            .layer(rules())
            .add_service(greeter)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Server {
        addr,
        arrivals,
        answered,
    }
}

/// `SayHello { name }` with `x-api-key: key`.
fn hello(key: &str, name: &str) -> tonic::Request<HelloRequest> {
    let mut req = tonic::Request::new(HelloRequest { name: name.into() });
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    req
}

/// examples/tonic_client.rs' layers: the gate never waits past 30 s; backoff 1 s × 2ⁿ
/// with equal jitter, 3 retries, pushbacks exactly.
fn retry_after() -> RetryAfterLayerBuilder {
    RetryAfterLayer::builder().max_wait(Duration::from_secs(30))
}

fn backoff() -> BackoffLayerBuilder {
    BackoffLayer::builder()
        .backoff(
            Backoff::exponential(Duration::from_secs(1), 2.0)
                .unwrap()
                .jitter(Jitter::Equal),
        )
        .max_retries(3)
}

/// A monitor that keeps every event.
fn monitor() -> (
    HeaderMonitorLayer,
    MonitorHandle,
    Arc<Mutex<Vec<MonitorEvent>>>,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let layer = HeaderMonitorLayer::builder()
        .on_event(move |e: &MonitorEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let handle = layer.handle();
    (layer, handle, events)
}

/// The README's stack over a channel to `server`: RetryAfterLayer, BackoffLayer,
/// HeaderMonitorLayer, TonicBodyLayer.
async fn retrying_stack(
    retry_after: RetryAfterLayer,
    backoff: BackoffLayer,
    monitor: HeaderMonitorLayer,
    server: &Server,
) -> GreeterClient<Svc> {
    let stack = ServiceBuilder::new()
        .layer(retry_after)
        .layer(backoff)
        .layer(monitor)
        .layer(TonicBodyLayer)
        .service(connect(server.addr).await);
    GreeterClient::with_origin(boxed(stack), server.origin())
}

fn pushback(status: &Status) -> Option<&str> {
    let value = status.metadata().get("grpc-retry-pushback-ms")?;
    value.to_str().ok()
}

/// The (status, gRPC status, remaining) of each `Hit` event.
fn hits(events: &Mutex<Vec<MonitorEvent>>, endpoint: &str) -> Vec<(u16, Option<GrpcCode>)> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            MonitorEvent::Hit {
                endpoint: key,
                status,
                grpc_status,
                remaining,
            } => {
                assert_eq!((key.as_str(), *remaining), (endpoint, Some(0)), "{e:?}");
                (status.as_u16(), *grpc_status)
            }
            other => panic!("only hits expected: {other:?}"),
        })
        .collect()
}

/// Three calls at t = 0 pass; the fourth is refused by the server (RESOURCE_EXHAUSTED,
/// pushback 3334 ms: one emission interval, 10/3 s, rounded up), and the client's
/// BackoffLayer retries it after exactly the pushback, when the server admits it. A fifth
/// call right after is not held by the gate: the refusal was retried inside
/// BackoffLayer, so RetryAfterLayer only saw the success and blocked nothing. It goes at
/// once, is refused again (pushback 3333 ms: the bucket is 1 ms further along) and is
/// retried the same way.
#[tokio::test(start_paused = true)]
async fn refused_by_our_server_retried_by_our_client_after_exactly_the_pushback() {
    let start = Instant::now();
    let server = serve(start).await;
    let (monitor, seen, events) = monitor();
    let retry_after = retry_after().build().unwrap();
    let gate = retry_after.gate().unwrap().clone();
    let mut client =
        retrying_stack(retry_after, backoff().build().unwrap(), monitor, &server).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "connecting took no time");

    for name in ["a", "b", "c"] {
        let reply = client.say_hello(hello("k1", name)).await.unwrap();
        assert_eq!(reply.into_inner().message, format!("Hello {name}!"));
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "time moved");
    let reply = client.say_hello(hello("k1", "d")).await.unwrap();
    assert_eq!(reply.into_inner().message, "Hello d!");
    assert_eq!(start.elapsed(), ms(3334));
    assert_eq!(server.arrivals.get(), at(&[0, 0, 0, 0, 3334]));
    assert_eq!(server.answered.get(), at(&[0, 0, 0, 3334]));

    // The monitor saw the refusal, keyed by authority + gRPC method.
    let endpoint = server.endpoint();
    assert_eq!(
        hits(&events, &endpoint),
        [
            (200, None),
            (200, Some(GrpcCode::ResourceExhausted)),
            (200, None)
        ],
        "remaining 0 after the 3rd, the refusal, remaining 0 after the retry"
    );
    let snap = seen
        .snapshot(&endpoint)
        .expect("keyed by authority + method");
    assert_eq!((snap.limit, snap.remaining), (Some(3), Some(0)));
    assert_eq!(
        snap.last_grpc_status, None,
        "the last answer was the success"
    );
    assert!(
        gate.blocked_endpoints().is_empty(),
        "the gate saw no refusal"
    );

    let reply = client.say_hello(hello("k1", "e")).await.unwrap();
    assert_eq!(reply.into_inner().message, "Hello e!");
    assert_eq!(start.elapsed(), ms(3334 + 3333));
    assert_eq!(server.arrivals.get(), at(&[0, 0, 0, 0, 3334, 3334, 6667]));
    assert_eq!(server.answered.get(), at(&[0, 0, 0, 3334, 6667]));
    let stats = seen.stats();
    assert_eq!((stats.responses, stats.hits, stats.warnings), (7, 5, 0));
    assert_eq!(
        hits(&events, &endpoint)[3..],
        [(200, Some(GrpcCode::ResourceExhausted)), (200, None)]
    );
    assert!(gate.blocked_endpoints().is_empty());
}

/// A pushback past the client's limits (RetryAfterLayer's `max_wait`, and BackoffLayer's
/// `max_elapsed`, without which BackoffLayer would wait the pushback out): the tonic
/// caller gets the server's own RESOURCE_EXHAUSTED, message and metadata, not UNKNOWN.
/// The gate now blocks the method for the pushback: the next call is not sent, and its
/// status (the gate's) says how long the block still lasts.
#[tokio::test(start_paused = true)]
async fn a_pushback_past_max_wait_reaches_the_caller_as_the_servers_status() {
    let start = Instant::now();
    let server = serve(start).await;
    let (monitor, seen, _) = monitor();
    let retry_after = retry_after()
        .max_wait(ms(1000))
        .default_delay(ms(1000))
        .build()
        .unwrap();
    let gate = retry_after.gate().unwrap().clone();
    let backoff = backoff().max_elapsed(ms(1000)).build().unwrap();
    let mut client = retrying_stack(retry_after, backoff, monitor, &server).await;
    for name in ["a", "b", "c"] {
        client.say_hello(hello("k1", name)).await.unwrap();
    }

    let refused = client.say_hello(hello("k1", "d")).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "time moved");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        refused.message(),
        "rate limit 'per_api_key' exceeded (3 per 10s); retry in 3334 ms"
    );
    assert_eq!(pushback(&refused), Some("3334"));
    let meta = |name: &str| refused.metadata().get(name).unwrap().to_str().unwrap();
    assert_eq!(
        (meta("x-ratelimit-limit"), meta("x-ratelimit-remaining")),
        ("3", "0")
    );
    assert_eq!(server.arrivals.get(), at(&[0, 0, 0, 0]), "sent once");
    let endpoint = server.endpoint();
    assert_eq!(
        seen.snapshot(&endpoint).unwrap().last_grpc_status,
        Some(GrpcCode::ResourceExhausted)
    );
    let gate_key = format!("POST {endpoint}");
    assert_eq!(gate.blocked_endpoints(), [(gate_key, ms(3334))]);

    tokio::time::advance(ms(500)).await;
    let held = client.say_hello(hello("k1", "e")).await.unwrap_err();
    assert_eq!(held.code(), Code::ResourceExhausted, "{held:?}");
    assert!(held.message().contains("longer than max_wait"), "{held:?}");
    assert_eq!(pushback(&held), Some("2834"), "the block left");
    assert_eq!(server.arrivals.get().len(), 4, "not sent");
}

/// Pacing is body-generic: it goes straight over a `Channel`, no TonicBodyLayer. A client
/// that paces itself by the server's own rule is never refused: its 4th call waits
/// the 10/3 s the server would ask (to the next millisecond), and the server admits it. With a
/// `max_queue_wait` shorter than that wait, the call is not sent and the tonic caller
/// reads RESOURCE_EXHAUSTED with the wait as pushback (not UNKNOWN).
#[tokio::test(start_paused = true)]
async fn a_paced_client_is_never_refused_and_a_wait_too_long_reads_resource_exhausted() {
    let start = Instant::now();
    let server = serve(start).await;
    let paced = |max_queue_wait: Duration| {
        rules()
            .pacing()
            .max_queue_wait(max_queue_wait)
            .build()
            .unwrap()
    };
    let patient = paced(Duration::from_secs(10));
    let channel = connect(server.addr).await;
    let mut client = GreeterClient::with_origin(patient.layer(channel.clone()), server.origin());
    for name in ["a", "b", "c", "d"] {
        let reply = client.say_hello(hello("k1", name)).await.unwrap();
        assert_eq!(reply.into_inner().message, format!("Hello {name}!"));
    }
    // The wait is 10/3 s (3.333333333 s); tokio's timers tick in whole milliseconds and
    // round a deadline up, so the call goes at 3334 ms: never early.
    assert_eq!(start.elapsed(), ms(3334));
    assert_eq!(server.arrivals.get(), at(&[0, 0, 0, 3334]));
    assert_eq!(server.answered.get(), at(&[0, 0, 0, 3334]), "none refused");
    let stats = patient.handle().rule("per_api_key").unwrap();
    assert_eq!((stats.admitted, stats.limited), (4, 1));

    // Another key, a 1 s queue limit: the 4th call would wait 10/3 s.
    let hasty = paced(Duration::from_secs(1));
    let mut client = GreeterClient::with_origin(hasty.layer(channel), server.origin());
    for name in ["a", "b", "c"] {
        client.say_hello(hello("k2", name)).await.unwrap();
    }
    let refused = client.say_hello(hello("k2", "d")).await.unwrap_err();
    let interval = Duration::from_nanos(3_333_333_333);
    assert_eq!(start.elapsed(), ms(3334), "failed at once");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(pushback(&refused), Some("3334"), "the wait, rounded up");
    assert_eq!(
        refused.message(),
        "request not sent: rule \"per_api_key\" would admit it only in 3.333333333s, \
         past max_queue_wait"
    );
    // tonic keeps our error as the status's source: the PacingError is still there.
    let ours = std::error::Error::source(&refused)
        .and_then(|e| e.downcast_ref::<tower_throttle::Error>())
        .and_then(|e| e.downcast_ref::<PacingError>());
    assert!(
        matches!(ours, Some(PacingError::WaitTooLong { wait, .. }) if *wait == interval),
        "{ours:?}"
    );
    assert_eq!(
        server.arrivals.get().len(),
        7,
        "the 4th k2 call was not sent"
    );
}
