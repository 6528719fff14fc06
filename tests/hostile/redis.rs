//! Attacks on the Redis store, replayed over loopback HTTP against the Clerk
//! server on a real `redis-server`: a full blocked-key cache, stale pooled connections,
//! Redis down or paused, and instances without a shared key secret.

use std::time::{Duration, Instant};

use tower_throttle::key::PeerIp;
use tower_throttle::store::RedisStore;
use tower_throttle::{BuildError, Quota, RateLimitLayer, Route, Rule, Store};

use crate::clerk::{self, Instance};
use crate::harness::{Raw, Server};
use crate::redis_server::RedisServer;

const SECRET: [u8; 16] = *b"hostile-redis-k1";

fn store(redis: &RedisServer, prefix: &str, timeout: Duration) -> RedisStore {
    RedisStore::builder(redis.url())
        .prefix(prefix)
        .timeout(timeout)
        // Back at the first success (the recovery window is tested in tests/redis_ops.rs).
        .recovery_window(Duration::ZERO)
        .build()
        .unwrap()
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

/// A Clerk development instance on `store`, and the store (to read its counters).
async fn clerk_on(store: &RedisStore) -> Server {
    let (app, handle) = clerk::app_on_redis(Instance::Development, store.clone(), SECRET).unwrap();
    Server::start(app, handle).await
}

/// Clerk's routes with one rule: 5 sign-ins per hour per IP, on `store`.
async fn hourly_sign_ins_on(store: &RedisStore) -> Server {
    let rule = Rule::new("sign_in", Quota::per_hour(5).unwrap())
        .route(Route::post("/v1/sign_ins"))
        .key(PeerIp::new());
    let layer = RateLimitLayer::builder()
        .rule(rule)
        .key_secret(SECRET)
        .store(store.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    Server::start(clerk::api().layer(layer), handle).await
}

const SIGN_IN: Raw<'static> = Raw {
    method: "POST",
    target: "/v1/sign_ins",
    headers: &[],
};

/// Sends one sign-in from `ip` to each server in turn (`n` in all); how many got 200.
async fn sign_ins(servers: &[&Server], ip: &str, n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        ok += usize::from(servers[i % servers.len()].send(ip, &SIGN_IN).await.status == 200);
    }
    ok
}

/// Waits (sending sign-ins from `ip`) until the store finds Redis again.
async fn until_back(server: &Server, store: &RedisStore, ip: &str) {
    let started = Instant::now();
    while !store.health().available {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "Redis not back in 5 s"
        );
        server.send(ip, &SIGN_IN).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sign_ins_across_a_client_kill_are_all_counted() {
    let redis = RedisServer::start();
    let (sa, sb) = (
        store(&redis, "h-kill", Duration::from_secs(1)),
        store(&redis, "h-kill", Duration::from_secs(1)),
    );
    let (a, b) = (clerk_on(&sa).await, clerk_on(&sb).await);
    assert_eq!(sign_ins(&[&a, &b], "127.0.7.1", 2).await, 2);
    policy_read(&sa).await;
    policy_read(&sb).await;
    // Both instances' pooled connections die while idle.
    assert_eq!(
        redis.command(&["CLIENT", "KILL", "TYPE", "normal"]),
        ":2\r\n"
    );
    // Counted exactly: the first call of each instance must not fail fast on its dead
    // pooled connection and be admitted uncounted.
    assert_eq!(sign_ins(&[&a, &b], "127.0.7.1", 4).await, 3);
    assert_eq!((sa.health().reconnects, sb.health().reconnects), (1, 1));
    assert_eq!((sa.errors(), sb.errors()), (0, 0));
}

#[tokio::test]
async fn sign_ins_across_a_redis_restart_are_all_counted() {
    let mut redis = RedisServer::start();
    let (sa, sb) = (
        store(&redis, "h-restart", Duration::from_secs(1)),
        store(&redis, "h-restart", Duration::from_secs(1)),
    );
    let (a, b) = (clerk_on(&sa).await, clerk_on(&sb).await);
    assert_eq!(sign_ins(&[&a, &b], "127.0.7.2", 2).await, 2);
    policy_read(&sa).await;
    policy_read(&sb).await;
    // Redis restarts empty on the same port: the 2 sign-ins it had are gone, and both
    // instances must reach the new server (not fail fast and admit uncounted).
    redis.restart();
    assert_eq!(sign_ins(&[&a, &b], "127.0.7.2", 6).await, 5);
    assert_eq!((sa.errors(), sb.errors()), (0, 0));
}

#[tokio::test]
async fn redis_down_limits_each_instance_to_its_quota() {
    let mut redis = RedisServer::start();
    let s = store(&redis, "h-down", Duration::from_millis(200));
    let server = clerk_on(&s).await;
    assert_eq!(sign_ins(&[&server], "127.0.7.3", 1).await, 1);
    redis.kill();
    // Not fail open: the in-memory fallback enforces its 5.
    assert_eq!(sign_ins(&[&server], "127.0.7.3", 12).await, 5);
    let down = s.health();
    assert_eq!(
        (down.available, down.outages, down.recoveries),
        (false, 1, 0)
    );
    assert_eq!(down.decided_without_redis, 12);
    assert_eq!(
        server.handle.store_errors(),
        0,
        "never unlimited, never an error"
    );
    redis.restart();
    until_back(&server, &s, "127.0.7.4").await;
    let back = s.health();
    assert_eq!(
        (back.outages, back.recoveries),
        (1, 1),
        "one lost, one back"
    );
    // Redis decides again (restarted empty): a fresh IP gets exactly 5.
    assert_eq!(sign_ins(&[&server], "127.0.7.5", 6).await, 5);
    assert_eq!(s.health().decided_without_redis, back.decided_without_redis);
}

#[tokio::test]
async fn paused_redis_limits_each_instance_to_its_quota() {
    let redis = RedisServer::start();
    let s = store(&redis, "h-slow", Duration::from_millis(200));
    let server = clerk_on(&s).await;
    assert_eq!(sign_ins(&[&server], "127.0.7.6", 1).await, 1);
    // Redis stops answering for 3 s (DEBUG SLEEP is disabled by default in Redis 7):
    // calls pass their 200 ms timeout.
    assert_eq!(
        redis.command(&["CLIENT", "PAUSE", "3000", "ALL"]),
        "+OK\r\n"
    );
    let started = Instant::now();
    assert_eq!(sign_ins(&[&server], "127.0.7.6", 12).await, 5);
    // Only the first request (and at most one probe per 250 ms) waited on Redis.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let slow = s.health();
    assert_eq!((slow.outages, slow.decided_without_redis), (1, 12));
    until_back(&server, &s, "127.0.7.7").await;
    assert_eq!((s.health().outages, s.health().recoveries), (1, 1));
}

#[tokio::test]
async fn a_full_blocked_cache_neither_slows_nor_opens_other_keys() {
    let redis = RedisServer::start();
    let s = RedisStore::builder(redis.url())
        .prefix("h-full")
        .timeout(Duration::from_secs(1))
        .blocked_cache_capacity(64)
        .build()
        .unwrap();
    // Sign-ins limited per hour, not per 10 s: a refusal is cached until its key would be
    // admitted again, and at Clerk's rate (one sign-in back every 2 s) entries made early in
    // the loop could expire before it ends on a loaded machine, and be reused, not replaced.
    let server = hourly_sign_ins_on(&s).await;
    // 200 IPs each refused once: three times the cache's capacity.
    for ip in 0..200 {
        let ip = format!("127.0.8.{ip}");
        assert_eq!(sign_ins(&[&server], &ip, 6).await, 5);
    }
    let full = s.blocked_cache_stats().unwrap();
    assert_eq!((full.entries, full.inserts), (64, 200));
    assert_eq!(full.replaced, 200 - 64);
    assert!(full.slots_examined <= (full.lookups + full.inserts) * full.bucket_slots as u64);
    // An unrelated IP is decided by Redis, exactly: 5 of 6, each a round trip.
    let calls = redis.calls("evalsha");
    assert_eq!(sign_ins(&[&server], "127.0.9.1", 6).await, 5);
    assert_eq!(redis.calls("evalsha"), calls + 6);
    let after = s.blocked_cache_stats().unwrap();
    assert!(
        after.slots_examined - full.slots_examined <= 7 * 8,
        "6 lookups, 1 insert"
    );
    // (That keys the full cache forgot are still refused, by Redis, is checked on an
    // hourly quota in tests/redis_store.rs: sign-ins regain one request every 2 s.)
    assert_eq!(s.errors(), 0);
}

#[tokio::test]
async fn a_clerk_on_redis_without_a_key_secret_does_not_build() {
    let redis = RedisServer::start();
    let s = store(&redis, "h-secret", Duration::from_secs(1));
    assert!(s.is_shared());
    let built = clerk::builder(Instance::Development)
        .unwrap()
        .store(s)
        .build();
    assert_eq!(built.err(), Some(BuildError::SharedStoreWithoutKeySecret));
}
