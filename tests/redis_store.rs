//! The Redis store against a real `redis-server` (spawned on a free loopback port; the test
//! fails if `redis-server` is not installed). Run with `bash scripts/test.sh`.
#![cfg(feature = "redis")]

#[path = "redis_store/capture.rs"]
mod capture;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use axum::body::Body;
use capture::transitions;
use http::{Request, StatusCode};
use redis_server::RedisServer;
use tower::{Layer, ServiceExt};
use tower_throttle::clock::{Clock, Timestamp, TokioClock};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::{RedisFallback, RedisStore, UsageLimits};
#[allow(unused_imports)]
use tower_throttle::RateLimitHandle as _;
use tower_throttle::{BuildError, Quota, RateLimitLayer, Rule, Store, StoreFailure};
/// The arrival time a layer would pass (Redis decides on its own clock; the in-memory
/// fallback uses this).
fn now() -> Timestamp {
    TokioClock::new().now()
}

fn check(key: u64, count: u32, period: Duration) -> Check {
    Check::new(
        key,
        GcraParams::new(&Quota::new(count, period).unwrap(), Duration::ZERO),
    )
}

fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::builder(server.url())
        .prefix(prefix)
        .timeout(Duration::from_millis(200))
        // Back at the first success (the recovery window is tested in tests/redis_ops.rs).
        .recovery_window(Duration::ZERO)
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
        let d = s.check(now(), &c).await.unwrap();
        assert!(d.admitted, "request {i}");
        assert_eq!(d.headline.remaining, 4 - i);
    }
    let d = s.check(now(), &c).await.unwrap();
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
            s.check(now(), &[instance, hourly, per_user])
                .await
                .unwrap()
                .admitted
        );
    }
    let before = (s.round_trips(), server.calls("evalsha"));
    let d = s.check(now(), &[instance, hourly, per_user]).await.unwrap();
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
            n += usize::from(s.check(now(), &[instance]).await.unwrap().admitted);
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
    assert!(s.check(now(), &c).await.unwrap().admitted);
    assert!(!s.check(now(), &c).await.unwrap().admitted);
    let calls = server.calls("evalsha");
    for _ in 0..100 {
        let d = s.check(now(), &c).await.unwrap();
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
        assert!(!uncached.check(now(), &c).await.unwrap().admitted);
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
    let failing = RedisStore::builder(server.url())
        .prefix("fail")
        .timeout(Duration::from_millis(200))
        .fallback(RedisFallback::Error)
        .build()
        .unwrap();
    let fallback = store(&server, "fail"); // RedisFallback::Memory, the default
    let c = [check(5, 100, TEN_S)];
    assert!(failing.check(now(), &c).await.unwrap().admitted);
    server.kill();
    for _ in 0..5 {
        let started = Instant::now();
        assert!(failing.check(now(), &c).await.is_err());
        // No request waits on Redis much past the timeout.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        assert!(
            fallback.check(now(), &c).await.unwrap().admitted,
            "decided in memory"
        );
    }
    // The first failure marked Redis lost; every request was decided without it.
    assert!(failing.errors() >= 1);
    assert_eq!(failing.health().decided_without_redis, 5);

    // Through a layer: fail closed with a distinct status and no Retry-After.
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("g", Quota::per_second(10).unwrap()))
        .key_secret(*b"failure-policies")
        .store(failing.clone())
        .on_store_failure(StoreFailure::Reject)
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
        if failing.check(now(), &c).await.is_ok() {
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
        let u = first.consume_usage(now(), 77, 1, limits).await.unwrap();
        assert!(u.admitted);
        assert_eq!(u.lifetime_used, used);
    }
    // A new store (another instance, or this one restarted) sees the same usage.
    let second = store(&server, "usage");
    let u = second.consume_usage(now(), 77, 1, limits).await.unwrap();
    assert!(!u.admitted);
    assert_eq!(u.lifetime_used, 3);
    assert_eq!(
        second
            .consume_usage(now(), 77, 0, limits)
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
    assert!(RedisStore::builder("redis://127.0.0.1/")
        .timeout(Duration::ZERO)
        .build()
        .is_err());
    // Outside a Tokio runtime: an error, not a panic in the connection manager.
    let error = RedisStore::builder("redis://127.0.0.1/")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
}

// ---- Redis under faults; shared stores share keys. ----

async fn admitted(s: &RedisStore, c: &[Check], n: usize) -> usize {
    let mut admitted = 0;
    for i in 0..n {
        let d = s
            .check(now(), c)
            .await
            .unwrap_or_else(|e| panic!("check {i}: {e}"));
        admitted += usize::from(d.admitted);
    }
    admitted
}

/// Waits until `s` has read Redis' eviction settings (in the background, after its first
/// success), so that read cannot be the call that meets a connection a test kills.
async fn policy_read(s: &RedisStore) {
    let started = std::time::Instant::now();
    while s.memory_policy() == tower_throttle::store::RedisMemoryPolicy::NotChecked {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not read in 3 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_killed_pooled_connection_is_retried_on_a_fresh_one() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, "stale"), store(&server, "stale"));
    let c = [check(11, 5, HOUR)];
    assert!(a.check(now(), &c).await.unwrap().admitted);
    assert!(b.check(now(), &c).await.unwrap().admitted);
    policy_read(&a).await;
    policy_read(&b).await;
    // Both pooled connections die while idle.
    let killed = server.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert_eq!(killed, ":2\r\n");
    // Four more across both instances: all counted in Redis, so exactly 5 of 6 admitted.
    let after = admitted(&a, &c, 1).await + admitted(&b, &c, 1).await + admitted(&a, &c, 2).await;
    assert_eq!(2 + after, 5);
    assert_eq!((a.errors(), b.errors()), (0, 0));
    assert_eq!((a.health().reconnects, b.health().reconnects), (1, 1));
}

#[tokio::test]
async fn a_restarted_redis_is_retried_on_a_fresh_connection() {
    let mut server = RedisServer::start();
    let (a, b) = (store(&server, "restart"), store(&server, "restart"));
    let c = [check(12, 5, HOUR)];
    assert!(a.check(now(), &c).await.unwrap().admitted);
    assert!(b.check(now(), &c).await.unwrap().admitted);
    policy_read(&a).await;
    policy_read(&b).await;
    // Redis restarts (empty) on the same port while both are idle: the first call of each
    // must reach the new server (and reload the script), not fail fast.
    server.restart();
    assert_eq!(admitted(&a, &c, 1).await + admitted(&b, &c, 1).await, 2);
    assert_eq!(admitted(&a, &c, 2).await + admitted(&b, &c, 2).await, 3);
    assert_eq!((a.errors(), b.errors()), (0, 0));
    assert_eq!((a.health().reconnects, b.health().reconnects), (1, 1));
}

#[tokio::test]
async fn redis_down_falls_back_to_per_instance_limits_by_default() {
    transitions("down", "lost"); // installs the capture
    let mut server = RedisServer::start();
    let s = store(&server, "down");
    let c = [check(13, 5, HOUR)];
    assert_eq!(admitted(&s, &c, 2).await, 2);
    server.kill();
    // Decided by the in-memory fallback: exactly its own quota of 5 (the 2 counted in Redis
    // are not known to it: limits hold per instance while Redis is down).
    assert_eq!(admitted(&s, &c, 8).await, 5);
    assert_eq!(
        transitions("down", "lost"),
        1,
        "logged once, not per request"
    );
    assert_eq!(transitions("down", "back"), 0);
    let down = s.health();
    assert!(!down.available);
    assert_eq!((down.outages, down.recoveries), (1, 0));
    assert_eq!(down.decided_without_redis, 8);
    server.restart();
    let started = Instant::now();
    let mut checks_until_back = 0;
    while !s.health().available {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not back in 3 s"
        );
        s.check(now(), &c).await.unwrap();
        checks_until_back += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (transitions("down", "lost"), transitions("down", "back")),
        (1, 1)
    );
    let back = s.health();
    assert_eq!((back.outages, back.recoveries), (1, 1));
    // Every request but the probe that found Redis back was decided without it.
    assert_eq!(back.decided_without_redis, 8 + checks_until_back - 1);
    // Back on Redis (restarted empty): the key starts over there.
    assert!(s.check(now(), &c).await.unwrap().admitted);
}

#[tokio::test]
async fn slow_redis_falls_back_to_per_instance_limits_by_default() {
    transitions("slow", "lost"); // installs the capture
    let server = RedisServer::start();
    let s = store(&server, "slow");
    let c = [check(14, 5, HOUR)];
    assert_eq!(admitted(&s, &c, 1).await, 1);
    // Redis stops answering for 2.5 s (like DEBUG SLEEP, which Redis 7 disables by
    // default); each call passes the 200 ms timeout.
    assert_eq!(
        server.command(&["CLIENT", "PAUSE", "2500", "ALL"]),
        "+OK\r\n"
    );
    assert_eq!(admitted(&s, &c, 8).await, 5);
    assert_eq!(transitions("slow", "lost"), 1);
    assert_eq!(s.health().decided_without_redis, 8);
    // Once the pause ends, a probe finds Redis back.
    let started = Instant::now();
    while !s.health().available {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not back in 5 s"
        );
        s.check(now(), &c).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (transitions("slow", "lost"), transitions("slow", "back")),
        (1, 1)
    );
    assert_eq!((s.health().outages, s.health().recoveries), (1, 1));
}

#[tokio::test]
async fn a_shared_store_without_a_key_secret_is_a_build_error() {
    let redis = RedisStore::builder("redis://127.0.0.1:1/").build().unwrap();
    assert!(redis.is_shared() && std::sync::Arc::new(redis.clone()).is_shared());
    let rule = || Rule::new("g", Quota::per_second(10).unwrap());
    let error = RateLimitLayer::builder()
        .rule(rule())
        .store(redis.clone())
        .build()
        .expect_err("a layer on Redis without a key secret");
    assert_eq!(error, BuildError::SharedStoreWithoutKeySecret);
    assert!(error.to_string().contains("key_secret"), "{error}");
    // Behind an Arc too.
    let behind_arc = RateLimitLayer::builder()
        .rule(rule())
        .store(std::sync::Arc::new(redis.clone()))
        .build();
    assert_eq!(
        behind_arc.err(),
        Some(BuildError::SharedStoreWithoutKeySecret)
    );
    // With a secret, it builds; the in-memory store needs none.
    assert!(RateLimitLayer::builder()
        .rule(rule())
        .key_secret(*b"0123456789abcdef")
        .store(redis)
        .build()
        .is_ok());
    assert!(RateLimitLayer::builder().rule(rule()).build().is_ok());
}

#[tokio::test]
async fn a_full_blocked_cache_stays_o1_and_redis_still_decides_other_keys() {
    let server = RedisServer::start();
    let s = RedisStore::builder(server.url())
        .prefix("full")
        .timeout(Duration::from_millis(500))
        .blocked_cache_capacity(256)
        .build()
        .unwrap();
    let capacity = s.blocked_cache_stats().unwrap().capacity as u64;
    assert_eq!(capacity, 256);
    // Fill the cache three times over with refused keys (1 per hour: admit, then refuse).
    let refused = 3 * capacity;
    for key in 0..refused {
        let c = [check(1_000 + key, 1, HOUR)];
        assert!(s.check(now(), &c).await.unwrap().admitted);
        assert!(!s.check(now(), &c).await.unwrap().admitted);
    }
    let full = s.blocked_cache_stats().unwrap();
    assert_eq!(full.entries as u64, capacity);
    assert_eq!(full.inserts, refused);
    assert_eq!(full.replaced, refused - capacity);
    // Every lookup and insert examined at most one bucket, at any fill level.
    let ops = full.lookups + full.inserts;
    assert!(full.slots_examined <= ops * full.bucket_slots as u64);
    // Unrelated traffic is still decided by Redis, exactly: 10 of 12, one call each until
    // the first refusal, which is cached (the 12th is refused locally).
    let calls = server.calls("evalsha");
    let other = [check(7, 10, HOUR)];
    assert_eq!(admitted(&s, &other, 12).await, 10);
    assert_eq!(server.calls("evalsha"), calls + 11);
    let after = s.blocked_cache_stats().unwrap();
    let ops_after = after.lookups + after.inserts - ops;
    assert_eq!(ops_after, 12 + 1, "12 lookups, 1 refusal stored");
    assert_eq!(after.hits - full.hits, 1);
    assert!(after.slots_examined - full.slots_examined <= ops_after * 8);
    // Refused keys the full cache replaced are still refused, by Redis.
    let mut still_refused = 0;
    for key in 0..refused {
        still_refused += usize::from(
            !s.check(now(), &[check(1_000 + key, 1, HOUR)])
                .await
                .unwrap()
                .admitted,
        );
    }
    assert_eq!(still_refused as u64, refused);
    assert_eq!(s.errors(), 0);
}

#[tokio::test]
async fn redis_out_of_memory_falls_back_to_per_instance_limits_by_default() {
    let server = RedisServer::start();
    let s = store(&server, "oom");
    let c = [check(15, 5, HOUR)];
    assert_eq!(admitted(&s, &c, 1).await, 1);
    // Redis refuses every script that may write (`-OOM`): an error reply, not a timeout.
    server.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    assert_eq!(
        server.command(&["CONFIG", "SET", "maxmemory", "1"]),
        "+OK\r\n"
    );
    assert_eq!(admitted(&s, &c, 8).await, 5);
    assert_eq!(
        (s.health().outages, s.health().decided_without_redis),
        (1, 8)
    );
    assert_eq!(
        server.command(&["CONFIG", "SET", "maxmemory", "0"]),
        "+OK\r\n"
    );
    let started = Instant::now();
    while !s.health().available {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not back in 3 s"
        );
        s.check(now(), &c).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.health().recoveries, 1);
}
