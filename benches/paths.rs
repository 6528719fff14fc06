//! What the canonical path costs per request: `path::canonicalize` on an already canonical
//! path (the common case: one scan, no allocation), on a spelled one (one allocation), and
//! next to the cheapest allocating normalizer conceivable, a plain copy of the path
//! (`str::to_owned`). Run: `cargo bench --bench paths`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_throttle::path::canonicalize;

fn bench(c: &mut Criterion) {
    let long = "/v1/organizations/org_2aBcDeFgHiJkLmNoPqRsTuVwXyZ/invitations".repeat(3);
    let cases = [
        ("canonical_25B", "/v1/users/user_1/metadata".to_owned()),
        ("spelled_28B", "//v1/users/user%5f1/metadata".to_owned()),
        ("canonical_183B", long),
    ];
    let mut g = c.benchmark_group("canonical_path");
    for (name, path) in &cases {
        g.bench_function(format!("canonicalize/{name}"), |b| {
            b.iter(|| canonicalize(black_box(path)).map(|c| c.len()))
        });
        g.bench_function(format!("to_owned/{name}"), |b| {
            b.iter(|| black_box(path.as_str()).to_owned())
        });
    }
    g.finish();
}

criterion_group! {
    name = paths;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(paths);
