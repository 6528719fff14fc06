//! Checks per second through `RedisStore` vs `redis-benchmark` running EVALSHA of the same
//! script with the same arguments at the same concurrency, measured in one run.
//!
//! ```text
//! cargo run --release --features redis --example redis_bench [-- --requests N --clients C]
//! cargo run --release --features redis --example redis_bench -- --full-cache
//! ```
//!
//! Starts its own `redis-server` (from PATH) on a free loopback port.
//!
//! `--full-cache` measures the blocked-key cache instead: unrelated checks per second and
//! the time of a new refusal (two checks of a fresh 1-per-hour key: admitted, then refused
//! and cached) with the cache empty, then again once 110,000 refused keys have filled its
//! 100,000 entries.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_throttle::clock::{Clock, Timestamp, TokioClock};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::RedisStore;
use tower_throttle::{Quota, Store};
/// The arrival time a layer would pass (Redis decides on its own clock; the in-memory
/// fallback uses this).
fn now() -> Timestamp {
    TokioClock::new().now()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut requests: u64 = 100_000;
    let mut clients: u64 = 50;
    let mut full_cache = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--full-cache" {
            full_cache = true;
            continue;
        }
        match (flag.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--requests", Some(v)) => requests = v,
            ("--clients", Some(v)) => clients = v,
            _ => {
                eprintln!("usage: redis_bench [--requests N] [--clients C] [--full-cache]");
                std::process::exit(2)
            }
        }
    }
    let port = free_port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server (apt-get install -y redis-server): {e}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("redis://127.0.0.1:{port}/");
    if full_cache {
        let result = blocked_cache_run(&url, clients).await;
        let _ = server.kill();
        let _ = server.wait();
        return result;
    }
    let store = Arc::new(
        RedisStore::builder(&url)
            .timeout(Duration::from_secs(1))
            .blocked_cache(false)
            .build()?,
    );
    // A quota no run exhausts, so every check is admitted and writes, like the benchmark.
    let quota = Quota::new(u32::MAX, Duration::from_secs(3600))?;
    let check = Check::new(42, GcraParams::new(&quota, Duration::ZERO));
    store.check(now(), &[check]).await?; // loads the script

    let start = Instant::now();
    let per_client = requests / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..per_client {
                    store.check(now(), &[check]).await.expect("check");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let ours = (per_client * clients) as f64 / start.elapsed().as_secs_f64();

    // The same script, key and arguments, from redis-benchmark.
    // The store's script (EVALSHA names it by its SHA-1) and key layout
    // (`{prefix}:rl:<16 hex digits>`, default prefix), with its µs arguments.
    let script_sha = redis::Script::new(include_str!("../src/engine/store/redis/gcra.lua"))
        .get_hash()
        .to_owned();
    let state_key = format!("{{tower-throttle}}:rl:{:016x}", check.key());
    let micros = check.params().rounded_up_to(1000);
    let interval_us = micros.interval_ns() / 1000;
    let limit_us = micros.limit_ns() / 1000;
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &clients.to_string(),
        ])
        .args([
            "-n",
            &requests.to_string(),
            "-q",
            "evalsha",
            &script_sha,
            "1",
        ])
        .arg(&state_key)
        .args([
            interval_us.to_string(),
            limit_us.to_string(),
            "0".into(),
            "0".into(),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let theirs: f64 = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find(|(_, next)| *next == "requests")
        .and_then(|(n, _)| n.parse().ok())
        .ok_or_else(|| format!("cannot read redis-benchmark output: {text}"))?;
    let _ = server.kill();
    let _ = server.wait();
    println!("{requests} checks, {clients} concurrent clients, one hot key, 2 worker threads");
    println!("| client                        | checks/s |");
    println!("|-------------------------------|----------|");
    println!("| RedisStore::check             | {ours:>8.0} |");
    println!("| redis-benchmark EVALSHA       | {theirs:>8.0} |");
    println!("ratio RedisStore / redis-benchmark: {:.2}", ours / theirs);
    Ok(())
}

fn check_of(key: u64, quota: &Quota) -> Check {
    Check::new(key, GcraParams::new(quota, Duration::ZERO))
}

/// Runs `per_client` calls of `f(client, i)` on each of `clients` tasks; returns the time.
async fn concurrently<F, Fut>(clients: u64, per_client: u64, f: F) -> Duration
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                for i in 0..per_client {
                    f(c, i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a bench task");
    }
    start.elapsed()
}

/// Unrelated checks per second and µs per new refusal, at the present fill of the cache.
async fn blocked_cache_sample(store: &Arc<RedisStore>, clients: u64, first_key: u64) -> (f64, f64) {
    let open = Quota::new(u32::MAX, Duration::from_secs(3600)).expect("a quota");
    let once = Quota::per_hour(1).expect("a quota");
    let per_client = 400;
    let s = Arc::clone(store);
    let took = concurrently(clients, per_client, move |_, _| {
        let s = Arc::clone(&s);
        async move {
            s.check(now(), &[check_of(42, &open)]).await.expect("check");
        }
    })
    .await;
    let unrelated = (clients * per_client) as f64 / took.as_secs_f64();
    let s = Arc::clone(store);
    let took = concurrently(clients, per_client / 2, move |c, i| {
        let s = Arc::clone(&s);
        async move {
            let key = [check_of(first_key + c * 1_000_000 + i, &once)];
            assert!(s.check(now(), &key).await.expect("check").admitted);
            assert!(!s.check(now(), &key).await.expect("check").admitted);
        }
    })
    .await;
    let refusal_us = took.as_secs_f64() * 1e6 / (per_client / 2) as f64;
    (unrelated, refusal_us)
}

async fn blocked_cache_run(url: &str, clients: u64) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(
        RedisStore::builder(url)
            .timeout(Duration::from_secs(1))
            .build()?,
    );
    let (empty_rate, empty_us) = blocked_cache_sample(&store, clients, 1 << 40).await;
    // 110,000 refused keys: 10 % more than the cache holds.
    let once = Quota::per_hour(1)?;
    let per_client = 110_000 / clients + 1;
    let s = Arc::clone(&store);
    let fill = concurrently(clients, per_client, move |c, i| {
        let s = Arc::clone(&s);
        async move {
            let key = [check_of(c * 1_000_000 + i, &once)];
            s.check(now(), &key).await.expect("check");
            s.check(now(), &key).await.expect("check");
        }
    })
    .await;
    let stats = store.blocked_cache_stats().expect("the cache is on");
    let (full_rate, full_us) = blocked_cache_sample(&store, clients, 2 << 40).await;
    println!("{clients} concurrent clients, 2 worker threads; cache filled in {fill:?}: {stats:?}");
    println!(
        "| blocked-key cache | unrelated checks/s | µs per new refusal (2 checks), per client |"
    );
    println!(
        "|-------------------|--------------------|-------------------------------------------|"
    );
    println!("| empty             | {empty_rate:>18.0} | {empty_us:>41.0} |");
    println!("| full              | {full_rate:>18.0} | {full_us:>41.0} |");
    println!(
        "ratio full / empty: checks/s {:.2}, refusal time {:.2}",
        full_rate / empty_rate,
        full_us / empty_us
    );
    Ok(())
}
