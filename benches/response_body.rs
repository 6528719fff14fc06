//! What reading response bodies costs (`BackoffLayerBuilder::retry_if_body`): the same
//! answers through a `BackoffLayer` that reads only heads and through one that reads the
//! body and asks a predicate, with nothing retried. The caller collects the body in every
//! case, as a real caller would. Run: `cargo bench --bench response_body`.
//!
//! Cases: a 1 KiB JSON answer in one chunk, and a 16 KiB one in 16 chunks of 1 KiB (the
//! read joins them: one copy). Sides: `head_only` (the default layer), `reads_body` (a
//! predicate that looks at the first byte: the cost of the read itself), `reads_json` (a
//! predicate that parses the JSON with serde_json, as examples/support/clari.rs does).
//!
//! Criterion ids are `response_body/<case>/<side>`. Before measuring, the bench prints heap
//! allocations per request for each case and side. For instruction counts:
//! `RESPONSE_BODY_PROFILE=<case>/<side>/<n>` sends `n` requests and exits, without
//! criterion (`bash benches/response_body_callgrind.sh` runs every pair under callgrind).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::stream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, StreamBody};
use tower::{Layer, Service, ServiceExt};
use tower_throttle::backoff::{BackoffLayer, BodyDecision};
use tower_throttle::BoxError;

#[path = "support/alloc_count.rs"]
mod alloc_count;

/// One answer: `chunks` chunks of `chunk` bytes of a JSON job status.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    chunks: usize,
    chunk: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "json_1k",
        chunks: 1,
        chunk: 1024,
    },
    Case {
        name: "json_16k_16_chunks",
        chunks: 16,
        chunk: 1024,
    },
];

const SIDES: [&str; 3] = ["head_only", "reads_body", "reads_json"];

type Chunks = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;
type Answer = Response<StreamBody<Chunks>>;

/// The answer's chunks: `{"status":"COMPLETED","pad":"xxx…"}` cut into `case.chunks`.
fn chunks(case: Case) -> Vec<Bytes> {
    let total = case.chunks * case.chunk;
    let head = br#"{"status":"COMPLETED","pad":""#;
    let mut json = head.to_vec();
    json.resize(total - 2, b'x');
    json.extend_from_slice(b"\"}");
    json.chunks(case.chunk)
        .map(Bytes::copy_from_slice)
        .collect()
}

/// The service under the layer: answers `200` with the case's chunks (reference-counted
/// clones: no copy of the bytes).
fn answer(
    body: Vec<Bytes>,
) -> impl Service<
    Request<tower_throttle::ReplayBody>,
    Response = Answer,
    Error = Infallible,
    Future = std::future::Ready<Result<Answer, Infallible>>,
> + Clone {
    tower::service_fn(move |_req| {
        let frames: Vec<_> = body.iter().cloned().map(|b| Ok(Frame::data(b))).collect();
        std::future::ready(Ok(Response::new(StreamBody::new(stream::iter(frames)))))
    })
}

/// Sends `n` GETs through `svc` and collects each answer, as a caller would.
async fn drive<S, B>(svc: &mut S, n: u64)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    for _ in 0..n {
        let req = Request::get("http://api.test/jobs/42")
            .body(Empty::new())
            .expect("valid request");
        let res = svc
            .ready()
            .await
            .expect("ready")
            .call(req)
            .await
            .expect("response");
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(Into::into)
            .expect("body");
        black_box(body.to_bytes());
    }
}

fn first_byte(_: http::StatusCode, _: &http::HeaderMap, body: &[u8]) -> BodyDecision {
    match body.first() {
        Some(b'[') => BodyDecision::Retry,
        _ => BodyDecision::Return,
    }
}

fn json_status(_: http::StatusCode, _: &http::HeaderMap, body: &[u8]) -> BodyDecision {
    let job: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match job["status"].as_str() {
        Some("PENDING") => BodyDecision::Retry,
        _ => BodyDecision::Return,
    }
}

/// Runs `f` on the side's service for `case` (the services' types differ by side).
macro_rules! with_side {
    ($side:expr, $case:expr, |$svc:ident| $body:expr) => {{
        let inner = answer(chunks($case));
        let layer = || BackoffLayer::builder().budget(None);
        match $side {
            "head_only" => {
                let mut $svc = layer().build().expect("layer").layer(inner);
                $body
            }
            "reads_body" => {
                let mut $svc = layer()
                    .retry_if_body(first_byte)
                    .build()
                    .expect("layer")
                    .layer(inner);
                $body
            }
            "reads_json" => {
                let mut $svc = layer()
                    .retry_if_body(json_status)
                    .build()
                    .expect("layer")
                    .layer(inner);
                $body
            }
            other => panic!("unknown side {other}"),
        }
    }};
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(spec) = std::env::var("RESPONSE_BODY_PROFILE") {
        let parts: Vec<&str> = spec.split('/').collect();
        let case = *CASES
            .iter()
            .find(|c| c.name == parts[0])
            .expect("a case name");
        let n: u64 = parts
            .get(2)
            .map_or(100_000, |n| n.parse().expect("a count"));
        with_side!(parts[1], case, |svc| rt.block_on(drive(&mut svc, n)));
        std::process::exit(0);
    }
    for case in CASES {
        let mut g = c.benchmark_group(format!("response_body/{}", case.name));
        for side in SIDES {
            with_side!(side, case, |svc| {
                rt.block_on(drive(&mut svc, 1_000));
                let allocs =
                    alloc_count::count(|| rt.block_on(drive(&mut svc, 1_000))) as f64 / 1_000.0;
                println!(
                    "response_body/{}/{side}: heap allocations per request: {allocs:.2}",
                    case.name
                );
                g.bench_function(side, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        rt.block_on(drive(&mut svc, iters));
                        start.elapsed()
                    })
                });
            });
        }
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
