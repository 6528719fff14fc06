//! The whole story: Clerk's published limits enforced by `RateLimitLayer` on a real HTTP
//! server, then honored by the crate's client stack, side by side with a naive client.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! Starts the Clerk stub server (development instance) in-process on a free loopback port.
//!
//! 1. The server: traffic from several client IPs (127.0.0.2, 127.0.0.3, … are all
//!    loopback on Linux) and secret keys, one `Retry-After` honored.
//! 2. The clients: 300 calls from 20 tasks each, one secret key each, against Clerk's
//!    100 requests per 10 s: the crate's stack (Retry-After gate, backoff, pacing, header
//!    monitor) and a naive loop that retries 429s after their `Retry-After`. Live progress,
//!    then one table per client.
//! 3. The server's counters per rule.
//!
//! Finishes by itself in about 25 s.

#[path = "support/clerk.rs"]
mod clerk;
#[path = "support/logging.rs"]
mod logging;
#[path = "support/race.rs"]
mod race;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One simulated client: a source IP, optionally a secret key.
struct Caller {
    name: &'static str,
    client: HttpClient,
    base: String,
    key: Option<&'static str>,
}

#[derive(Default)]
struct Seen {
    statuses: BTreeMap<u16, usize>,
    retry_after: BTreeMap<String, Vec<u64>>,
}

struct Outcome {
    status: StatusCode,
    rule: Option<String>,
    retry_after: Option<u64>,
}

impl Caller {
    fn new(name: &'static str, base: &str, source: &str, key: Option<&'static str>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(source.parse::<IpAddr>().expect("source ip")));
        Caller {
            name,
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.to_owned(),
            key,
        }
    }

    async fn send(&self, method: Method, path: &str, seen: &mut Seen) -> Outcome {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = self.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let res = self
            .client
            .request(req.body(Empty::new()).expect("request"))
            .await
            .expect("the server is up");
        let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok());
        // The IETF `RateLimit` field names the policy (rule) that the response reports.
        let rule = header("ratelimit")
            .and_then(|v| v.split(';').next())
            .map(|p| p.trim_matches('"').to_owned());
        let retry_after = header("retry-after").and_then(|v| v.parse().ok());
        *seen.statuses.entry(res.status().as_u16()).or_default() += 1;
        if let (Some(rule), Some(secs)) = (&rule, retry_after) {
            seen.retry_after.entry(rule.clone()).or_default().push(secs);
        }
        Outcome {
            status: res.status(),
            rule,
            retry_after,
        }
    }

    async fn burst(&self, n: usize, method: Method, path: &str, seen: &mut Seen) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.send(method.clone(), path, seen).await);
        }
        let ok = out.iter().filter(|o| o.status == StatusCode::OK).count();
        let limited: Vec<&Outcome> = out
            .iter()
            .filter(|o| o.status == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        let other = n - ok - limited.len();
        print!(
            "  {:<9} {n:>3} × {:<5} {path:<42} → {ok:>3} ok, {:>3} × 429",
            self.name,
            method.as_str(),
            limited.len()
        );
        if let Some(first) = limited.first() {
            print!(
                " (rule {}, Retry-After {} s)",
                first.rule.as_deref().unwrap_or("?"),
                first.retry_after.unwrap_or(0)
            );
        }
        if other > 0 {
            print!(", {other} other (status {})", out[0].status);
        }
        println!();
        out
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let started = Instant::now();
    let (app, handle) = clerk::app(clerk::Instance::Development)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(clerk::serve(listener, app));
    println!("Clerk stub API (development instance) with tower-throttle on {base}\n");
    let mut seen = Seen::default();
    println!("1. The server\n");
    frontend(&base, &mut seen).await;
    backend(&base, &mut seen).await;
    clients(&base).await;
    summary(&handle, seen, started);
    server.abort();
    Ok(())
}

/// Browsers signing in, keyed by client IP; one honors `Retry-After`.
async fn frontend(base: &str, seen: &mut Seen) {
    println!("Frontend API, keyed by client IP:");
    let alice = Caller::new("browser-A", base, "127.0.0.2", None);
    let bob = Caller::new("browser-B", base, "127.0.0.3", None);
    let first = alice.burst(7, Method::POST, "/v1/sign_ins", seen).await;
    bob.burst(3, Method::POST, "/v1/sign_ins", seen).await;
    let wait = first
        .iter()
        .filter_map(|o| o.retry_after)
        .max()
        .unwrap_or(1);
    println!("  browser-A honors Retry-After: sleeping {wait} s");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    alice.burst(1, Method::POST, "/v1/sign_ins", seen).await;
    let first_factor = "/v1/sign_ins/sia_1/attempt_first_factor";
    alice.burst(2, Method::POST, first_factor, seen).await;
    let second_factor = "/v1/sign_ins/sia_1/attempt_second_factor";
    alice.burst(3, Method::POST, second_factor, seen).await;
    let verification = "/v1/sign_ups/sua_1/attempt_verification";
    bob.burst(4, Method::POST, verification, seen).await;
}

/// Backend calls keyed by secret key, and one caller without a key.
async fn backend(base: &str, seen: &mut Seen) {
    println!("\nBackend API, keyed by secret key (100 requests / 10 s per instance):");
    let backend = Caller::new("sk_A", base, "127.0.0.4", Some("sk_test_demo_a"));
    backend
        .burst(30, Method::POST, "/v1/invitations/bulk", seen)
        .await;
    println!("  (the 5 refused invitations spent none of the instance quota:)");
    backend.burst(80, Method::GET, "/v1/users", seen).await;
    backend.burst(50, Method::GET, "/v1/jwks", seen).await;
    let other = Caller::new("sk_B", base, "127.0.0.4", Some("sk_test_demo_b"));
    other
        .burst(6, Method::PATCH, "/v1/users/user_1", seen)
        .await;
    let metadata = "/v1/users/user_1/metadata";
    other.burst(6, Method::PATCH, metadata, seen).await;
    other
        .burst(3, Method::PATCH, "/v1/users/user_2", seen)
        .await;
    let anonymous = Caller::new("no key", base, "127.0.0.5", None);
    anonymous.burst(2, Method::GET, "/v1/users", seen).await;
}

/// Calls per client in the second act, and the tasks making them.
const CALLS: u64 = 300;
const TASKS: u64 = 20;

/// The crate's client stack and a naive client, side by side, each with its own key.
async fn clients(base: &str) {
    println!(
        "\n2. The clients: {CALLS} calls from {TASKS} tasks each, {} requests / {} s per key \
         (least time: {:.0} s)\n",
        race::LIMIT,
        race::WINDOW.as_secs(),
        race::least_time(CALLS).as_secs_f64()
    );
    let (ours, naive) = (
        Arc::new(race::Tally::default()),
        Arc::new(race::Tally::default()),
    );
    let done = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(race::progress(
        [("stack", Arc::clone(&ours)), ("naive", Arc::clone(&naive))],
        CALLS,
        Arc::clone(&done),
    ));
    let finish = |done: Arc<AtomicU64>| {
        move |report| {
            done.fetch_add(1, Ordering::Relaxed);
            report
        }
    };
    let (ours, naive) = tokio::join!(
        async {
            let r = race::crate_stack(base.to_owned(), CALLS, TASKS, ours).await;
            finish(Arc::clone(&done))(r)
        },
        async {
            let r = race::naive(base.to_owned(), CALLS, TASKS, naive).await;
            finish(Arc::clone(&done))(r)
        },
    );
    progress.await.expect("progress");
    race::print_report(&ours);
    race::print_report(&naive);
}

/// The server's counters per rule, the `Retry-After` values clients saw, and the statuses.
fn summary(handle: &tower_throttle::RateLimitHandle, mut seen: Seen, started: Instant) {
    println!("\n3. Per rule (server counters; Retry-After values seen by act 1's clients):");
    println!(
        "  {:<22} {:>8} {:>8} {:>8}  retry-after",
        "rule", "admitted", "limited", "no key"
    );
    for rule in handle.rules() {
        let mut waits = seen.retry_after.remove(&rule.name).unwrap_or_default();
        waits.sort_unstable();
        waits.dedup();
        let waits = if waits.is_empty() {
            "-".to_owned()
        } else {
            waits
                .iter()
                .map(|s| format!("{s} s"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  {:<22} {:>8} {:>8} {:>8}  {waits}",
            rule.name, rule.admitted, rule.limited, rule.missing_key
        );
    }
    println!("  {:<22} {:>8}", "exempt (GET /v1/jwks)", handle.exempted());
    let statuses: Vec<String> = seen
        .statuses
        .iter()
        .map(|(s, n)| format!("{n} × {s}"))
        .collect();
    println!(
        "\nResponses: {} in {:.1} s",
        statuses.join(", "),
        started.elapsed().as_secs_f64()
    );
}
