//! Two threads hammering one key, and two threads over many keys: time per check per
//! thread, ours vs governor, and exactness (admitted count vs the quota's burst).
//! Run: `cargo bench --bench contention`.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{Quota as GQuota, RateLimiter};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::MemoryStore;
use tower_throttle::Quota;

const PER_THREAD: u32 = 2_000_000;
const BURST: u32 = 1_000_000;

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

fn main() {
    // A burst of 1,000,000 per hour: 4,000,000 attempts within seconds must admit exactly
    // the burst (plus the few that refill meanwhile: at most 1 per 3.6 ms).
    let quota = Quota::new(BURST, Duration::from_secs(3600)).unwrap();
    let params = GcraParams::new(&quota, Duration::ZERO);
    let hasher = Arc::new(std::collections::hash_map::RandomState::new());
    let gquota = GQuota::per_hour(NonZeroU32::new(BURST).unwrap());

    let store = MemoryStore::new();
    let (s, h) = (store.clone(), Arc::clone(&hasher));
    let (ours_hot, ours_hot_admitted) = two_threads(move |_, _| {
        let key = h.hash_one(ip(7));
        s.check_now(&[Check {
            key,
            params,
            shadow: false,
        }])
        .admitted
    });
    let gov = Arc::new(RateLimiter::<IpAddr, _, _>::keyed(gquota));
    let g = Arc::clone(&gov);
    let (gov_hot, gov_hot_admitted) = two_threads(move |_, _| g.check_key(&ip(7)).is_ok());

    let store = MemoryStore::new();
    let (s, h) = (store.clone(), Arc::clone(&hasher));
    let (ours_many, _) = two_threads(move |t, i| {
        let key = h.hash_one(ip((i * 2 + t) % 100_000));
        s.check_now(&[Check {
            key,
            params,
            shadow: false,
        }])
        .admitted
    });
    let gov = Arc::new(RateLimiter::<IpAddr, _, _>::keyed(gquota));
    let g = Arc::clone(&gov);
    let (gov_many, _) = two_threads(move |t, i| g.check_key(&ip((i * 2 + t) % 100_000)).is_ok());

    println!("2 threads × {PER_THREAD} checks; quota burst {BURST} per hour");
    println!("| case                  | tower-throttle ns/check | governor ns/check | ratio |");
    println!("|-----------------------|-------------------------|-------------------|-------|");
    println!(
        "| one hot key           | {ours_hot:>23.1} | {gov_hot:>17.1} | {:>5.2} |",
        ours_hot / gov_hot
    );
    println!(
        "| 100,000 keys          | {ours_many:>23.1} | {gov_many:>17.1} | {:>5.2} |",
        ours_many / gov_many
    );
    println!("admitted on the hot key: tower-throttle {ours_hot_admitted}, governor {gov_hot_admitted} (burst {BURST})");
}
