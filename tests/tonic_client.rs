//! The client layers over a real tonic `Channel` on loopback, called by a real tonic
//! client, against a real tonic server whose handlers answer with `Status`es (tonic sends
//! them as trailers-only responses: HTTP 200, the status in the headers).
//!
//! Time is paused. Each attempt's send instant is recorded by a service between the stack
//! and the channel, in `call` (before any IO), so gaps are exact. Under paused time tokio
//! jumps to the next timer whenever the runtime idles, also while IO is in flight; so a
//! test never keeps a timer pending during a round trip whose instant it asserts (the
//! tonic client, server and channel set no timers of their own by default).
#![cfg(feature = "tonic")]

#[path = "tonic_client/harness.rs"]
mod harness;
#[path = "../examples/support/helloworld.rs"]
mod helloworld;

use std::time::Duration;

use harness::{boxed, connect, greet, ms, refuse, serve, Sent, Server};
use helloworld::{GreeterClient, HelloRequest, SAY_HELLO};
use tonic::Code;
use tower::{Layer, ServiceBuilder};
use tower_throttle::backoff::{Backoff, BackoffLayer, BackoffLayerBuilder, Jitter, RetryBudget};
use tower_throttle::headers::GrpcCode;
use tower_throttle::monitor::MonitorEvent;
use tower_throttle::retry_after::{RetryAfterLayer, RetryAfterLayerBuilder};
use tower_throttle::{HeaderMonitorLayer, TonicBodyLayer};

fn backoff() -> BackoffLayerBuilder {
    BackoffLayer::builder()
        .backoff(
            Backoff::exponential(Duration::from_secs(1), 2.0)
                .unwrap()
                .jitter(Jitter::None),
        )
        .budget(None)
}

fn retry_after() -> RetryAfterLayerBuilder {
    RetryAfterLayer::builder()
        .release_jitter(Duration::ZERO)
        .spread_bare_delays(false)
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest { name: name.into() }
}

fn pushback(status: &tonic::Status) -> Option<&str> {
    let value = status.metadata().get("grpc-retry-pushback-ms")?;
    value.to_str().ok()
}

/// The README's stack (Retry-After gate outside, backoff, monitor) over a `Channel`, with
/// `TonicBodyLayer` as the one line between them, wrapped by the generated client as is.
#[tokio::test(start_paused = true)]
async fn pushback_is_honored_exactly_then_the_call_succeeds() {
    let server = serve(
        vec![refuse(
            Code::ResourceExhausted,
            "slow down",
            &[("grpc-retry-pushback-ms", "1500")],
        )],
        greet(&[]),
    )
    .await;
    let sent = Sent::default();
    let monitor = HeaderMonitorLayer::new();
    let stack = ServiceBuilder::new()
        .layer(retry_after().build().unwrap())
        .layer(backoff().build().unwrap())
        .layer(monitor.clone())
        .layer(sent.layer())
        .layer(TonicBodyLayer)
        .service(connect(server.addr).await);
    let mut client = GreeterClient::new(stack);

    let reply = client.say_hello(hello("Ada")).await.unwrap();
    assert_eq!(reply.into_inner().message, "Hello Ada!");
    assert_eq!(
        sent.times(SAY_HELLO),
        [ms(0), ms(1500)],
        "after exactly the pushback"
    );
    assert_eq!(server.calls(), 2);
    let stats = monitor.handle().stats();
    assert_eq!(
        (stats.responses, stats.hits),
        (2, 1),
        "RESOURCE_EXHAUSTED is a hit"
    );
}

/// The issue's defect: a give-up reached tonic as `Unknown "gave up after 4 attempts;
/// last: 200 OK"`. The caller gets the server's last status now: code, message, metadata.
#[tokio::test(start_paused = true)]
async fn a_give_up_surfaces_the_servers_status() {
    let down = refuse(
        Code::Unavailable,
        "down for maintenance",
        &[
            ("x-detail", "db-failover"),
            ("grpc-retry-pushback-ms", "100"),
        ],
    );
    let server = serve(vec![], down).await;
    let sent = Sent::default();
    // The predicate the issue's user wrote to get gRPC retries at all (now not needed,
    // nor read: UNAVAILABLE is a default retry code, whatever the method).
    let layer = backoff()
        .idempotent_only(false)
        .retry_if(|_, headers| headers.get("grpc-status").is_some_and(|v| v == "14"))
        .build()
        .unwrap();
    let stack = layer.layer(sent.over(connect(server.addr).await));
    let status = GreeterClient::new(stack)
        .say_hello(hello("Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "down for maintenance");
    assert_eq!(status.metadata().get("x-detail").unwrap(), "db-failover");
    assert_eq!(pushback(&status), Some("100"));
    assert_eq!(sent.times(SAY_HELLO), [ms(0), ms(100), ms(200), ms(300)]);

    // RetryAfterLayer gives up the same way, and its gate keeps the method blocked.
    let exhausted = refuse(
        Code::ResourceExhausted,
        "quota",
        &[("grpc-retry-pushback-ms", "1000")],
    );
    let server = serve(vec![], exhausted).await;
    let sent = Sent::default();
    let layer = retry_after().max_retries(2).build().unwrap();
    let gate = layer.gate().unwrap().clone();
    let stack = layer.layer(sent.over(connect(server.addr).await));
    let status = GreeterClient::new(stack)
        .say_hello(hello("Ada"))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, "quota")
    );
    assert_eq!(pushback(&status), Some("1000"));
    assert_eq!(sent.times(SAY_HELLO), [ms(0), ms(1000), ms(2000)]);
    let key = format!("POST {SAY_HELLO}");
    assert_eq!(gate.blocked_for(&key), Some(ms(1000)));
}

/// One `SayHello` to `server` through `RetryAfterLayer` + `BackoffLayer`: the outcome,
/// and the send instants of its attempts.
async fn through(
    retry_after: RetryAfterLayerBuilder,
    backoff: BackoffLayerBuilder,
    server: &Server,
) -> (Result<String, tonic::Status>, Vec<Duration>) {
    let sent = Sent::default();
    let stack = ServiceBuilder::new()
        .layer(retry_after.build().unwrap())
        .layer(backoff.build().unwrap())
        .service(sent.over(connect(server.addr).await));
    let outcome = GreeterClient::new(boxed(stack))
        .say_hello(hello("Ada"))
        .await;
    (
        outcome.map(|r| r.into_inner().message),
        sent.times(SAY_HELLO),
    )
}

#[tokio::test(start_paused = true)]
async fn unavailable_is_retried_invalid_argument_is_not() {
    let server = serve(vec![refuse(Code::Unavailable, "", &[])], greet(&[])).await;
    let (outcome, sent) = through(retry_after(), backoff(), &server).await;
    assert_eq!(outcome.unwrap(), "Hello Ada!");
    // No pushback: the backoff layer's schedule (1 s), although every gRPC call is a POST.
    assert_eq!(sent, [ms(0), ms(1000)]);

    // Never retried, even with a pushback; nor is a negative pushback.
    for (code, pushback) in [(Code::InvalidArgument, "10"), (Code::Unavailable, "-1")] {
        let refusal = refuse(code, "no", &[("grpc-retry-pushback-ms", pushback)]);
        let server = serve(vec![], refusal).await;
        let (outcome, sent) = through(retry_after(), backoff(), &server).await;
        let status = outcome.unwrap_err();
        assert_eq!((status.code(), status.message()), (code, "no"));
        assert_eq!((sent.len(), server.calls()), (1, 1), "{code:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_without_pushback_is_retried_only_when_configured() {
    let server = serve(vec![], refuse(Code::ResourceExhausted, "quota", &[])).await;
    let (outcome, sent) = through(retry_after(), backoff(), &server).await;
    assert_eq!(outcome.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!(sent, [ms(0)], "not retried by default");

    let codes = [GrpcCode::Unavailable, GrpcCode::ResourceExhausted];
    let once = || {
        serve(
            vec![refuse(Code::ResourceExhausted, "quota", &[])],
            greet(&[]),
        )
    };
    // Listed in both layers: the inner backoff layer retries it on its schedule.
    let (ra, bo) = (
        retry_after().grpc_retry_codes(codes),
        backoff().grpc_retry_codes(codes),
    );
    let (outcome, sent) = through(ra, bo, &once().await).await;
    assert!(outcome.is_ok());
    assert_eq!(sent, [ms(0), ms(1000)]);
    // Listed in RetryAfterLayer alone: it waits its default delay.
    let ra = retry_after()
        .grpc_retry_codes(codes)
        .default_delay(ms(2500));
    let (outcome, sent) = through(ra, backoff(), &once().await).await;
    assert!(outcome.is_ok());
    assert_eq!(sent, [ms(0), ms(2500)]);
}

/// After a pushback, a new call to the same method waits for the block; a call to another
/// method goes at once. The endpoint key is method + authority + the gRPC method's path.
#[tokio::test(start_paused = true)]
async fn the_gate_blocks_the_method_for_the_pushback() {
    let refusal = refuse(
        Code::ResourceExhausted,
        "slow down",
        &[("grpc-retry-pushback-ms", "3000")],
    );
    let server = serve(vec![refusal], greet(&[])).await;
    let sent = Sent::default();
    let layer = retry_after().build().unwrap();
    let gate = layer.gate().unwrap().clone();
    let stack = boxed(layer.layer(sent.over(connect(server.addr).await)));
    let origin: http::Uri = format!("http://{}", server.addr).parse().unwrap();
    let client = GreeterClient::with_origin(stack.clone(), origin.clone());

    let mut first = client.clone();
    let first = tokio::spawn(async move { first.say_hello(hello("a")).await });
    // No timer is pending until the refusal has been read: spin (time stands still).
    while gate.blocked_endpoints().is_empty() {
        tokio::task::yield_now().await;
    }
    let key = format!("POST {}{SAY_HELLO}", server.addr);
    assert_eq!(gate.blocked_endpoints(), [(key, ms(3000))]);

    let mut second = client.clone();
    let second = tokio::spawn(async move { second.say_hello(hello("b")).await });
    let other = tokio::spawn(harness::say_goodbye(stack, origin));
    assert_eq!(
        other.await.unwrap().unwrap_err().code(),
        Code::Unimplemented
    );
    assert!(first.await.unwrap().is_ok() && second.await.unwrap().is_ok());
    assert_eq!(
        sent.times(harness::SAY_GOODBYE),
        [ms(0)],
        "another method goes at once"
    );
    // The refused call retries, and the new one goes, when the block ends.
    assert_eq!(sent.times(SAY_HELLO), [ms(0), ms(3000), ms(3000)]);
    assert_eq!(server.calls(), 3, "SayGoodbye never reaches the handler");
}

/// A block longer than `max_wait`: the refused call gets the server's status; a new call
/// is not sent, and its error carries a `tonic::Status` that tonic finds.
#[tokio::test(start_paused = true)]
async fn a_gate_refusal_reads_as_resource_exhausted_with_the_block_left() {
    let refusal = refuse(
        Code::ResourceExhausted,
        "quota",
        &[("grpc-retry-pushback-ms", "5000")],
    );
    let server = serve(vec![refusal], greet(&[])).await;
    let sent = Sent::default();
    let layer = retry_after().max_wait(ms(1000)).default_delay(ms(1000));
    let stack = layer
        .build()
        .unwrap()
        .layer(sent.over(connect(server.addr).await));
    let mut client = GreeterClient::new(stack);
    let status = client.say_hello(hello("a")).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, "quota")
    );
    tokio::time::advance(ms(1200)).await;
    let status = client.say_hello(hello("b")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("longer than max_wait"),
        "{status:?}"
    );
    assert_eq!(pushback(&status), Some("3800"), "the block left");
    assert_eq!((sent.times(SAY_HELLO).len(), server.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn max_retries_and_the_budget_apply() {
    let server = serve(vec![], refuse(Code::Unavailable, "down", &[])).await;
    // An empty budget: no retry, and the caller still gets the server's status.
    let empty = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    for (layer, want) in [
        (backoff().max_retries(2), vec![ms(0), ms(1000), ms(3000)]),
        (backoff().budget(Some(empty)), vec![ms(0)]),
    ] {
        let sent = Sent::default();
        let stack = layer
            .build()
            .unwrap()
            .layer(sent.over(connect(server.addr).await));
        let status = GreeterClient::new(stack)
            .say_hello(hello("a"))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unavailable, "down")
        );
        assert_eq!(sent.times(SAY_HELLO), want);
    }
}

/// A server that is down: the channel's transport error reaches tonic through the stack
/// (retried, exhausted, or stopped by the budget) and still reads as UNAVAILABLE.
#[tokio::test(start_paused = true)]
async fn a_server_that_is_down_reads_unavailable() {
    let addr = harness::closed_port().await;
    let empty = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    for (budget, attempts) in [(None, 3), (Some(empty), 1)] {
        let sent = Sent::default();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let stack = ServiceBuilder::new()
            .layer(retry_after().build().unwrap())
            .layer(backoff().max_retries(2).budget(budget).build().unwrap())
            .service(sent.over(channel));
        let status = GreeterClient::new(stack)
            .say_hello(hello("a"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(sent.times(SAY_HELLO).len(), attempts, "never sent: retried");
    }
}

/// The monitor reads rate-limit metadata (they are headers) of answers and refusals, and
/// keys them by authority + gRPC method: the authority only when the client sends absolute
/// URIs (`with_origin`); tonic's default relative URIs get the method alone.
#[tokio::test(start_paused = true)]
async fn the_monitor_reads_grpc_metadata_by_method() {
    let legacy = greet(&[("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "4")]);
    let ietf = refuse(
        Code::ResourceExhausted,
        "quota",
        &[
            ("ratelimit-policy", r#""per_key";q=3;w=10"#),
            ("ratelimit", r#""per_key";r=1;t=7"#),
            ("grpc-retry-pushback-ms", "7000"),
        ],
    );
    let pushback_only = refuse(Code::Unavailable, "", &[("grpc-retry-pushback-ms", "2500")]);
    let server = serve(vec![legacy, ietf, pushback_only], greet(&[])).await;
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&events);
    let monitor = HeaderMonitorLayer::builder()
        .on_event(move |e: &MonitorEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let handle = monitor.handle();
    // The monitor passes any body through: no TonicBodyLayer needed without retries.
    let svc = monitor.layer(connect(server.addr).await);
    let origin: http::Uri = format!("http://{}", server.addr).parse().unwrap();
    let mut absolute = GreeterClient::with_origin(svc.clone(), origin);
    let mut relative = GreeterClient::new(svc);

    absolute.say_hello(hello("a")).await.unwrap();
    let key = format!("{}{SAY_HELLO}", server.addr);
    let snap = handle.snapshot(&key).expect("keyed by authority + method");
    assert_eq!((snap.limit, snap.remaining), (Some(10), Some(4)));
    assert_eq!(snap.last_grpc_status, None);

    absolute.say_hello(hello("b")).await.unwrap_err();
    let snap = handle.snapshot(&key).unwrap();
    assert_eq!((snap.limit, snap.remaining), (Some(3), Some(1)));
    assert_eq!(snap.last_grpc_status, Some(GrpcCode::ResourceExhausted));
    assert_eq!(snap.reset_after(), Some(ms(7000)));

    relative.say_hello(hello("c")).await.unwrap_err();
    let snap = handle
        .snapshot(SAY_HELLO)
        .expect("keyed by the method alone");
    assert_eq!(
        snap.reset_after(),
        Some(ms(2500)),
        "the pushback as the reset"
    );
    assert_eq!(snap.last_grpc_status, Some(GrpcCode::Unavailable));

    let stats = handle.stats();
    assert_eq!((stats.responses, stats.hits, stats.warnings), (3, 1, 0));
    let hits: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            MonitorEvent::Hit {
                status,
                grpc_status,
                ..
            } => Some((*status, *grpc_status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        hits,
        [(http::StatusCode::OK, Some(GrpcCode::ResourceExhausted))]
    );
}
