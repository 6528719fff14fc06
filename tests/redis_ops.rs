//! Operating the Redis store: the eviction-policy check and the recovery window, against a
//! real `redis-server` (spawned on a free loopback port; the test fails if `redis-server`
//! is not installed).
#![cfg(feature = "redis")]

#[path = "redis_store/capture.rs"]
mod capture;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use capture::transitions;
use redis_server::RedisServer;
use tower_throttle::clock::{Clock, Timestamp, TokioClock};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::{RedisMemoryPolicy, RedisStore};
use tower_throttle::{Quota, Store};
/// The arrival time a layer would pass (Redis decides on its own clock; the in-memory
/// fallback uses this).
fn now() -> Timestamp {
    TokioClock::new().now()
}

fn check(key: u64) -> [Check; 1] {
    [Check::new(
        key,
        GcraParams::new(
            &Quota::new(25, Duration::from_secs(3600)).unwrap(),
            Duration::ZERO,
        ),
    )]
}

fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::builder(server.url())
        .prefix(prefix)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn config_set(server: &RedisServer, name: &str, value: &str) {
    assert_eq!(server.command(&["CONFIG", "SET", name, value]), "+OK\r\n");
}

fn read(maxmemory: u64, policy: &str) -> RedisMemoryPolicy {
    RedisMemoryPolicy::Read {
        maxmemory,
        policy: policy.to_owned(),
    }
}

/// The policy the store read by itself after its first call (in the background).
async fn policy_after_first_call(s: &RedisStore) -> RedisMemoryPolicy {
    assert_eq!(s.memory_policy(), RedisMemoryPolicy::NotChecked);
    assert!(s.check(now(), &check(1)).await.unwrap().admitted);
    let started = Instant::now();
    while s.memory_policy() == RedisMemoryPolicy::NotChecked {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not read in 3 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.memory_policy()
}

#[tokio::test]
async fn a_memory_cap_with_volatile_lru_is_flagged_once() {
    transitions("", ""); // installs the capture
    let server = RedisServer::start();
    config_set(&server, "maxmemory", "100mb");
    config_set(&server, "maxmemory-policy", "volatile-lru");
    let s = store(&server, "evicts");
    let found = policy_after_first_call(&s).await;
    assert_eq!(found, read(100 << 20, "volatile-lru"));
    assert!(found.may_evict_keys());
    // Read again (as after a reconnection): still one warning.
    assert_eq!(s.check_memory_policy().await, found);
    assert_eq!(transitions("evicts", "may_evict"), 1);
    assert_eq!(transitions("evicts", "safe"), 0);
    // Fixed by hand: found on the next read, logged as safe.
    config_set(&server, "maxmemory-policy", "noeviction");
    assert_eq!(s.check_memory_policy().await, read(100 << 20, "noeviction"));
    assert_eq!(
        (
            transitions("evicts", "may_evict"),
            transitions("evicts", "safe")
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn a_memory_cap_with_noeviction_is_not_flagged() {
    transitions("", "");
    let server = RedisServer::start();
    config_set(&server, "maxmemory", "100mb");
    config_set(&server, "maxmemory-policy", "noeviction");
    let s = store(&server, "noevict");
    let found = policy_after_first_call(&s).await;
    assert_eq!(found, read(100 << 20, "noeviction"));
    assert!(!found.may_evict_keys());
    assert_eq!(transitions("noevict", "may_evict"), 0);
    assert_eq!(transitions("noevict", "safe"), 1);
}

#[tokio::test]
async fn no_memory_cap_is_not_flagged_whatever_the_policy() {
    transitions("", "");
    let server = RedisServer::start();
    config_set(&server, "maxmemory", "0");
    config_set(&server, "maxmemory-policy", "allkeys-lru");
    let s = store(&server, "nocap");
    let found = policy_after_first_call(&s).await;
    assert_eq!(found, read(0, "allkeys-lru"));
    assert!(!found.may_evict_keys());
    assert_eq!(transitions("nocap", "may_evict"), 0);
}

#[tokio::test]
async fn a_refused_config_get_is_unknown_logged_once_and_the_store_still_works() {
    transitions("", "");
    let server = RedisServer::start();
    // Like managed Redis: CONFIG is not allowed (here by an ACL; `rename-command` has the
    // same effect).
    assert_eq!(
        server.command(&["ACL", "SETUSER", "app", "on", "nopass", "~*", "+@all", "-config"]),
        "+OK\r\n"
    );
    let url = format!("redis://app:x@127.0.0.1:{}/", server.port());
    let s = RedisStore::builder(url).prefix("noconfig").build().unwrap();
    assert_eq!(
        policy_after_first_call(&s).await,
        RedisMemoryPolicy::Unknown
    );
    assert_eq!(s.check_memory_policy().await, RedisMemoryPolicy::Unknown);
    assert_eq!(transitions("noconfig", "unknown"), 1);
    assert!(s.check(now(), &check(1)).await.unwrap().admitted);
    assert_eq!(s.errors(), 0);
}

/// Redis alternating `OOM` and success (as at its memory cap, under `noeviction`): one
/// "lost" line, no "back" line until it answered for a whole recovery window.
#[tokio::test]
async fn a_redis_flapping_at_its_memory_cap_logs_one_outage() {
    transitions("", "");
    let server = RedisServer::start();
    config_set(&server, "maxmemory-policy", "noeviction");
    let window = Duration::from_millis(800);
    let s = RedisStore::builder(server.url())
        .prefix("flap")
        .timeout(Duration::from_millis(500))
        .probe_interval(Duration::from_millis(20))
        .recovery_window(window)
        .build()
        .unwrap();
    let mut key = 0;
    let mut call = || {
        key += 1;
        s.check(now(), &check(key))
    };
    assert!(call().await.unwrap().admitted);
    let flaps = 6;
    for flap in 0..=flaps {
        // Over the cap: the next call that reaches Redis gets OOM.
        config_set(&server, "maxmemory", "1");
        call().await.unwrap();
        assert!(!s.health().available, "flap {flap}");
        // Under the cap: the next probe succeeds and the store is recovering.
        config_set(&server, "maxmemory", "0");
        let started = Instant::now();
        while !s.health().available {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "no probe in 3 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            call().await.unwrap();
        }
    }
    let h = s.health();
    assert_eq!((h.outages, h.recoveries, h.flaps), (1, 0, flaps));
    assert_eq!(
        (transitions("flap", "lost"), transitions("flap", "back")),
        (1, 0)
    );
    // Redis answers for the whole window: back, once.
    let started = Instant::now();
    while s.health().recoveries == 0 {
        assert!(started.elapsed() < window * 3, "not back");
        tokio::time::sleep(Duration::from_millis(50)).await;
        call().await.unwrap();
    }
    assert!(started.elapsed() >= window - Duration::from_millis(200));
    let h = s.health();
    assert_eq!((h.outages, h.recoveries, h.flaps), (1, 1, flaps));
    assert_eq!(
        (transitions("flap", "lost"), transitions("flap", "back")),
        (1, 1)
    );
}

/// What one rate-limit key costs in Redis (`MEMORY USAGE`, Redis 7.0, jemalloc): the
/// figure the sizing advice in the module docs is based on.
#[tokio::test]
async fn one_rate_limit_key_uses_under_100_bytes() {
    let server = RedisServer::start();
    let s = store(&server, "tower-throttle");
    assert!(s.check(now(), &check(42)).await.unwrap().admitted);
    // The documented key layout: `{prefix}:rl:<16 hex digits>`.
    let key = format!("{{tower-throttle}}:rl:{:016x}", 42);
    let reply = server.command(&["MEMORY", "USAGE", &key]);
    let bytes: u64 = reply.trim_start_matches(':').trim_end().parse().unwrap();
    eprintln!("MEMORY USAGE of one rate-limit key: {bytes} bytes");
    assert!(bytes > 0 && bytes < 100, "{bytes}");
}
