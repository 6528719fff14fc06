//! Memory per tracked key at 1,000,000 keys, ours vs governor's keyed limiter, with
//! `IpAddr` keys and API-key string keys, measured with a counting global allocator; then
//! whether memory of evicted keys is returned. Run: `cargo bench --bench memory`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use governor::{Quota as GQuota, RateLimiter};
use support::{record, Row};
use tower_throttle::clock::ManualClock;
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::MemoryStore;
use tower_throttle::Quota;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; this only counts bytes.
// (A counting allocator is the measured need for `unsafe` here; the library forbids it.)
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: u32 = 1_000_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn per_key(before: isize) -> f64 {
    (live() - before) as f64 / f64::from(KEYS)
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

fn api_key(i: u32) -> String {
    format!("sk_live_{i:024}")
}

fn main() {
    let quota = Quota::new(1000, Duration::from_secs(1)).unwrap();
    let params = GcraParams::new(&quota, Duration::ZERO);
    let hasher = std::collections::hash_map::RandomState::new();
    let gquota = GQuota::per_second(NonZeroU32::new(1000).unwrap());
    use std::hash::BuildHasher;

    let clock = ManualClock::new();
    let before = live();
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .max_keys(2 * KEYS as usize)
        .build()
        .unwrap();
    for i in 0..KEYS {
        let key = hasher.hash_one(ip(i));
        store.check_now(&[Check {
            key,
            params,
            shadow: false,
            rule: 0,
        }]);
    }
    let ours_ip = per_key(before);
    assert_eq!(store.len(), KEYS as usize);
    // Evict: every key is idle a second later; the memory must come back.
    clock.advance(Duration::from_secs(1));
    store.sweep();
    let after_sweep = live() - before;
    drop(store);

    // A manual clock that does not move: every key stays live (on a real clock, keys idle
    // after 1 ms would be dropped as the store fills, which is the point of the store but
    // not of this measurement).
    let before = live();
    let store = MemoryStore::builder()
        .clock(ManualClock::new())
        .max_keys(2 * KEYS as usize)
        .build()
        .unwrap();
    for i in 0..KEYS {
        // The layer hashes the key material; the store never holds the string.
        let key = hasher.hash_one(api_key(i));
        store.check_now(&[Check {
            key,
            params,
            shadow: false,
            rule: 0,
        }]);
    }
    let ours_str = per_key(before);
    assert_eq!(store.len(), KEYS as usize);
    drop(store);

    let before = live();
    let gov = RateLimiter::<IpAddr, _, _>::keyed(gquota);
    for i in 0..KEYS {
        let _ = gov.check_key(&ip(i));
    }
    let gov_ip = per_key(before);
    drop(gov);

    let before = live();
    let gov = RateLimiter::<String, _, _>::keyed(gquota);
    for i in 0..KEYS {
        let _ = gov.check_key(&api_key(i));
    }
    let gov_str = per_key(before);
    drop(gov);

    println!("bytes per tracked key at {KEYS} keys (counting allocator)");
    println!("| key kind     | tower-throttle | governor | ratio |");
    println!("|--------------|----------------|----------|-------|");
    println!(
        "| IpAddr       | {ours_ip:>14.1} | {gov_ip:>8.1} | {:>5.2} |",
        ours_ip / gov_ip
    );
    println!(
        "| API key (32) | {ours_str:>14.1} | {gov_str:>8.1} | {:>5.2} |",
        ours_str / gov_str
    );
    println!("after evicting every key: {after_sweep} bytes still held by the store");
    assert!(
        after_sweep < 64 * 1024,
        "evicted keys' memory was not returned: {after_sweep} bytes held"
    );
    let row = |metric, ours, peer| Row {
        metric,
        ours,
        peer,
        peer_name: "governor 0.10 keyed",
        unit: "bytes per key at 1,000,000 keys",
        max_ratio: None,
        max_ours: Some(48.0),
    };
    record(
        "memory",
        &[
            row("IpAddr keys", ours_ip, gov_ip),
            row("API-key string keys", ours_str, gov_str),
        ],
    );
}
