//! Two threads hammering one key, and two threads over many keys: time per check per
//! thread, ours vs governor's keyed limiter, and exactness. Run:
//! `cargo bench --bench contention`.
//!
//! Quotas refill once per 366 days / burst, so nothing refills during the run and the
//! exact answer is known: within the burst every check is admitted (a refusal is a
//! spurious denial), past it exactly `burst` checks are admitted in all. Ours is asserted
//! exact; governor's counts are reported.

mod support;

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{Quota as GQuota, RateLimiter};
use support::{record, Row};
use tower_throttle::clock::{Clock, TokioClock};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::MemoryStore;
use tower_throttle::Quota;

const PER_THREAD: u32 = 2_000_000;
const ATTEMPTS: u64 = 2 * PER_THREAD as u64;
const YEAR: Duration = Duration::from_secs(366 * 86_400);

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

/// Runs `f(thread, i)` on two threads; returns (ns per check per thread, admitted).
fn two_threads<F>(f: F) -> (f64, u64)
where
    F: Fn(u32, u32) -> bool + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let start = Instant::now();
    let handles: Vec<_> = (0..2u32)
        .map(|t| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || (0..PER_THREAD).filter(|&i| f(t, i)).count() as u64)
        })
        .collect();
    let admitted = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let ns = start.elapsed().as_nanos() as f64 / f64::from(PER_THREAD);
    (ns, admitted)
}

/// Ours and governor's limits of `burst` per 366 days.
fn limits(burst: u32) -> (GcraParams, GQuota) {
    let quota = Quota::new(burst, YEAR).unwrap();
    let gquota = GQuota::with_period(YEAR / burst)
        .unwrap()
        .allow_burst(NonZeroU32::new(burst).unwrap());
    (GcraParams::new(&quota, Duration::ZERO), gquota)
}

struct Case {
    name: &'static str,
    ours_ns: f64,
    gov_ns: f64,
    ours_admitted: u64,
    gov_admitted: u64,
    exact: u64,
}

/// Both limiters under the same load: `key(thread, i)` picks the key of each check.
fn case(name: &'static str, burst: u32, key: fn(u32, u32) -> IpAddr, exact: u64) -> Case {
    let (params, gquota) = limits(burst);
    let hasher = std::collections::hash_map::RandomState::new();
    let store = MemoryStore::new();
    let clock = TokioClock::new();
    let (ours_ns, ours_admitted) = two_threads(move |t, i| {
        let check = Check::new(hasher.hash_one(key(t, i)), params);
        store.check_at(clock.now(), &[check]).admitted
    });
    let gov = RateLimiter::<IpAddr, _, _>::keyed(gquota);
    let (gov_ns, gov_admitted) = two_threads(move |t, i| gov.check_key(&key(t, i)).is_ok());
    assert_eq!(
        ours_admitted, exact,
        "{name}: tower-throttle admitted {ours_admitted}, exactly {exact} expected"
    );
    Case {
        name,
        ours_ns,
        gov_ns,
        ours_admitted,
        gov_admitted,
        exact,
    }
}

fn main() {
    let cases = [
        // Burst = attempts: every check must be admitted.
        case(
            "one hot key, within burst",
            ATTEMPTS as u32,
            |_, _| ip(7),
            ATTEMPTS,
        ),
        // The largest burst either limiter accepts: every check must be admitted.
        case(
            "one hot key, burst 2^32 - 1",
            u32::MAX,
            |_, _| ip(7),
            ATTEMPTS,
        ),
        // Burst = a quarter of the attempts: exactly the burst is admitted.
        case(
            "one hot key, past burst",
            (ATTEMPTS / 4) as u32,
            |_, _| ip(7),
            ATTEMPTS / 4,
        ),
        // 100,000 keys, 40 checks each: all admitted.
        case(
            "100,000 keys",
            1_000,
            |t, i| ip((i * 2 + t) % 100_000),
            ATTEMPTS,
        ),
    ];

    println!("2 threads × {PER_THREAD} checks each; nothing refills during the run");
    println!("| case                      | ours ns/check | governor ns/check | ratio | admitted: exact / ours / governor |");
    println!("|---------------------------|---------------|-------------------|-------|-----------------------------------|");
    for c in &cases {
        println!(
            "| {:<25} | {:>13.1} | {:>17.1} | {:>5.2} | {} / {} / {} |",
            c.name,
            c.ours_ns,
            c.gov_ns,
            c.ours_ns / c.gov_ns,
            c.exact,
            c.ours_admitted,
            c.gov_admitted
        );
    }
    let mut rows = Vec::new();
    for c in &cases {
        rows.push(Row {
            metric: c.name,
            ours: c.ours_ns,
            peer: c.gov_ns,
            peer_name: "governor 0.10 keyed",
            unit: "ns per check per thread (2 threads)",
            max_ratio: None,
            max_ours: None,
        });
    }
    for c in &cases {
        rows.push(Row {
            metric: c.name,
            ours: c.ours_admitted.abs_diff(c.exact) as f64,
            peer: c.gov_admitted.abs_diff(c.exact) as f64,
            peer_name: "governor 0.10 keyed",
            unit: "wrong decisions (|admitted - exact|)",
            max_ratio: None,
            max_ours: Some(0.0),
        });
    }
    record("contention", &rows);
}
