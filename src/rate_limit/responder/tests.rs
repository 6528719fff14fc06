//! The exact responses of `GrpcResponder` and `AutoResponder`, most through a layer.

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_layer::Layer;

use super::*;
use crate::headers::{grpc_message, GrpcCode};
use crate::key::{Header, PeerIp};
use crate::{MissingKey, Quota, RateLimitLayer, Rule, Store};

fn tenant(name: &str) -> Rule {
    Rule::new(name, Quota::new(1, Duration::from_millis(1500)).unwrap())
        .key(Header::new("x-tenant".parse().unwrap()))
        .on_missing_key(MissingKey::Reject)
}

fn call(content_type: Option<&str>, path: &str, tenant: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::post(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = tenant {
        req = req.header("x-tenant", t);
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

/// Status, headers in order and body of each response to `reqs`, for exact comparison.
async fn transcript<St: Store + Clone>(
    layer: &RateLimitLayer<St>,
    reqs: Vec<Request<Full<Bytes>>>,
) -> String {
    let svc = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| {
        ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"ok"),
        ))))
    }));
    let mut out = String::new();
    for req in reqs {
        out.push_str(&written(svc.clone().oneshot(req).await.unwrap()).await);
    }
    out
}

/// Status, headers in order and body of `res`; `(end)` when the body ends at once.
async fn written<B>(res: Response<B>) -> String
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut out = format!("{}\n", res.status());
    for (name, value) in res.headers() {
        out.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
    }
    let ended = http_body::Body::is_end_stream(res.body());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let end = if ended { "(end) " } else { "" };
    out.push_str(&format!("{end}{}\n", String::from_utf8_lossy(&body)));
    out
}

const GRPC: Option<&str> = Some("application/grpc");

#[tokio::test(start_paused = true)]
async fn grpc_refusals_are_exact_trailers_only_responses() {
    let layer = RateLimitLayer::builder()
        .rule(tenant("tenant"))
        .build()
        .unwrap();
    let path = "/helloworld.Greeter/SayHello";
    let requests = vec![
        call(GRPC, path, Some("a")),
        call(Some("application/grpc+proto"), path, Some("a")),
        call(GRPC, path, None),
        call(GRPC, "/helloworld.Greeter/../x", Some("a")),
    ];
    let mut out = transcript(&layer, requests).await;
    // A store failure (end to end in tests/tonic_server.rs).
    let req = call(GRPC, path, Some("a"));
    let failed = Rejection::new(
        RejectionReason::StoreUnavailable,
        None,
        HeaderDialects::default(),
        &req,
    );
    out.push_str(&written(GrpcResponder::new().respond(&failed).map(Full::new)).await);
    let expected = "200 OK
x-ratelimit-limit: 1
x-ratelimit-remaining: 0
x-ratelimit-reset: 2
ratelimit-policy: \"tenant\";q=1;w=2
ratelimit: \"tenant\";r=0;t=2
ok
200 OK
content-type: application/grpc+proto
grpc-status: 8
grpc-message: rate limit 'tenant' exceeded (1 per 1.5s); retry in 1500 ms
grpc-retry-pushback-ms: 1500
x-ratelimit-limit: 1
x-ratelimit-remaining: 0
x-ratelimit-reset: 2
ratelimit-policy: \"tenant\";q=1;w=2
ratelimit: \"tenant\";r=0;t=2
(end) 
200 OK
content-type: application/grpc
grpc-status: 16
grpc-message: missing header (rate limit 'tenant')
(end) 
200 OK
content-type: application/grpc
grpc-status: 3
grpc-message: unreadable path: a dot segment ('.' or '..') in the path
(end) 
200 OK
content-type: application/grpc
grpc-status: 14
grpc-message: rate limiter unavailable
(end) 
";
    assert_eq!(out, expected);
}

#[tokio::test(start_paused = true)]
async fn the_pushback_is_the_wait_rounded_up_to_the_millisecond() {
    // 3 per 10 s: after three calls at one instant the fourth waits 10/3 s, 3333.33.. ms.
    let layer = RateLimitLayer::builder()
        .rule(Rule::new(
            "r",
            Quota::new(3, Duration::from_secs(10)).unwrap(),
        ))
        .build()
        .unwrap();
    let reqs = (0..4).map(|_| call(GRPC, "/p.S/M", None)).collect();
    let out = transcript(&layer, reqs).await;
    assert!(out.contains("grpc-retry-pushback-ms: 3334\n"), "{out}");
    assert!(out.contains("grpc-message: rate limit 'r' exceeded (3 per 10s); retry in 3334 ms\n"));
}

#[tokio::test(start_paused = true)]
async fn codes_and_content_types_are_configurable() {
    let grpc = GrpcResponder::new()
        .missing_key_code(GrpcCode::PermissionDenied)
        .store_failure_code(GrpcCode::Internal);
    let reasons = [
        RejectionReason::RateLimited,
        RejectionReason::MissingKey("x"),
        RejectionReason::StoreUnavailable,
        RejectionReason::BadPath("x"),
    ];
    assert_eq!(
        reasons.map(|r| GrpcResponder::new().code(r)),
        [
            GrpcCode::ResourceExhausted,
            GrpcCode::Unauthenticated,
            GrpcCode::Unavailable,
            GrpcCode::InvalidArgument
        ]
    );
    assert_eq!(
        reasons.map(|r| grpc.code(r)),
        [
            GrpcCode::ResourceExhausted,
            GrpcCode::PermissionDenied,
            GrpcCode::Internal,
            GrpcCode::InvalidArgument
        ]
    );

    let layer = RateLimitLayer::builder()
        .rule(tenant("tenant"))
        .responder(
            AutoResponder::new()
                .grpc(grpc)
                .http(HttpResponder::new().missing_key_status(StatusCode::FORBIDDEN)),
        )
        .build()
        .unwrap();
    let out = transcript(
        &layer,
        vec![
            call(Some("application/grpc-web+proto"), "/p.S/M", None),
            call(Some("application/json"), "/p.S/M", None),
        ],
    )
    .await;
    assert_eq!(
        out,
        "200 OK
content-type: application/grpc-web+proto
grpc-status: 7
grpc-message: missing header (rate limit 'tenant')
(end) 
403 Forbidden
content-type: application/problem+json
{\"type\":\"about:blank\",\"title\":\"Forbidden\",\"status\":403,\"detail\":\"missing header\",\"rule\":\"tenant\"}
"
    );
}

/// gRPC-only answers every request the gRPC way, with gRPC's own content type when the
/// request's is not a gRPC one; HTTP-only answers gRPC calls with problem documents.
#[tokio::test(start_paused = true)]
async fn one_protocol_only_answers_every_request_its_way() {
    let grpc_only = RateLimitLayer::builder()
        .rule(tenant("tenant"))
        .responder(GrpcResponder::new())
        .build()
        .unwrap();
    let out = transcript(&grpc_only, vec![call(Some("text/html"), "/", None)]).await;
    assert_eq!(
        out,
        "200 OK
content-type: application/grpc
grpc-status: 16
grpc-message: missing header (rate limit 'tenant')
(end) 
"
    );
    let http_only = RateLimitLayer::builder()
        .rule(tenant("tenant"))
        .responder(HttpResponder::new())
        .build()
        .unwrap();
    let out = transcript(&http_only, vec![call(GRPC, "/p.S/M", None)]).await;
    assert!(
        out.starts_with("401 Unauthorized\ncontent-type: application/problem+json\n"),
        "{out}"
    );
}

/// Rule names may hold `%` and quotes; the message is percent-encoded so a client decodes
/// it back exactly (unencoded, `%41` would come back as `A`).
#[tokio::test(start_paused = true)]
async fn messages_are_percent_encoded() {
    let name = "100%41 \"fair\" use";
    let layer = RateLimitLayer::builder()
        .rule(Rule::new(name, Quota::per_hour(1).unwrap()))
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| {
        ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
    }));
    svc.clone()
        .oneshot(call(GRPC, "/p.S/M", None))
        .await
        .unwrap();
    let res = svc.oneshot(call(GRPC, "/p.S/M", None)).await.unwrap();
    assert_eq!(
        res.headers()["grpc-message"],
        "rate limit '100%2541 \"fair\" use' exceeded (1 per 3600s); retry in 3600000 ms"
    );
    assert_eq!(
        grpc_message(res.headers()).unwrap(),
        format!("rate limit '{name}' exceeded (1 per 3600s); retry in 3600000 ms")
    );
}

/// A missing peer address says which sources were read; with the `tonic` feature tonic's
/// `TcpConnectInfo` is one of them.
#[tokio::test(start_paused = true)]
async fn a_missing_peer_address_names_the_sources() {
    let layer = RateLimitLayer::builder()
        .rule(
            Rule::new("per_ip", Quota::per_hour(1).unwrap())
                .key(PeerIp::new())
                .on_missing_key(MissingKey::Reject),
        )
        .build()
        .unwrap();
    let out = transcript(&layer, vec![call(GRPC, "/p.S/M", None)]).await;
    let message = out
        .lines()
        .find_map(|l| l.strip_prefix("grpc-message: "))
        .unwrap();
    assert!(
        message.starts_with("missing peer address (serve with "),
        "{message}"
    );
    assert!(message.ends_with(" (rate limit 'per_ip')"), "{message}");
    assert_eq!(
        message.contains("tonic"),
        cfg!(feature = "tonic"),
        "{message}"
    );
}
