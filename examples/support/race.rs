//! The demo's second act: the crate's client stack and a naive client, side by side, each
//! sending the same requests with its own API key to the Clerk stub server over loopback.
//! Live progress while they run, then one table per client.
#![allow(dead_code)]

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_throttle::key::BearerToken;
use tower_throttle::monitor::MonitorHandle;
use tower_throttle::{ClientStack, Quota, RateLimitLayer, ReplayBody, Rule};

/// Clerk's backend limit on a development instance: 100 requests per 10 s per secret key.
pub const LIMIT: u32 = 100;
/// The window of [`LIMIT`].
pub const WINDOW: Duration = Duration::from_secs(10);

/// The least time the server allows for `n` requests with one key: a burst of 100, then
/// one every 100 ms.
pub fn least_time(n: u64) -> Duration {
    (WINDOW / LIMIT) * u32::try_from(n.saturating_sub(u64::from(LIMIT))).unwrap_or(u32::MAX)
}

/// What one client did, updated live.
#[derive(Default)]
pub struct Tally {
    /// Requests that went out on the wire (retries included).
    pub sent: AtomicU64,
    /// 429s the server had to send.
    pub refused: AtomicU64,
    /// Calls that ended in a 2xx for the caller.
    pub succeeded: AtomicU64,
    /// Calls that ended in an error or a non-2xx for the caller.
    pub failed: AtomicU64,
}

impl Tally {
    fn get(&self, counter: impl Fn(&Tally) -> &AtomicU64) -> u64 {
        counter(self).load(Ordering::Relaxed)
    }
}

/// Counts what reaches the wire: wraps the HTTP client under every other layer.
#[derive(Clone)]
struct Wire<S> {
    inner: S,
    tally: Arc<Tally>,
}

impl<S, B> Service<Request<B>> for Wire<S>
where
    S: Service<Request<B>, Response = Response<Incoming>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Incoming>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let tally = Arc::clone(&self.tally);
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(res)
        })
    }
}

/// One finished run.
pub struct Report {
    /// The client's name.
    pub name: &'static str,
    /// Calls made (what the callers asked for).
    pub calls: u64,
    /// Its tally.
    pub tally: Arc<Tally>,
    /// From the first call to the last answer.
    pub elapsed: Duration,
    /// The monitor's counters, for the crate's stack.
    pub monitor: Option<MonitorHandle>,
}

fn get(base: &str, key: &str) -> Request<Full<Bytes>> {
    Request::get(format!("{base}/v1/users"))
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

/// The crate's client stack (`ClientStack`), outermost first: the Retry-After gate
/// (requests to an endpoint the server blocked wait before anything else), backoff
/// (transport errors and 5xx, with jitter), pacing with Clerk's documented limit (so
/// retries are paced again, and the server rarely has to refuse), the header monitor (it
/// sees every answer on the wire), then the HTTP client.
pub async fn crate_stack(base: String, calls: u64, tasks: u64, tally: Arc<Tally>) -> Report {
    let pacing = RateLimitLayer::builder()
        .rule(Rule::new("instance", Quota::new(LIMIT, WINDOW).expect("quota")).key(BearerToken))
        .build()
        .expect("valid rule")
        .pacing()
        .max_queue_wait(Duration::from_secs(60))
        .build()
        .expect("valid pacing");
    let stack = ClientStack::builder(pacing).build();
    let handle = stack.monitor_handle();
    let http = Client::builder(TokioExecutor::new()).build_http::<ReplayBody>();
    let svc = ServiceBuilder::new().layer(stack).service(Wire {
        inner: http,
        tally: Arc::clone(&tally),
    });
    let call = move || {
        let (svc, req) = (svc.clone(), get(&base, "sk_test_paced"));
        async move { matches!(svc.oneshot(req).await, Ok(res) if res.status().is_success()) }
    };
    drive(
        "tower-throttle client stack",
        calls,
        tasks,
        tally,
        Some(handle),
        call,
    )
    .await
}

/// A naive client: a hand-written loop that sends, and on a 429 sleeps for the server's
/// `Retry-After` (1 s when absent) and sends again. It honors the server, but does not pace.
pub async fn naive(base: String, calls: u64, tasks: u64, tally: Arc<Tally>) -> Report {
    let http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let svc = Wire {
        inner: http,
        tally: Arc::clone(&tally),
    };
    let call = move || {
        let (svc, base) = (svc.clone(), base.clone());
        async move {
            loop {
                let req = Request::get(format!("{base}/v1/users"))
                    .header("authorization", "Bearer sk_test_naive")
                    .body(Empty::<Bytes>::new())
                    .expect("valid request");
                match svc.clone().oneshot(req).await {
                    Ok(res) if res.status() == StatusCode::TOO_MANY_REQUESTS => {
                        let secs = res
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .unwrap_or(1);
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                    }
                    Ok(res) => return res.status().is_success(),
                    Err(_) => return false,
                }
            }
        }
    };
    let name = "naive client (retry on 429 only)";
    drive(name, calls, tasks, tally, None, call).await
}

/// Makes `calls` calls from `tasks` tasks, each call a `call()` that says whether it
/// succeeded, counting the outcomes in `tally`.
async fn drive<F, Fut>(
    name: &'static str,
    calls: u64,
    tasks: u64,
    tally: Arc<Tally>,
    monitor: Option<MonitorHandle>,
    call: F,
) -> Report
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (call, tally) = (call.clone(), Arc::clone(&tally));
            tokio::spawn(async move {
                for _ in 0..calls / tasks {
                    let counter = if call().await {
                        &tally.succeeded
                    } else {
                        &tally.failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    Report {
        name,
        calls,
        tally,
        elapsed: start.elapsed(),
        monitor,
    }
}

/// Prints both clients' progress until `done` says both finished: updating lines on a
/// terminal, a line every 2 s otherwise (a log file or a pipe).
pub async fn progress(clients: [(&'static str, Arc<Tally>); 2], calls: u64, done: Arc<AtomicU64>) {
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let every = if tty {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    };
    let mut drawn: Option<Instant> = None;
    loop {
        let finished = done.load(Ordering::Relaxed) == 2;
        if finished || drawn.is_none_or(|at| at.elapsed() >= every) {
            draw(&clients, calls, start, tty && drawn.is_some());
            drawn = Some(Instant::now());
        }
        if finished {
            return;
        }
        // Checked often, so the last lines are drawn as soon as both clients finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes the two progress lines (over the last two when `overwrite`).
fn draw(clients: &[(&'static str, Arc<Tally>); 2], calls: u64, start: Instant, overwrite: bool) {
    {
        let mut out = std::io::stdout().lock();
        if overwrite {
            // Back to the first of the two lines written last time.
            let _ = write!(out, "\x1b[2A");
        }
        for (name, tally) in clients {
            let ok = tally.get(|t| &t.succeeded);
            let filled = usize::try_from(ok * 30 / calls.max(1)).unwrap_or(30);
            let _ = writeln!(
                out,
                "  {name:<8} [{:<30}] {ok:>4}/{calls} ok  {:>5} sent  {:>5} × 429  {:>5.1} s\x1b[K",
                "#".repeat(filled),
                tally.get(|t| &t.sent),
                tally.get(|t| &t.refused),
                start.elapsed().as_secs_f64(),
            );
        }
        let _ = out.flush();
    }
}

/// One client's table.
pub fn print_report(report: &Report) {
    let t = &report.tally;
    let least = least_time(report.calls);
    println!("\n  {}", report.name);
    println!("  {:<34} {:>10}", "calls made", report.calls);
    println!("  {:<34} {:>10}", "requests sent", t.get(|t| &t.sent));
    println!(
        "  {:<34} {:>10}",
        "429s the server had to send",
        t.get(|t| &t.refused)
    );
    println!(
        "  {:<34} {:>10}",
        "successful calls",
        t.get(|t| &t.succeeded)
    );
    println!("  {:<34} {:>10}", "failed calls", t.get(|t| &t.failed));
    println!(
        "  {:<34} {:>8.1} s",
        "elapsed",
        report.elapsed.as_secs_f64()
    );
    println!(
        "  {:<34} {:>8.1} s  ({:.0} % of the allowed throughput)",
        "least time the limit allows",
        least.as_secs_f64(),
        100.0 * least.as_secs_f64() / report.elapsed.as_secs_f64().max(1e-9)
    );
    if let Some(monitor) = &report.monitor {
        let stats = monitor.stats();
        println!(
            "  {:<34} {:>10}  (answers with the quota low / used up or refused)",
            "monitor: warnings / hits",
            format!("{} / {}", stats.warnings, stats.hits)
        );
    }
}
