//! RateLimitLayer behaviour beyond Clerk's table: shadow rules, blocks, dialects, custom
//! bodies, missing keys, asynchronous and failing stores, shared state, build errors.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_throttle::gcra::{Check, Decision};
use tower_throttle::headers::HeaderDialects;
use tower_throttle::key::{Header, PeerIp, TrustedProxies};
use tower_throttle::rate_limit::{HttpResponder, Responder};
use tower_throttle::store::StoreError;
use tower_throttle::{
    BuildError, MemoryStore, MissingKey, Quota, RateLimitLayer, Rejection, RejectionReason, Route,
    Rule, Store, StoreFailure,
};

type Svc = tower::util::BoxCloneService<Request<Body>, Response<Body>, Infallible>;

fn ok_service() -> Svc {
    tower::util::BoxCloneService::new(service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    }))
}

fn quota(count: u32, secs: u64) -> Quota {
    Quota::new(count, Duration::from_secs(secs)).unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

async fn status<S>(svc: &mut S, req: Request<Body>) -> StatusCode
where
    S: Service<Request<Body>, Error = Infallible>,
    S::Response: Into<Response<tower_throttle::rate_limit::RateLimitBody<Body>>>,
{
    svc.ready()
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
        .into()
        .status()
}

#[tokio::test(start_paused = true)]
async fn state_is_shared_across_clones_and_services() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("global", quota(3, 60)))
        .build()
        .unwrap();
    let mut a = layer.layer(ok_service());
    let mut b = layer.clone().layer(ok_service());
    let mut c = a.clone();
    assert_eq!(status(&mut a, get("/")).await, StatusCode::OK);
    assert_eq!(status(&mut b, get("/")).await, StatusCode::OK);
    assert_eq!(status(&mut c, get("/")).await, StatusCode::OK);
    assert_eq!(
        status(&mut a, get("/")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(layer.handle().rule("global").unwrap().admitted, 3);
}

#[tokio::test(start_paused = true)]
async fn shadow_rules_count_but_never_refuse() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("enforced", quota(10, 10)))
        .rule(Rule::new("trial", quota(2, 10)).shadow(true))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(ok_service());
    for _ in 0..5 {
        let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    // The shadow rule is the most restrictive: its headers are written.
    assert_eq!(res.headers()["ratelimit"], r#""trial";r=0;t=10"#);
    let trial = handle.rule("trial").unwrap();
    assert_eq!(
        (trial.admitted, trial.shadow_limited, trial.limited),
        (2, 4, 0)
    );
    assert_eq!(handle.rule("enforced").unwrap().admitted, 6);
}

#[tokio::test(start_paused = true)]
async fn block_period_keeps_a_key_blocked() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("login", quota(2, 10)).block_for(Duration::from_secs(60)))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
    let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "60");
    // Without the block, 5 s would have refilled a request; hammering does not extend it.
    tokio::time::advance(Duration::from_secs(30)).await;
    let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "30");
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn header_dialects_are_configurable() {
    for (dialects, legacy, ietf) in [
        (HeaderDialects::ALL, true, true),
        (HeaderDialects::LEGACY, true, false),
        (HeaderDialects::IETF, false, true),
        (HeaderDialects::NONE, false, false),
    ] {
        let layer = RateLimitLayer::builder()
            .rule(Rule::new("g", quota(1, 1)))
            .headers(dialects)
            .build()
            .unwrap();
        let mut svc = layer.layer(ok_service());
        let ok = svc.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(ok.headers().contains_key("x-ratelimit-remaining"), legacy);
        assert_eq!(ok.headers().contains_key("ratelimit"), ietf);
        let limited = svc.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(limited.headers()["retry-after"], "1");
        assert_eq!(limited.headers().contains_key("x-ratelimit-limit"), legacy);
        assert_eq!(limited.headers().contains_key("ratelimit-policy"), ietf);
    }
}

#[tokio::test(start_paused = true)]
async fn rejection_body_is_replaceable() {
    // The default responder's status and headers, another body.
    let http = HttpResponder::new();
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("g", quota(1, 10)))
        .responder(move |r: &Rejection<'_>| {
            assert_eq!(r.reason(), RejectionReason::RateLimited);
            let text = format!(
                "slow down: {} ({:?})",
                r.rule().unwrap_or("-"),
                r.retry_after()
            );
            let mut res = http.respond(r);
            *res.body_mut() = bytes::Bytes::from(text);
            res.headers_mut()
                .insert("content-type", "text/plain".parse().unwrap());
            res
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
    let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.headers()["retry-after"], "10");
    let body = axum::body::to_bytes(Body::new(res.into_body()), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"slow down: g (Some(10s))");
}

/// A responder that answers the gRPC way (HTTP 200, the status in the headers of a
/// trailers-only response) and refusals without a rule HTTP's way.
fn grpc_or_http(r: &Rejection<'_>) -> Response<bytes::Bytes> {
    let grpc = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/grpc");
    if !grpc {
        return HttpResponder::new().respond(r);
    }
    let mut res = Response::new(bytes::Bytes::new());
    let headers = res.headers_mut();
    headers.insert("content-type", "application/grpc".parse().unwrap());
    let code = match r.reason() {
        RejectionReason::RateLimited => "8",
        RejectionReason::MissingKey(_) => "16",
        _ => "14",
    };
    headers.insert("grpc-status", code.parse().unwrap());
    if let Some(wait) = r.retry_after() {
        let ms = wait.as_millis().to_string();
        headers.insert("grpc-retry-pushback-ms", ms.parse().unwrap());
    }
    r.write_rate_limit_headers(headers);
    res
}

fn grpc(path: &str, tenant: Option<&str>) -> Request<Body> {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc");
    let req = match tenant {
        Some(t) => req.header("x-tenant", t),
        None => req,
    };
    req.body(Body::empty()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_responder_builds_the_whole_response() {
    let layer = RateLimitLayer::builder()
        .rule(
            Rule::new(
                "tenant",
                Quota::new(1, Duration::from_millis(2500)).unwrap(),
            )
            .key(Header::new("x-tenant".parse().unwrap()))
            .on_missing_key(MissingKey::Reject),
        )
        .headers(HeaderDialects::LEGACY)
        .responder(grpc_or_http)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    let path = "/helloworld.Greeter/SayHello";
    assert_eq!(
        status(&mut svc, grpc(path, Some("a"))).await,
        StatusCode::OK
    );
    // Rate limited: the status is the responder's, not 429; no Retry-After unless it
    // writes one; the rate-limit headers it asked for; an empty body that ends at once.
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(grpc(path, Some("a")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "8");
    assert_eq!(res.headers()["grpc-retry-pushback-ms"], "2500");
    assert_eq!(res.headers()["x-ratelimit-limit"], "1");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    assert!(res.headers().get("retry-after").is_none());
    assert!(res.headers().get("ratelimit").is_none());
    assert!(http_body::Body::is_end_stream(res.body()));
    // A missing key, as the responder maps it.
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(grpc(path, None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert!(res.headers().get("x-ratelimit-limit").is_none());
    // The same layer answers HTTP requests with the default responder.
    let http = Request::builder()
        .uri("/")
        .header("x-tenant", "a")
        .body(Body::empty())
        .unwrap();
    let res = svc.ready().await.unwrap().call(http).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "3");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// What a responder read from one [`Rejection`].
#[derive(Debug, PartialEq)]
struct Seen {
    reason: RejectionReason,
    rule: Option<String>,
    count: Option<u32>,
    retry_after: Option<Duration>,
    limit: Option<(String, u64, Duration)>,
    request: String,
}

fn seen(r: &Rejection<'_>) -> Seen {
    Seen {
        reason: r.reason(),
        rule: r.rule().map(str::to_owned),
        count: r.quota().map(|q| q.count()),
        retry_after: r.retry_after(),
        limit: r
            .limit()
            .map(|l| (l.policy.to_owned(), l.remaining, l.reset_after)),
        request: format!("{} {}", r.method(), r.uri()),
    }
}

#[tokio::test(start_paused = true)]
async fn rejections_say_why_and_for_which_request() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = std::sync::Arc::clone(&log);
    let layer = RateLimitLayer::builder()
        .rule(
            Rule::new("tenant", quota(1, 10))
                .key(Header::new("x-tenant".parse().unwrap()))
                .on_missing_key(MissingKey::Reject),
        )
        .responder(move |r: &Rejection<'_>| {
            writer.lock().unwrap().push(seen(r));
            HttpResponder::new().respond(r)
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    let mut statuses = Vec::new();
    for req in [
        grpc("/a", Some("t")),
        grpc("/b", Some("t")),
        grpc("/c", None),
        get("/d/../e"),
    ] {
        statuses.push(status(&mut svc, req).await.as_u16());
    }
    assert_eq!(statuses, [200, 429, 401, 400]);
    let ten = Duration::from_secs(10);
    let tenant = || Some("tenant".to_owned());
    let expected = [
        Seen {
            reason: RejectionReason::RateLimited,
            rule: tenant(),
            count: Some(1),
            retry_after: Some(ten),
            limit: Some(("tenant".to_owned(), 0, ten)),
            request: "POST /b".to_owned(),
        },
        Seen {
            reason: RejectionReason::MissingKey("header"),
            rule: tenant(),
            count: Some(1),
            retry_after: None,
            limit: None,
            request: "POST /c".to_owned(),
        },
        Seen {
            reason: RejectionReason::BadPath("a dot segment ('.' or '..') in the path"),
            rule: None,
            count: None,
            retry_after: None,
            limit: None,
            request: "GET /d/../e".to_owned(),
        },
    ];
    assert_eq!(*log.lock().unwrap(), expected);
}

/// Status, headers in order and body of each response, for exact comparison.
async fn transcript(
    svc: &mut impl tower::Service<
        Request<Body>,
        Response = Response<tower_throttle::rate_limit::RateLimitBody<Body>>,
        Error = Infallible,
    >,
    reqs: Vec<Request<Body>>,
) -> String {
    let mut out = String::new();
    for req in reqs {
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        out.push_str(&format!("{}\n", res.status()));
        for (name, value) in res.headers() {
            out.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
        }
        let body = axum::body::to_bytes(Body::new(res.into_body()), 4096)
            .await
            .unwrap();
        out.push_str(&format!("{}\n", String::from_utf8_lossy(&body)));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn default_responses_are_exact() {
    let tenant = || {
        Rule::new(
            "tenant",
            Quota::new(1, Duration::from_millis(1500)).unwrap(),
        )
        .key(Header::new("x-tenant".parse().unwrap()))
        .on_missing_key(MissingKey::Reject)
    };
    let with_tenant = || {
        Request::builder()
            .uri("/")
            .header("x-tenant", "a")
            .body(Body::empty())
            .unwrap()
    };
    let layer = RateLimitLayer::builder().rule(tenant()).build().unwrap();
    let mut svc = layer.layer(ok_service());
    let requests = vec![with_tenant(), with_tenant(), get("/"), get("/x/../y")];
    let mut out = transcript(&mut svc, requests).await;
    let failing = RateLimitLayer::builder()
        .rule(tenant())
        .on_store_failure(StoreFailure::Reject)
        .store(SlowStore {
            memory: MemoryStore::new(),
            fail: true,
        })
        .build()
        .unwrap();
    let mut svc = failing.layer(ok_service());
    out.push_str(&transcript(&mut svc, vec![with_tenant()]).await);
    let expected = r#"200 OK
x-ratelimit-limit: 1
x-ratelimit-remaining: 0
x-ratelimit-reset: 2
ratelimit-policy: "tenant";q=1;w=2
ratelimit: "tenant";r=0;t=2
ok
429 Too Many Requests
content-type: application/problem+json
x-ratelimit-limit: 1
x-ratelimit-remaining: 0
x-ratelimit-reset: 2
ratelimit-policy: "tenant";q=1;w=2
ratelimit: "tenant";r=0;t=2
retry-after: 2
{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"rate limit 'tenant' exceeded (1 per 1.5s)","rule":"tenant","retry_after":2}
401 Unauthorized
content-type: application/problem+json
{"type":"about:blank","title":"Unauthorized","status":401,"detail":"missing header","rule":"tenant"}
400 Bad Request
content-type: application/problem+json
{"type":"about:blank","title":"Bad Request","status":400,"detail":"unreadable path: a dot segment ('.' or '..') in the path"}
503 Service Unavailable
content-type: application/problem+json
{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"rate limiter unavailable"}
"#;
    assert_eq!(out, expected);
}

#[tokio::test(start_paused = true)]
async fn missing_key_policies() {
    let by_tenant = |policy| {
        Rule::new("tenant", quota(1, 10))
            .key(Header::new("x-tenant".parse().unwrap()))
            .on_missing_key(policy)
    };
    // Shared (default): keyless requests share one bucket, so omitting the key never escapes.
    let layer = RateLimitLayer::builder()
        .rule(by_tenant(MissingKey::default()))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
    assert_eq!(
        status(&mut svc, get("/")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let with_key = Request::builder()
        .uri("/")
        .header("x-tenant", "a")
        .body(Body::empty())
        .unwrap();
    assert_eq!(status(&mut svc, with_key).await, StatusCode::OK);
    assert_eq!(layer.handle().rule("tenant").unwrap().missing_key, 2);
    // Skip: the rule does not apply.
    let mut svc = RateLimitLayer::builder()
        .rule(by_tenant(MissingKey::Skip))
        .build()
        .unwrap()
        .layer(ok_service());
    for _ in 0..3 {
        assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
    }
    // Reject: 401 by default, never a 500.
    let mut svc = RateLimitLayer::builder()
        .rule(by_tenant(MissingKey::Reject))
        .build()
        .unwrap()
        .layer(ok_service());
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::UNAUTHORIZED);
    // ... or the status the HTTP responder is configured with.
    let mut svc = RateLimitLayer::builder()
        .rule(by_tenant(MissingKey::Reject))
        .responder(HttpResponder::new().missing_key_status(StatusCode::BAD_REQUEST))
        .build()
        .unwrap()
        .layer(ok_service());
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn peer_ip_without_connect_info_is_not_a_500() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("ip", quota(1, 10)).key(PeerIp::new()))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
    assert_eq!(
        status(&mut svc, get("/")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn spoofed_forwarded_for_from_untrusted_peer_is_ignored() {
    let ip_rule =
        |proxies| Rule::new("ip", quota(2, 10)).key(PeerIp::new().trusted_proxies(proxies));
    let req = |peer: &str, xff: &str| {
        let mut r = Request::builder()
            .uri("/")
            .header("x-forwarded-for", xff)
            .body(Body::empty())
            .unwrap();
        r.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        r
    };
    let proxies = TrustedProxies::from_cidrs(["10.0.0.0/8"]).unwrap();
    let mut svc = RateLimitLayer::builder()
        .rule(ip_rule(proxies))
        .build()
        .unwrap()
        .layer(ok_service());
    // An attacker connecting directly rotates X-Forwarded-For: all one bucket.
    let mut codes = Vec::new();
    for i in 0..4 {
        codes.push(status(&mut svc, req("203.0.113.9:1000", &format!("192.0.2.{i}"))).await);
    }
    assert_eq!(codes.iter().filter(|c| **c == StatusCode::OK).count(), 2);
    // Behind the trusted proxy, each forwarded client has its own bucket; a spoofed
    // leftmost entry is not taken.
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            let xff = format!("6.6.6.6, {client}");
            assert_eq!(
                status(&mut svc, req("10.1.2.3:443", &xff)).await,
                StatusCode::OK
            );
        }
        let xff = format!("7.7.7.7, {client}");
        assert_eq!(
            status(&mut svc, req("10.1.2.3:443", &xff)).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

#[test]
fn build_errors_are_typed() {
    let r = |name: &str| Rule::new(name, quota(1, 1));
    assert_eq!(
        RateLimitLayer::builder().build().unwrap_err(),
        BuildError::NoRules
    );
    assert_eq!(
        RateLimitLayer::builder()
            .rule(r("a"))
            .rule(r("a"))
            .build()
            .unwrap_err(),
        BuildError::DuplicateRule("a".into())
    );
    assert!(matches!(
        RateLimitLayer::builder().rule(r("bad\"\n")).build(),
        Err(BuildError::BadRuleName(_))
    ));
    assert!(matches!(
        RateLimitLayer::builder()
            .rule(r("a").route(Route::get("/v1/{oops")))
            .build(),
        Err(BuildError::BadTemplate { .. })
    ));
    assert!(matches!(
        RateLimitLayer::builder()
            .rule(
                r("a")
                    .route(Route::get("/{x}"))
                    .except(Route::get("no-slash"))
            )
            .build(),
        Err(BuildError::BadTemplate { .. })
    ));
    // A path-parameter key must be captured by every route of the rule.
    let per_user = r("u")
        .route(Route::patch("/v1/users/{user_id}"))
        .route(Route::patch("/v1/me"))
        .key(tower_throttle::key::PathParam::new("user_id"));
    assert_eq!(
        RateLimitLayer::builder()
            .rule(per_user)
            .build()
            .unwrap_err(),
        BuildError::UnknownPathParam {
            rule: "u".into(),
            param: "user_id".into()
        }
    );
    let too_many = (0..65).fold(RateLimitLayer::builder(), |b, i| {
        b.rule(r(&format!("r{i}")))
    });
    assert_eq!(too_many.build().unwrap_err(), BuildError::TooManyRules(65));
}

/// A store that answers asynchronously (pending once), or fails.
#[derive(Clone)]
struct SlowStore {
    memory: MemoryStore,
    fail: bool,
}

struct SlowFuture {
    answer: Option<Result<Decision, StoreError>>,
    polled: bool,
}

impl Future for SlowFuture {
    type Output = Result<Decision, StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.polled {
            self.polled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.answer.take().expect("polled after completion"))
    }
}

impl Store for SlowStore {
    type CheckFuture = SlowFuture;
    type UsageFuture = <MemoryStore as Store>::UsageFuture;

    fn consume_usage(
        &self,
        now: tower_throttle::clock::Timestamp,
        key: u64,
        amount: u64,
        limits: tower_throttle::store::UsageLimits,
    ) -> Self::UsageFuture {
        self.memory.consume_usage(now, key, amount, limits)
    }

    fn check(&self, now: tower_throttle::clock::Timestamp, checks: &[Check]) -> SlowFuture {
        let answer = if self.fail {
            Err(StoreError::new("connection refused"))
        } else {
            Ok(self.memory.check_at(now, checks))
        };
        SlowFuture {
            answer: Some(answer),
            polled: false,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn asynchronous_store_and_failure_policies() {
    let slow = SlowStore {
        memory: MemoryStore::new(),
        fail: false,
    };
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("g", quota(2, 10)))
        .store(slow)
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    assert_eq!(status(&mut svc, get("/")).await, StatusCode::OK);
    let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(
        status(&mut svc, get("/")).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    for (policy, expected) in [
        (StoreFailure::Admit, StatusCode::OK),
        (StoreFailure::Reject, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let layer = RateLimitLayer::builder()
            .rule(Rule::new("g", quota(2, 10)))
            .on_store_failure(policy)
            .store(SlowStore {
                memory: MemoryStore::new(),
                fail: true,
            })
            .build()
            .unwrap();
        let mut svc = layer.layer(ok_service());
        let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
        assert_eq!(res.status(), expected);
        assert!(res.headers().get("retry-after").is_none());
        assert_eq!(layer.handle().store_errors(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn unmatched_routes_pass_untouched() {
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("r", quota(1, 10)).route(Route::post("/limited")))
        .build()
        .unwrap();
    let mut svc = layer.layer(ok_service());
    for _ in 0..5 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(get("/limited"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn unwrapped_body_keeps_the_inner_body_type() {
    use http_body_util::{BodyExt, Full};

    let layer = RateLimitLayer::builder()
        .rule(Rule::new("global", quota(1, 60)))
        .build()
        .unwrap()
        .unwrapped_body();
    // axum's Body in, axum's Body out: the service boxes into the same type as its inner.
    let mut svc: Svc = Svc::new(layer.layer(ok_service()));
    let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit"], r#""global";r=0;t=60"#);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    let res = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "60");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["rule"], "global");

    // Any other `From<Bytes>` body, here a plain hyper one.
    let inner = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(b"ok"))))
    });
    let mut svc = layer.layer(inner);
    let res: Response<Full<bytes::Bytes>> =
        svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!res
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
}
