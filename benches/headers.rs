//! The response-header readers against the worst inputs we can build, from 1 KB to 400 KB
//! (hyper 1 reads at most 8 KiB + 400 KiB of head by default, `DEFAULT_MAX_BUFFER_SIZE`):
//! time per KB must stay flat (the readers are linear in the header size).
//!
//! First a table of ns/KB per input and size with the ratio 400 KB / 1 KB (a plain timed
//! loop of at least 0.3 s per cell, or one call when one call takes longer), then the same
//! cases under criterion (throughput in bytes), unless `HEADERS_BENCH_TABLE_ONLY` is set
//! (needed for code whose reading is quadratic: a criterion run would take hours).
//!
//! `cargo bench --bench headers` (table only: `HEADERS_BENCH_TABLE_ONLY=1 cargo bench
//! --bench headers`).

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use tower_throttle::headers::{parse_rate_limit, retry_hint, DEFAULT_HINT_CAP};

/// Sizes measured, in KB (1 KB = 1000 bytes).
const SIZES_KB: [usize; 4] = [1, 10, 100, 400];

/// Items `f(i)` joined with `", "` until the text reaches `bytes` bytes.
fn list(bytes: usize, f: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(bytes + 64);
    let mut i = 0;
    while out.len() < bytes {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&f(i));
        i += 1;
    }
    out
}

fn headers(pairs: Vec<(&'static str, String)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let value = HeaderValue::from_str(&value).expect("a valid header value");
        map.append(HeaderName::from_static(name), value);
    }
    map
}

/// One worst case: its name and the response headers of about `bytes` bytes.
struct Case {
    name: &'static str,
    build: fn(usize) -> HeaderMap,
}

const CASES: &[Case] = &[
    Case {
        // Every state names a policy that does not exist.
        name: "mismatched_names",
        build: |n| {
            headers(vec![
                (
                    "ratelimit-policy",
                    list(n / 2, |i| format!("\"p{i}\";q=10;w=60")),
                ),
                ("ratelimit", list(n / 2, |i| format!("\"s{i}\";r=5;t=9"))),
            ])
        },
    },
    Case {
        // Names that match, states in the reverse order of the policies.
        name: "many_policies_reversed",
        build: |n| {
            let count = list(n / 2, |i| format!("\"p{i}\";q=10;w=60"))
                .matches(',')
                .count()
                + 1;
            headers(vec![
                (
                    "ratelimit-policy",
                    list(n / 2, |i| format!("\"p{i}\";q=10;w=60")),
                ),
                (
                    "ratelimit",
                    list(n / 2, |i| {
                        format!("\"p{}\";r=5;t=9", count.saturating_sub(i + 1))
                    }),
                ),
            ])
        },
    },
    Case {
        // One name, repeated by every policy and every state.
        name: "duplicate_names",
        build: |n| {
            headers(vec![
                (
                    "ratelimit-policy",
                    list(n / 2, |_| "\"a\";q=10;w=60".to_owned()),
                ),
                ("ratelimit", list(n / 2, |_| "\"a\";r=5;t=9".to_owned())),
            ])
        },
    },
    Case {
        // Two long names differing in their last byte: each comparison reads them whole.
        name: "long_near_names",
        build: |n| {
            let name = "n".repeat(n / 4);
            headers(vec![
                (
                    "ratelimit-policy",
                    format!("\"{name}a\";q=10, \"{name}b\";q=10"),
                ),
                ("ratelimit", format!("\"{name}c\";r=1, \"{name}d\";r=1")),
            ])
        },
    },
    Case {
        // Long runs of optional whitespace in plain and Structured Field values.
        name: "whitespace_runs",
        build: |n| {
            let pad = " \t".repeat(n / 16);
            headers(vec![
                ("x-ratelimit-limit", format!("1{pad}")),
                ("x-ratelimit-remaining", format!("{pad}5{pad}")),
                ("x-ratelimit-reset", format!("{pad}64.57{pad}")),
                (
                    "ratelimit",
                    format!("\"a\";r=1,{}\"b\";r=2", " ".repeat(n / 4)),
                ),
                ("retry-after", format!("{pad}7{pad}")),
            ])
        },
    },
    Case {
        // Long digit strings in every numeric field.
        name: "long_digits",
        build: |n| {
            let digits = "1".repeat(n / 6);
            headers(vec![
                ("x-ratelimit-limit", digits.clone()),
                ("x-ratelimit-remaining", digits.clone()),
                ("x-ratelimit-reset", format!("{digits}.{digits}")),
                ("ratelimit-reset", digits.clone()),
                ("retry-after-ms", digits),
            ])
        },
    },
    Case {
        // A Go-style duration of many parts (`1s1s1s…`).
        name: "long_go_duration",
        build: |n| headers(vec![("x-ratelimit-reset", "1m1s".repeat(n / 4))]),
    },
];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Everything a client reads from a response: the rate-limit reading and the retry hint.
fn read(map: &HeaderMap) {
    black_box(parse_rate_limit(black_box(map), now()));
    black_box(retry_hint(black_box(map), now(), DEFAULT_HINT_CAP));
}

/// Size of the headers in bytes (names, values and `": "` + CRLF per line).
fn size(map: &HeaderMap) -> usize {
    map.iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// ns per KB of reading `map`: a loop of at least 0.3 s (one call if it takes longer).
fn ns_per_kb(map: &HeaderMap) -> f64 {
    let start = Instant::now();
    let mut calls = 0u32;
    while calls == 0 || start.elapsed() < Duration::from_millis(300) {
        read(map);
        calls += 1;
    }
    let per_call = start.elapsed().as_nanos() as f64 / f64::from(calls);
    per_call / (size(map) as f64 / 1000.0)
}

fn table() {
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "headers ns/KB", "1 KB", "10 KB", "100 KB", "400 KB", "400/1"
    );
    for case in CASES {
        let cells: Vec<f64> = SIZES_KB
            .iter()
            .map(|kb| ns_per_kb(&(case.build)(kb * 1000)))
            .collect();
        println!(
            "{:<24} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9.2}",
            case.name,
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[3] / cells[0]
        );
    }
}

fn bench(c: &mut Criterion) {
    table();
    if std::env::var_os("HEADERS_BENCH_TABLE_ONLY").is_some() {
        return;
    }
    for case in CASES {
        let mut g = c.benchmark_group(format!("headers/{}", case.name));
        for kb in SIZES_KB {
            let map = (case.build)(kb * 1000);
            g.throughput(Throughput::Bytes(size(&map) as u64));
            g.bench_with_input(
                BenchmarkId::from_parameter(format!("{kb}KB")),
                &map,
                |b, m| b.iter(|| read(m)),
            );
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
