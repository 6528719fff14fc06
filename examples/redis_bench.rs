//! Checks per second through `RedisStore` vs `redis-benchmark` running EVALSHA of the same
//! script with the same arguments at the same concurrency, measured in one run.
//!
//! ```text
//! cargo run --release --features redis --example redis_bench [-- --requests N --clients C]
//! ```
//!
//! Starts its own `redis-server` (from PATH) on a free loopback port.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::RedisStore;
use tower_throttle::{Quota, Store};

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
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--requests", Some(v)) => requests = v,
            ("--clients", Some(v)) => clients = v,
            _ => {
                eprintln!("usage: redis_bench [--requests N] [--clients C]");
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
    let store = Arc::new(
        RedisStore::builder(&url)
            .timeout(Duration::from_secs(1))
            .blocked_cache(false)
            .build()?,
    );
    // A quota no run exhausts, so every check is admitted and writes, like the benchmark.
    let quota = Quota::new(u32::MAX, Duration::from_secs(3600))?;
    let check = Check {
        key: 42,
        params: GcraParams::new(&quota, Duration::ZERO),
        shadow: false,
        rule: 0,
    };
    store.check(&[check]).await?; // loads the script

    let start = Instant::now();
    let per_client = requests / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..per_client {
                    store.check(&[check]).await.expect("check");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let ours = (per_client * clients) as f64 / start.elapsed().as_secs_f64();

    // The same script, key and arguments, from redis-benchmark.
    let interval_us = check.params.interval_ns.div_ceil(1000).max(1);
    let limit_us = interval_us * (check.params.limit_ns / check.params.interval_ns);
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
            store.script_sha(),
            "1",
        ])
        .arg(store.state_key(42))
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
