//! One keyed check: tower-throttle's in-memory store vs governor's keyed (DashMap) limiter,
//! both with their default clocks and both with a manual/fake clock, on one hot key and
//! over 1,000,000 keys. Ours is also measured from a task of a multi_thread runtime, where
//! the default clock's source check runs its task cache. Run: `cargo bench --bench engine`.
//!
//! With `HOT_KEY_CHECKS=N` set, the binary instead runs N hot-key checks on a manual clock
//! (two-limit checks with `HOT_KEY_PAIRS=1`) and exits; with `CLOCK_READS=N`, N readings
//! of the default clock (`CLOCK=governor`: governor's default clock; `CLOCK_IN_TASK=1`:
//! from a task of a multi_thread runtime). Loops for callgrind, whose instruction counts
//! stay exact on a shared machine (see BENCHMARKS.md).

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, Criterion};
use governor::clock::FakeRelativeClock;
use governor::clock::{Clock as _, Reference as _};
use governor::{Quota as GQuota, RateLimiter};
use tower_throttle::clock::{Clock, ManualClock, TokioClock};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::MemoryStore;
use tower_throttle::Quota;

const KEYS: u32 = 1_000_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

/// Our keyed check: read the clock and hash the key (keyed SipHash), as the layer does,
/// then decide.
fn ours(
    store: &MemoryStore,
    clock: &impl Clock,
    hasher: &std::collections::hash_map::RandomState,
    params: GcraParams,
    key: &IpAddr,
) -> bool {
    let now = clock.now();
    let check = Check::new(hasher.hash_one(key), params);
    store.check_at(now, &[check]).admitted
}

fn bench(c: &mut Criterion) {
    let quota = Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap();
    let params = GcraParams::new(&quota, Duration::ZERO);
    let gquota = GQuota::per_second(NonZeroU32::MAX);
    let hasher = std::collections::hash_map::RandomState::new();
    let hot = ip(7);

    let mut g = c.benchmark_group("hot_key");
    let store = MemoryStore::builder()
        .max_keys(2 * KEYS as usize)
        .build()
        .unwrap();
    let clock = TokioClock::new();
    g.bench_function("tower_throttle/default_clock", |b| {
        b.iter(|| ours(&store, &clock, &hasher, params, &hot))
    });
    // The same store read from a task of a multi_thread runtime (what servers run): the
    // clock's source check hits its per-thread task cache.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    g.bench_function("tower_throttle/default_clock_in_task", |b| {
        b.iter_custom(|iters| {
            let (store, hasher) = (store.clone(), hasher.clone());
            let clock = TokioClock::new();
            rt.block_on(rt.spawn(async move {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(ours(&store, &clock, &hasher, params, &hot));
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    let manual = MemoryStore::new();
    let manual_clock = ManualClock::new();
    g.bench_function("tower_throttle/manual_clock", |b| {
        b.iter(|| ours(&manual, &manual_clock, &hasher, params, &hot))
    });
    let gov = RateLimiter::<IpAddr, _, _>::keyed(gquota);
    g.bench_function("governor/default_clock", |b| {
        b.iter(|| gov.check_key(&hot).is_ok())
    });
    let gov_fake = RateLimiter::dashmap_with_clock(gquota, FakeRelativeClock::default());
    g.bench_function("governor/fake_clock", |b| {
        b.iter(|| gov_fake.check_key(&hot).is_ok())
    });
    g.finish();

    // Two limits on one request (a per-IP rule and a global rule, as a server would set),
    // both keys hot. Ours decides both atomically (all or nothing); governor has no such
    // operation, so its side is a keyed check followed by an unkeyed one (what stacking
    // two tower_governor layers does, consuming the first even when the second refuses).
    let mut g = c.benchmark_group("two_limits");
    let global_key = hasher.hash_one("global");
    g.bench_function("tower_throttle/default_clock", |b| {
        b.iter(|| {
            let per_ip = Check::new(hasher.hash_one(hot), params);
            let global = Check::new(global_key, params);
            store.check_at(clock.now(), &[per_ip, global]).admitted
        })
    });
    let gov_global = RateLimiter::direct(gquota);
    g.bench_function("governor/default_clock", |b| {
        b.iter(|| gov.check_key(&hot).is_ok() && gov_global.check().is_ok())
    });
    g.finish();

    let mut g = c.benchmark_group("1M_keys");
    let keys: Vec<IpAddr> = (0..KEYS).map(ip).collect();
    for k in &keys {
        ours(&store, &clock, &hasher, params, k);
        let _ = gov.check_key(k);
    }
    g.bench_function("tower_throttle/default_clock", |b| {
        let mut i = 0usize;
        b.iter_batched(
            || {
                i = (i + 7919) % keys.len();
                i
            },
            |i| ours(&store, &clock, &hasher, params, &keys[i]),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("governor/default_clock", |b| {
        let mut i = 0usize;
        b.iter_batched(
            || {
                i = (i + 7919) % keys.len();
                i
            },
            |i| gov.check_key(&keys[i]).is_ok(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = engine;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
/// `HOT_KEY_CHECKS` mode: N checks of one hot key (or of a hot pair) and nothing else.
fn hot_key_loop(n: u64, pairs: bool) {
    let store = MemoryStore::new();
    let clock = ManualClock::new();
    let quota = Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap();
    let params = GcraParams::new(&quota, Duration::ZERO);
    // A fixed-key hasher: the same work in every run.
    let hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let check = |key: u64| Check::new(key, params);
    let mut admitted = 0u64;
    for _ in 0..n {
        let hot = check(hasher.hash_one(std::hint::black_box(7u32)));
        let d = if pairs {
            store.check_at(clock.now(), std::hint::black_box(&[hot, check(99)]))
        } else {
            store.check_at(clock.now(), std::hint::black_box(&[hot]))
        };
        admitted += u64::from(d.admitted);
    }
    println!("{admitted} of {n} admitted");
}

/// `CLOCK_READS` mode: N readings of a default clock and nothing else.
fn clock_loop(n: u64, governor: bool, in_task: bool) {
    let run = move || {
        let mut sum = 0u64;
        if governor {
            let clock = governor::clock::DefaultClock::default();
            let start = clock.now();
            for _ in 0..n {
                let d = std::hint::black_box(&clock).now().duration_since(start);
                sum = sum.wrapping_add(d.as_u64());
            }
        } else {
            let clock = TokioClock::new();
            for _ in 0..n {
                sum = sum.wrapping_add(std::hint::black_box(&clock).now().as_nanos());
            }
        }
        sum
    };
    let sum = if in_task {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(rt.spawn(async move { run() })).unwrap()
    } else {
        run()
    };
    println!("{n} clock readings (checksum {})", sum & 1);
}

fn main() {
    if let Some(n) = std::env::var("CLOCK_READS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let governor = std::env::var("CLOCK").is_ok_and(|c| c == "governor");
        return clock_loop(n, governor, std::env::var_os("CLOCK_IN_TASK").is_some());
    }
    if let Some(n) = std::env::var("HOT_KEY_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return hot_key_loop(n, std::env::var_os("HOT_KEY_PAIRS").is_some());
    }
    engine();
    Criterion::default().configure_from_args().final_summary();
}
