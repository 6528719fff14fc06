//! `RateLimitLayer` in front of a real tonic server, called by the real tonic client over
//! loopback: refusals reach the client as gRPC statuses (code, decoded message, pushback
//! and rate-limit metadata), `PeerIp` reads tonic's connection info, and the layer works
//! on the whole server and on one service.
//!
//! Time is paused (`start_paused`): the limiter's clock follows tokio's, and nothing
//! these calls do sets a timer, so no time passes between calls unless a test advances
//! it. Each test checks that, so every wait below is exact.
#![cfg(feature = "tonic")]

#[path = "support/greeter_rules.rs"]
mod greeter_rules;
#[path = "../examples/support/helloworld.rs"]
mod helloworld;

use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tower::{Layer, ServiceExt};
use tower_throttle::clock::Timestamp;
use tower_throttle::gcra::{Check, Decision};
use tower_throttle::key::PeerIp;
use tower_throttle::store::{StoreError, Usage, UsageLimits};
use tower_throttle::{
    BuildError, MissingKey, Quota, RateLimitLayer, Route, Rule, Store, StoreFailure,
};

use greeter_rules::per_api_key;
use helloworld::{GreeterClient, GreeterServer, HelloRequest, SAY_HELLO};

/// Where the layer goes.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// `Server::builder().layer(layer)`: every call to the server.
    Server,
    /// `add_service(layer.layer(GreeterServer::..))`: calls to that service.
    Service,
}

const PLACEMENTS: [Placement; 2] = [Placement::Server, Placement::Service];

/// Serves the greeter behind `layer`, placed as `placement`, on a fresh loopback port.
async fn serve<St>(layer: RateLimitLayer<St>, placement: Placement) -> SocketAddr
where
    St: Store + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TcpIncoming::from(listener);
    match placement {
        Placement::Server => tokio::spawn(
            Server::builder()
                .layer(layer)
                .add_service(GreeterServer::greeting())
                .serve_with_incoming(incoming),
        ),
        Placement::Service => tokio::spawn(
            Server::builder()
                .add_service(layer.layer(GreeterServer::greeting()))
                .serve_with_incoming(incoming),
        ),
    };
    addr
}

/// A channel to `addr` whose connection leaves from `from` (any of 127/8 on Linux).
async fn channel_from(addr: SocketAddr, from: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(Some(from.parse::<IpAddr>().unwrap()))
        .connect()
        .await
        .unwrap()
}

async fn client(addr: SocketAddr) -> GreeterClient<Channel> {
    GreeterClient::new(channel_from(addr, "127.0.0.1").await)
}

/// `SayHello`, with `x-api-key: key` when there is a key.
async fn say_hello(
    client: &mut GreeterClient<Channel>,
    key: Option<&str>,
) -> Result<String, Status> {
    let mut req = tonic::Request::new(HelloRequest { name: "x".into() });
    if let Some(key) = key {
        req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    }
    client
        .say_hello(req)
        .await
        .map(|res| res.into_inner().message)
}

/// A layer with one rule.
fn limits(rule: Rule) -> RateLimitLayer {
    RateLimitLayer::builder().rule(rule).build().unwrap()
}

fn meta<'a>(status: &'a Status, name: &str) -> &'a str {
    status
        .metadata()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {status:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_fourth_call_in_ten_seconds_is_resource_exhausted_with_pushback() {
    for placement in PLACEMENTS {
        let mut client = client(serve(limits(per_api_key()), placement).await).await;
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                say_hello(&mut client, Some("k1")).await.unwrap(),
                "Hello x!"
            );
        }
        let refused = say_hello(&mut client, Some("k1")).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO, "time moved");
        assert_eq!(
            refused.code(),
            Code::ResourceExhausted,
            "{placement:?}: {refused:?}"
        );
        // Three calls at one instant: the fourth waits one emission interval, 10/3 s,
        // which is 3333.33.. ms, rounded up.
        assert_eq!(
            refused.message(),
            "rate limit 'per_api_key' exceeded (3 per 10s); retry in 3334 ms"
        );
        assert_eq!(meta(&refused, "grpc-retry-pushback-ms"), "3334");
        assert_eq!(meta(&refused, "x-ratelimit-limit"), "3");
        assert_eq!(meta(&refused, "x-ratelimit-remaining"), "0");
        assert_eq!(meta(&refused, "x-ratelimit-reset"), "10");
        assert_eq!(
            meta(&refused, "ratelimit-policy"),
            "\"per_api_key\";q=3;w=10"
        );
        assert_eq!(meta(&refused, "ratelimit"), "\"per_api_key\";r=0;t=10");
        assert!(refused.metadata().get("retry-after").is_none());
        // Another key has its own bucket.
        assert!(say_hello(&mut client, Some("k2")).await.is_ok());
        // Honoring the pushback is never early: a millisecond less is still refused.
        tokio::time::advance(Duration::from_millis(3333)).await;
        let early = say_hello(&mut client, Some("k1")).await.unwrap_err();
        assert_eq!(early.code(), Code::ResourceExhausted);
        assert_eq!(meta(&early, "grpc-retry-pushback-ms"), "1");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            say_hello(&mut client, Some("k1")).await.is_ok(),
            "{placement:?}"
        );
    }
}

/// Admitted calls carry the rate-limit metadata too (in the response headers).
#[tokio::test(start_paused = true)]
async fn admitted_calls_carry_rate_limit_metadata() {
    let mut client = client(serve(limits(per_api_key()), Placement::Service).await).await;
    let mut req = tonic::Request::new(HelloRequest { name: "x".into() });
    req.metadata_mut()
        .insert("x-api-key", "k1".parse().unwrap());
    let res = client.say_hello(req).await.unwrap();
    assert_eq!(res.metadata().get("x-ratelimit-limit").unwrap(), "3");
    assert_eq!(res.metadata().get("x-ratelimit-remaining").unwrap(), "2");
}

#[tokio::test(start_paused = true)]
async fn a_missing_api_key_is_unauthenticated() {
    for placement in PLACEMENTS {
        let mut client = client(serve(limits(per_api_key()), placement).await).await;
        let refused = say_hello(&mut client, None).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{placement:?}");
        assert_eq!(
            refused.message(),
            "missing header (rate limit 'per_api_key')"
        );
        assert!(refused.metadata().get("grpc-retry-pushback-ms").is_none());
    }
}

/// A store that always fails.
#[derive(Clone)]
struct Down;

impl Store for Down {
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type UsageFuture = Ready<Result<Usage, StoreError>>;

    fn check(&self, _: Timestamp, _: &[Check]) -> Self::CheckFuture {
        ready(Err(StoreError::new("connection refused")))
    }

    fn consume_usage(&self, _: Timestamp, _: u64, _: u64, _: UsageLimits) -> Self::UsageFuture {
        ready(Err(StoreError::new("connection refused")))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_set_to_refuse_is_unavailable() {
    let layer = RateLimitLayer::builder()
        .rule(per_api_key())
        .on_store_failure(StoreFailure::Reject)
        .store(Down)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut client = client(serve(layer, Placement::Server).await).await;
    let refused = say_hello(&mut client, Some("k1")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(refused.message(), "rate limiter unavailable");
    assert!(refused.metadata().get("grpc-retry-pushback-ms").is_none());
    assert_eq!(handle.store_errors(), 1);
}

#[tokio::test(start_paused = true)]
async fn two_source_ips_are_limited_independently() {
    for placement in PLACEMENTS {
        let per_ip = Rule::new("per_ip", Quota::new(2, Duration::from_secs(10)).unwrap())
            .key(PeerIp::new())
            .on_missing_key(MissingKey::Reject);
        let addr = serve(limits(per_ip), placement).await;
        let mut clients = [
            GreeterClient::new(channel_from(addr, "127.0.0.1").await),
            GreeterClient::new(channel_from(addr, "127.0.0.2").await),
        ];
        let start = Instant::now();
        let mut codes = Vec::new();
        for i in [0, 0, 0, 1, 1, 1] {
            let result = say_hello(&mut clients[i], None).await;
            codes.push(result.err().map_or(Code::Ok, |s| s.code()));
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "time moved");
        // Without tonic's connection info every call would be one (missing) key: all
        // refused as UNAUTHENTICATED.
        let exhausted = Code::ResourceExhausted;
        assert_eq!(
            codes,
            [Code::Ok, Code::Ok, exhausted, Code::Ok, Code::Ok, exhausted],
            "{placement:?}"
        );
    }
}

/// The message is percent-encoded on the wire and arrives decoded: a `%` in the rule name
/// (unencoded, `%41` would come back as `A`) and a non-ASCII `µ` (a quota period in
/// microseconds; rule names themselves are printable ASCII, checked at build).
#[tokio::test(start_paused = true)]
async fn messages_arrive_decoded_in_status_message() {
    let quick = Rule::new(
        "100%41 \"fair\" use",
        Quota::new(1, Duration::from_nanos(1500)).unwrap(),
    );
    let mut client = client(serve(limits(quick), Placement::Server).await).await;
    assert!(say_hello(&mut client, None).await.is_ok());
    let refused = say_hello(&mut client, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "rate limit '100%41 \"fair\" use' exceeded (1 per 1.5µs); retry in 1 ms"
    );
    let non_ascii = RateLimitLayer::builder()
        .rule(Rule::new("grüße", Quota::per_second(1).unwrap()))
        .build()
        .unwrap_err();
    assert_eq!(non_ascii, BuildError::BadRuleName("grüße".to_owned()));
}

/// tonic dispatches on the path alone: a `GET` to the method's path reaches the service,
/// so it must spend, and be refused by, the method's limit.
#[tokio::test(start_paused = true)]
async fn a_get_to_the_method_path_is_limited_too() {
    let say_hello_rule = Rule::new("say_hello", Quota::new(1, Duration::from_secs(10)).unwrap())
        .route(Route::grpc_method("helloworld.Greeter", "SayHello"));
    let addr = serve(limits(say_hello_rule), Placement::Server).await;
    let channel = channel_from(addr, "127.0.0.1").await;
    let get = || {
        http::Request::get(format!("http://{addr}{SAY_HELLO}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .unwrap()
    };
    // The GET is admitted and reaches the greeter (which fails to read a message)...
    let first = channel.clone().oneshot(get()).await.unwrap();
    assert_eq!(first.status(), http::StatusCode::OK);
    assert!(first.headers().get("x-ratelimit-remaining").is_some());
    // ...and spends the quota: the POST that tonic's client sends is refused.
    let mut client = GreeterClient::new(channel.clone());
    let refused = say_hello(&mut client, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // A second GET is refused as well.
    let second = channel.oneshot(get()).await.unwrap();
    assert_eq!(second.headers()["grpc-status"], "8");
}

/// Any gRPC client sees the semantics, not only tonic: the raw response to a refused
/// call is a trailers-only response (HTTP 200, every field in the headers, an empty body
/// with no trailers), without `Retry-After` or a problem document.
#[tokio::test(start_paused = true)]
async fn the_wire_response_is_trailers_only() {
    let svc = limits(per_api_key()).layer(GreeterServer::greeting());
    let call = || {
        http::Request::post(SAY_HELLO)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-api-key", "k1")
            .body(tonic::body::Body::empty())
            .unwrap()
    };
    for _ in 0..3 {
        let res = svc.clone().oneshot(call()).await.unwrap();
        assert_eq!(res.headers()["x-ratelimit-limit"], "3");
    }
    let res = svc.oneshot(call()).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    let headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let expected = [
        ("content-type", "application/grpc"),
        ("grpc-status", "8"),
        (
            "grpc-message",
            "rate limit 'per_api_key' exceeded (3 per 10s); retry in 3334 ms",
        ),
        ("grpc-retry-pushback-ms", "3334"),
        ("x-ratelimit-limit", "3"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "10"),
        ("ratelimit-policy", "\"per_api_key\";q=3;w=10"),
        ("ratelimit", "\"per_api_key\";r=0;t=10"),
    ]
    .map(|(n, v)| (n.to_owned(), v.to_owned()));
    assert_eq!(headers, expected);
    assert!(http_body::Body::is_end_stream(res.body()));
    let collected = res.into_body().collect().await.unwrap();
    assert!(collected.trailers().is_none());
    assert_eq!(collected.to_bytes(), Bytes::new());
}
