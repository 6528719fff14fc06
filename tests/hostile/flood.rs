//! A flood of new keys must not weaken existing limits.
//!
//! The Clerk table runs on a `MemoryStore` of 1,024 keys, so a flood of
//! `POST /v1/invitations/bulk` with fresh bearer tokens (each request brings two new keys:
//! the instance rule's and the hourly bulk rule's) fills it within a few thousand
//! requests. A full store must not evict the keys closest to idle, which are the
//! short-window keys being limited right now: an exhausted sign-in IP, instance key and
//! per-user PATCH stay refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use tower::ServiceExt;
use tower_throttle::store::MemoryStore;

use crate::clerk;
use crate::harness::{bearer, Raw, Server};

const MAX_KEYS: usize = 1024;

/// One request through the layer (no network), from `ip`; returns the status.
async fn call(app: &axum::Router, ip: [u8; 4], method: &str, path: &str, key: &str) -> u16 {
    let mut req = Request::builder().method(method).uri(path);
    if !key.is_empty() {
        req = req.header("authorization", bearer(key));
    }
    let mut req = req.body(Body::empty()).unwrap();
    // Both peer-address sources, as `clerk::serve` inserts them: the crate reads
    // `ConnectInfo` with its `axum` feature and the plain `SocketAddr` without it.
    let peer = SocketAddr::from((ip, 40_000));
    req.extensions_mut().insert(ConnectInfo(peer));
    req.extensions_mut().insert(peer);
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

/// Sends `send()` until it is refused; returns how many were admitted.
async fn exhaust<F: std::future::Future<Output = u16>>(mut send: impl FnMut() -> F) -> usize {
    let mut admitted = 0;
    loop {
        match send().await {
            200 => admitted += 1,
            429 => return admitted,
            other => panic!("unexpected status {other}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn through_the_layer_a_flood_leaves_every_exhausted_key_exhausted() {
    // One shard, paused time: the flood's outcome is exact.
    let store = MemoryStore::builder()
        .max_keys(MAX_KEYS)
        .shards(1)
        .build()
        .unwrap();
    let (app, _) = clerk::app_on_store(clerk::Instance::Development, store.clone()).unwrap();
    let ip = [10, 0, 0, 1];
    let sign_in = || call(&app, ip, "POST", "/v1/sign_ins", "");
    let users = || call(&app, ip, "GET", "/v1/users", "sk_test_victim");
    let patch = || call(&app, ip, "PATCH", "/v1/users/user_1", "sk_test_admin");
    assert_eq!(exhaust(sign_in).await, 5);
    assert_eq!(exhaust(users).await, 100);
    assert_eq!(exhaust(patch).await, 10);
    // Sign-in IP, instance keys of both bearers, user_1.
    assert_eq!(store.len(), 4);
    let mut admitted = 0;
    for i in 0..2000 {
        let token = format!("sk_flood_{i:08}");
        let status = call(&app, ip, "POST", "/v1/invitations/bulk", &token).await;
        assert!(status == 200 || status == 429, "{status}");
        admitted += usize::from(status == 200);
        if i % 100 == 0 {
            assert_eq!(sign_in().await, 429, "sign-in after {i} flood requests");
            assert_eq!(users().await, 429, "instance key after {i}");
            assert_eq!(patch().await, 429, "user PATCH after {i}");
        }
    }
    // 446 flood requests fill seven eighths of the store (4 + 2 × 446 = 896 keys); the
    // last eighth is reserved for rules below their fair share (1,024 / 4 rules), which
    // the flooded ones are not. Each later request has both keys decided on their rule's
    // overflow bucket, and the hourly bucket admits its quota (25 per hour); the instance
    // bucket (100 per 10 s) never refuses first.
    assert_eq!(admitted, 446 + 25);
    assert_eq!(store.len(), 896);
    assert_eq!(store.evictions().overflowed, 2 * (2000 - 446));
    assert_eq!(store.evictions().idle, 0);
    // The flood took no room from the other rules: fresh sign-in IPs and a fresh user
    // each get their own full quota.
    for ip in [[10, 0, 0, 2], [10, 0, 0, 3]] {
        let fresh = || call(&app, ip, "POST", "/v1/sign_ins", "");
        assert_eq!(exhaust(fresh).await, 5);
    }
    let other_user = || call(&app, ip, "PATCH", "/v1/users/user_2", "sk_test_admin");
    assert_eq!(exhaust(other_user).await, 10);
    assert_eq!(store.evictions().overflowed, 2 * (2000 - 446));
    // The exhausted keys refill at their own rate, exactly: 1 sign-in per 2 s, 1 user
    // update per second, 10 instance requests per second.
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut got = [0; 3];
    for _ in 0..30 {
        got[0] += usize::from(sign_in().await == 200);
        got[1] += usize::from(patch().await == 200);
        got[2] += usize::from(users().await == 200);
    }
    // (Each admitted PATCH also spends one of the admin's instance requests, not the
    // victim's.)
    assert_eq!(got, [1, 2, 20]);
}

/// GCRA admits at most `burst + floor(span / interval)` requests of a key over `span`.
fn allowed(burst: usize, interval: Duration, span: Duration) -> usize {
    burst + (span.as_nanos() / interval.as_nanos()) as usize
}

#[tokio::test]
async fn over_http_a_bulk_invitation_flood_leaves_every_exhausted_key_exhausted() {
    // Real time and the default shards: whatever refill the run's duration allows is
    // counted exactly, and the exhausted keys must get no more.
    let store = MemoryStore::builder().max_keys(MAX_KEYS).build().unwrap();
    let (app, handle) = clerk::app_on_store(clerk::Instance::Development, store.clone()).unwrap();
    let server = Server::start(app, handle).await;
    let victim = bearer("sk_test_victim");
    let admin = bearer("sk_test_admin");
    let victim_auth = [("authorization", victim.as_str())];
    let admin_auth = [("authorization", admin.as_str())];
    let probes = [
        ("127.0.0.2", Raw::new("POST", "/v1/sign_ins")),
        (
            "127.0.0.3",
            Raw::new("GET", "/v1/users").headers(&victim_auth),
        ),
        (
            "127.0.0.4",
            Raw::new("PATCH", "/v1/users/user_1").headers(&admin_auth),
        ),
    ];
    let start = Instant::now();
    let mut admitted = [0usize; 3];
    for (i, (ip, req)) in probes.iter().enumerate() {
        admitted[i] = exhaust(|| async { server.send(ip, req).await.status }).await;
    }
    // Random bearer tokens (xorshift with a fixed seed), past capacity.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut flood_admitted = 0;
    for i in 0..2500 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let token = bearer(&format!("sk_live_{seed:016x}"));
        let auth = [("authorization", token.as_str())];
        let req = Raw::new("POST", "/v1/invitations/bulk").headers(&auth);
        let status = server.send("127.0.0.9", &req).await.status;
        assert!(status == 200 || status == 429, "{status}");
        flood_admitted += usize::from(status == 200);
        if i % 50 == 0 {
            for (k, (ip, req)) in probes.iter().enumerate() {
                admitted[k] += usize::from(server.send(ip, req).await.status == 200);
            }
        }
    }
    for (k, (ip, req)) in probes.iter().enumerate() {
        for _ in 0..3 {
            admitted[k] += usize::from(server.send(ip, req).await.status == 200);
        }
    }
    let span = start.elapsed();
    let limits = [
        allowed(5, Duration::from_secs(2), span),
        allowed(100, Duration::from_millis(100), span),
        allowed(10, Duration::from_secs(1), span),
    ];
    for (k, name) in ["sign-in IP", "instance key", "user PATCH"]
        .iter()
        .enumerate()
    {
        assert!(
            admitted[k] <= limits[k],
            "{name}: {} admitted, {} allowed over {span:?}",
            admitted[k],
            limits[k]
        );
    }
    // The flood did fill the store, which stayed under its bound.
    let stats = store.evictions();
    assert!(stats.overflowed > 0, "{stats:?}");
    assert!(store.len() <= MAX_KEYS);
    // New sign-in IPs: never more than their own limit, and never nothing. Whether each
    // gets a slot of its own (5 + 5) or both are decided on the sign-in rule's overflow
    // bucket (5 in all) depends, in real time, on how many of the flood's instance keys
    // (100 per 10 s: idle 100 ms after their one request) went idle and let the instance
    // rule below its fair share into the shards' reserve; the exact outcome of the
    // reserve is asserted under paused time above.
    let sign_in = Raw::new("POST", "/v1/sign_ins");
    let mut fresh = 0;
    for ip in ["127.0.0.5", "127.0.0.6"] {
        let got = server.count(6, ip, &sign_in, 200).await;
        assert!(got <= 5, "{ip}: {got} of 6 sign-ins admitted");
        fresh += got;
    }
    assert!((5..=10).contains(&fresh), "{fresh}");
    // Past capacity, the hourly rule's new keys shared one bucket of 25.
    assert!(flood_admitted <= MAX_KEYS + 25, "{flood_admitted}");
}
