//! The Redis store against a real `redis-server` (spawned on a free loopback port; the test
//! fails if `redis-server` is not installed). Run with `bash scripts/test.sh`.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use redis_server::RedisServer;
use tower::{Layer, ServiceExt};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::{RedisFallback, RedisStore, UsageLimits};
#[allow(unused_imports)]
use tower_throttle::RateLimitHandle as _;
use tower_throttle::{Quota, RateLimitLayer, Rule, Store, StoreFailure};

fn check(key: u64, count: u32, period: Duration) -> Check {
    Check {
        key,
        params: GcraParams::new(&Quota::new(count, period).unwrap(), Duration::ZERO),
        shadow: false,
        rule: 0,
    }
}

fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::builder(server.url())
        .prefix(prefix)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

const TEN_S: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn same_decisions_as_the_memory_store() {
    let server = RedisServer::start();
    let s = store(&server, "same");
    let c = [check(1, 5, TEN_S)];
    for i in 0..5 {
        let d = s.check(&c).await.unwrap();
        assert!(d.admitted, "request {i}");
        assert_eq!(d.headline.remaining, 4 - i);
    }
    let d = s.check(&c).await.unwrap();
    assert!(!d.admitted);
    // One request's worth returns every 2 s; a few ms have passed since the first.
    assert!(d.retry_after <= Duration::from_secs(2) && d.retry_after > Duration::from_millis(1500));
    assert_eq!(
        tower_throttle::headers::retry_after_value(d.retry_after),
        "2"
    );
}

#[tokio::test]
async fn several_limits_in_one_round_trip_all_or_nothing() {
    let server = RedisServer::start();
    let s = store(&server, "atomic");
    let instance = check(1, 100, TEN_S);
    let hourly = check(2, 2, HOUR);
    let per_user = check(3, 10, TEN_S);
    for _ in 0..2 {
        assert!(
            s.check(&[instance, hourly, per_user])
                .await
                .unwrap()
                .admitted
        );
    }
    let before = (s.round_trips(), server.calls("evalsha"));
    let d = s.check(&[instance, hourly, per_user]).await.unwrap();
    assert!(!d.admitted);
    assert_eq!(d.denied_mask, 0b010);
    // A request matching three rules cost exactly one round trip.
    assert_eq!(
        (s.round_trips(), server.calls("evalsha")),
        (before.0 + 1, before.1 + 1)
    );
    // The refused request spent nothing: 98 of the instance's 100 are left.
    let admitted = {
        let mut n = 0;
        for _ in 0..120 {
            n += usize::from(s.check(&[instance]).await.unwrap().admitted);
        }
        n
    };
    assert_eq!(admitted, 98);
}

#[tokio::test]
async fn blocked_key_cache_saves_round_trips() {
    let server = RedisServer::start();
    let s = store(&server, "cache");
    let c = [check(9, 1, HOUR)];
    assert!(s.check(&c).await.unwrap().admitted);
    assert!(!s.check(&c).await.unwrap().admitted);
    let calls = server.calls("evalsha");
    for _ in 0..100 {
        let d = s.check(&c).await.unwrap();
        assert!(!d.admitted);
        assert!(d.retry_after > Duration::from_secs(3500));
    }
    assert_eq!(
        server.calls("evalsha"),
        calls,
        "refusals came from the local cache"
    );
    // Without the cache, every refusal is a round trip.
    let uncached = RedisStore::builder(server.url())
        .prefix("cache")
        .blocked_cache(false)
        .build()
        .unwrap();
    for _ in 0..10 {
        assert!(!uncached.check(&c).await.unwrap().admitted);
    }
    assert!(server.calls("evalsha") >= calls + 10);
}

#[tokio::test]
async fn two_servers_sharing_one_redis_enforce_one_limit() {
    let server = RedisServer::start();
    // Two HTTP servers on two loopback ports, each with its own RateLimitLayer.
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let layer = RateLimitLayer::builder()
            .rule(Rule::new("global", Quota::new(5, HOUR).unwrap()))
            .key_secret(*b"shared-secret-16")
            .store(store(&server, "two"))
            .build()
            .unwrap();
        let app = axum::Router::new().fallback(|| async { "ok" }).layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut admitted = Vec::new();
    for i in 0..12 {
        let uri = format!("http://{}/x", addrs[i % 2]);
        let res = client.get(uri.parse().unwrap()).await.unwrap();
        admitted.push(res.status() == StatusCode::OK);
    }
    // Exactly one limit of 5 across both servers: the first five requests, alternating.
    assert_eq!(admitted.iter().filter(|a| **a).count(), 5);
    assert!(admitted[..5].iter().all(|a| *a));
}

#[tokio::test]
async fn failure_policies_and_recovery() {
    let mut server = RedisServer::start();
    let failing = store(&server, "fail");
    let fallback = RedisStore::builder(server.url())
        .prefix("fail")
        .timeout(Duration::from_millis(200))
        .fallback(RedisFallback::Memory)
        .build()
        .unwrap();
    let c = [check(5, 100, TEN_S)];
    assert!(failing.check(&c).await.unwrap().admitted);
    server.kill();
    for _ in 0..5 {
        let started = Instant::now();
        assert!(failing.check(&c).await.is_err());
        // No request waits on Redis much past the timeout.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        assert!(
            fallback.check(&c).await.unwrap().admitted,
            "decided in memory"
        );
    }
    assert!(failing.errors() >= 5);

    // Through a layer: fail closed with a distinct status and no Retry-After.
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("g", Quota::per_second(10).unwrap()))
        .store(failing.clone())
        .on_store_failure(StoreFailure::Reject(StatusCode::SERVICE_UNAVAILABLE))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    }));
    let res = svc
        .clone()
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get("retry-after").is_none());
    assert_eq!(handle.store_errors(), 1);

    // Restarted, Redis serves again within a second.
    server.restart();
    let started = Instant::now();
    loop {
        if failing.check(&c).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not recovered within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn usage_quotas_live_in_redis() {
    let server = RedisServer::start();
    let limits = UsageLimits {
        lifetime: Some(3),
        window: None,
    };
    let first = store(&server, "usage");
    for used in 1..=3 {
        let u = first.consume_usage(77, 1, limits).await.unwrap();
        assert!(u.admitted);
        assert_eq!(u.lifetime_used, used);
    }
    // A new store (another instance, or this one restarted) sees the same usage.
    let second = store(&server, "usage");
    let u = second.consume_usage(77, 1, limits).await.unwrap();
    assert!(!u.admitted);
    assert_eq!(u.lifetime_used, 3);
    assert_eq!(
        second
            .consume_usage(77, 0, limits)
            .await
            .unwrap()
            .lifetime_used,
        3
    );
}

#[test]
fn bad_configuration_is_an_error() {
    assert!(RedisStore::builder("not a url").build().is_err());
    assert!(RedisStore::builder("redis://127.0.0.1/")
        .prefix("")
        .build()
        .is_err());
    assert!(RedisStore::builder("redis://127.0.0.1/")
        .prefix("a{b}")
        .build()
        .is_err());
}
