//! The client stack's overhead when nothing is retried: a trivial service answering
//! `200 OK` with an empty body, called bare and wrapped in `HeaderMonitorLayer` +
//! `RetryAfterLayer` + `BackoffLayer`. Run: `cargo bench --bench client_stack`.
//!
//! Both sides are driven the same way: `N` requests built the same way, each sent with
//! `ready().await?.call(req).await?` inside one `block_on` of a tokio current-thread
//! runtime, timed with `iter_custom`. The trivial service reads the request body to its end
//! (as an HTTP client sends it), so the stack's `ReplayBody` pays its keeping cost.
//!
//! Criterion ids are `client_stack/<case>/<bare|stack>`. Before measuring, the bench prints
//! heap allocations per request for each case and side (a counting allocator that only
//! counts while enabled, i.e. outside the timed loops).

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_throttle::backoff::BackoffLayer;
use tower_throttle::headers::{
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use tower_throttle::monitor::HeaderMonitorLayer;
use tower_throttle::retry_after::RetryAfterLayer;

#[path = "support/alloc_count.rs"]
mod alloc_count;

const URL: &str = "http://api.example.com/v1/users";
/// A small JSON body for the POST case.
const POST_BODY: &[u8] =
    br#"{"email_address":["user@example.com"],"first_name":"Ada","last_name":"Lovelace"}"#;

/// Which rate-limit headers the responses of a case carry.
#[derive(Clone, Copy)]
enum Headers {
    None,
    /// The same fields on every response.
    Fixed,
    /// The same policy, and a remaining count that changes with every response (as a real
    /// server's does): a header reader cannot reuse what it read last time.
    Counting,
}

/// One benchmark case: the request sent and which rate-limit headers the response carries.
struct Case {
    name: &'static str,
    post: bool,
    body: &'static [u8],
    headers: Headers,
}

const CASES: [Case; 4] = [
    Case {
        name: "get",
        post: false,
        body: b"",
        headers: Headers::None,
    },
    Case {
        name: "post_small_body",
        post: true,
        body: POST_BODY,
        headers: Headers::None,
    },
    Case {
        name: "get_ratelimit_headers",
        post: false,
        body: b"",
        headers: Headers::Fixed,
    },
    Case {
        name: "get_ratelimit_headers_counting",
        post: false,
        body: b"",
        headers: Headers::Counting,
    },
];

/// The request of a case, built the same way for both sides.
fn request(case: &Case) -> Request<Full<Bytes>> {
    Request::builder()
        .method(if case.post { Method::POST } else { Method::GET })
        .uri(URL)
        .body(Full::new(Bytes::from_static(case.body)))
        .expect("valid request")
}

/// The trivial service: reads the request body to its end, answers `200 OK` with an empty
/// body, optionally with a realistic set of rate-limit headers (both dialects; 57 of 100
/// left, or with `Counting` from 99 down to 20 and round again: no warning, nothing
/// retried).
async fn trivial<B>(req: Request<B>, headers: Headers) -> Result<Response<Empty<Bytes>>, Infallible>
where
    B: Body + Unpin,
{
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        black_box(frame.is_ok());
    }
    let mut res = Response::new(Empty::new());
    if let Headers::Fixed | Headers::Counting = headers {
        let h = res.headers_mut();
        h.insert(X_RATELIMIT_LIMIT, HeaderValue::from_static("100"));
        let (remaining, state) = match headers {
            Headers::Counting => {
                static SENT: AtomicU64 = AtomicU64::new(0);
                let left = 99 - SENT.fetch_add(1, Ordering::Relaxed) % 80;
                let state = format!("\"default\";r={left};t=23");
                (left.into(), state.try_into().expect("valid"))
            }
            _ => (
                HeaderValue::from_static("57"),
                HeaderValue::from_static("\"default\";r=57;t=23"),
            ),
        };
        h.insert(X_RATELIMIT_REMAINING, remaining);
        h.insert(X_RATELIMIT_RESET, HeaderValue::from_static("23"));
        h.insert(
            RATELIMIT_POLICY,
            HeaderValue::from_static("\"default\";q=100;w=60"),
        );
        h.insert(RATELIMIT, state);
    }
    Ok(res)
}

/// Sends `n` requests of `case` through `svc`, one after the other, as a client would.
async fn drive<S, ResB>(svc: &mut S, case: &Case, n: u64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let req = request(case);
        let res = svc
            .ready()
            .await
            .expect("ready")
            .call(req)
            .await
            .expect("response");
        assert!(res.status().is_success());
        black_box(res);
    }
}

/// Times `iters` requests inside one `block_on`.
fn timed<S, ResB>(rt: &tokio::runtime::Runtime, svc: &mut S, case: &Case, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    rt.block_on(drive(svc, case, iters));
    start.elapsed()
}

/// Heap allocations per request (after a warm-up that fills caches and tables).
fn allocs_per_request<S, ResB>(rt: &tokio::runtime::Runtime, svc: &mut S, case: &Case) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
{
    const N: u64 = 1_000;
    rt.block_on(drive(svc, case, N));
    alloc_count::count(|| rt.block_on(drive(svc, case, N))) as f64 / N as f64
}

/// For profilers: `CLIENT_STACK_PROFILE=<case>/<bare|stack>[/<n>]` sends `n` (default
/// 100,000) requests of one case through one side and exits, without criterion, e.g.
/// `CLIENT_STACK_PROFILE=get/stack valgrind --tool=callgrind target/release/deps/client_stack-*`
/// (run it with `n` = 0 too, and subtract, for instructions per request).
fn profile_only(rt: &tokio::runtime::Runtime) -> bool {
    let Ok(spec) = std::env::var("CLIENT_STACK_PROFILE") else {
        return false;
    };
    let mut parts = spec.split('/');
    let (name, side) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let n = parts
        .next()
        .map_or(100_000, |n| n.parse().expect("a count"));
    let case = CASES.iter().find(|c| c.name == name).expect("a case name");
    let headers = case.headers;
    match side {
        "bare" => rt.block_on(drive(
            &mut tower::service_fn(move |req| trivial(req, headers)),
            case,
            n,
        )),
        "stack" => rt.block_on(drive(&mut stack(headers), case, n)),
        _ => panic!("side must be bare or stack"),
    }
    true
}

/// The client stack around the trivial service. The README's order (the gate outermost of
/// the retrying layers), with the monitor outside them as in
/// examples/support/round_trip.rs, so it sees final responses. Defaults everywhere.
fn stack(
    headers: Headers,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Empty<Bytes>>, Error = impl std::fmt::Debug>
{
    ServiceBuilder::new()
        .layer(HeaderMonitorLayer::new())
        .layer(RetryAfterLayer::builder().build().unwrap())
        .layer(BackoffLayer::builder().build().unwrap())
        .service(tower::service_fn(move |req| trivial(req, headers)))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if profile_only(&rt) {
        std::process::exit(0);
    }

    for case in &CASES {
        let headers = case.headers;
        let mut bare = tower::service_fn(move |req| trivial(req, headers));
        let mut stack = stack(headers);

        let bare_allocs = allocs_per_request(&rt, &mut bare, case);
        let stack_allocs = allocs_per_request(&rt, &mut stack, case);
        println!(
            "client_stack/{}: heap allocations per request: bare {bare_allocs:.2}, \
             stack {stack_allocs:.2}",
            case.name
        );

        let mut g = c.benchmark_group(format!("client_stack/{}", case.name));
        g.bench_function("bare", |b| {
            b.iter_custom(|iters| timed(&rt, &mut bare, case, iters))
        });
        g.bench_function("stack", |b| {
            b.iter_custom(|iters| timed(&rt, &mut stack, case, iters))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
