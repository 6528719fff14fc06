//! Memory per tracked key at 1,000,000 keys, ours vs governor's keyed limiter, with
//! `IpAddr` keys and API-key string keys, measured with a counting global allocator; then
//! whether memory of evicted keys is returned; then what a key flood costs (see
//! `flood`). Run: `cargo bench --bench memory`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use governor::{Quota as GQuota, RateLimiter};
use support::{record, Row};
use tower_throttle::clock::{Clock, ManualClock};
use tower_throttle::gcra::{Check, GcraParams};
use tower_throttle::store::MemoryStore;
use tower_throttle::store::DEFAULT_MAX_KEYS;
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
        .max_keys(2 * KEYS as usize)
        .build()
        .unwrap();
    for i in 0..KEYS {
        let key = hasher.hash_one(ip(i));
        store.check_at(clock.now(), &[Check::new(key, params)]);
    }
    let ours_ip = per_key(before);
    assert_eq!(store.len(), KEYS as usize);
    // Evict: every key is idle a second later; the memory must come back.
    clock.advance(Duration::from_secs(1));
    store.sweep(clock.now());
    let after_sweep = live() - before;
    drop(store);

    // A manual clock that does not move: every key stays live (on a real clock, keys idle
    // after 1 ms would be dropped as the store fills, which is the point of the store but
    // not of this measurement).
    let before = live();
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .max_keys(2 * KEYS as usize)
        .build()
        .unwrap();
    for i in 0..KEYS {
        // The layer hashes the key material; the store never holds the string.
        let key = hasher.hash_one(api_key(i));
        store.check_at(clock.now(), &[Check::new(key, params)]);
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
    flood();
}

/// Nanoseconds per call of `f(i)` over `n` calls.
fn ns_per(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = std::time::Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

/// A flood of new keys against a store of the default bound (1,048,576 keys), ours vs
/// governor's keyed limiter, both on a clock that does not move (so no key ever goes
/// idle: the worst case for a bounded store) and with `IpAddr` keys hashed as the layer
/// does. Phases: 1,000,000 keys of an hourly rule arrive (normal); those keys are checked
/// again (known keys, normal); 2,000,000 new keys of another hourly rule arrive (the
/// flood: ours stores what fits and overflows the rest, governor stores them all); then
/// the flood goes on, one new key between every two checks of known keys. Each phase is
/// timed as one loop; memory is what the allocator holds after the flood.
fn flood() {
    const FLOOD: u32 = 2 * KEYS;
    let hourly = GcraParams::new(&Quota::per_hour(1_000).unwrap(), Duration::ZERO);
    let hasher = std::collections::hash_map::RandomState::new();
    use std::hash::BuildHasher;
    let check = |key: IpAddr, rule: u64| Check::new(hasher.hash_one(key), hourly).with_rule(rule);
    let known = |i: u32| ip(i.wrapping_mul(7919) % KEYS);
    let flooder = |i: u32| ip(KEYS + i);

    let before = live();
    let clock = ManualClock::new();
    let store = MemoryStore::builder().build().unwrap();
    let ours_new = ns_per(KEYS, |i| {
        std::hint::black_box(store.check_at(clock.now(), &[check(ip(i), 1)]));
    });
    let ours_known = ns_per(KEYS, |i| {
        std::hint::black_box(store.check_at(clock.now(), &[check(known(i), 1)]));
    });
    let ours_flood = ns_per(FLOOD, |i| {
        std::hint::black_box(store.check_at(clock.now(), &[check(flooder(i), 2)]));
    });
    let ours_mixed = ns_per(KEYS, |i| {
        std::hint::black_box(store.check_at(clock.now(), &[check(flooder(FLOOD + i), 2)]));
        std::hint::black_box(store.check_at(clock.now(), &[check(known(i), 1)]));
        std::hint::black_box(store.check_at(clock.now(), &[check(known(i + 1), 1)]));
    });
    let ours_bytes = live() - before;
    let ours_held = store.len();
    let overflowed = store.evictions().overflowed;
    assert!(ours_held <= DEFAULT_MAX_KEYS);
    drop(store);

    let gquota = GQuota::per_hour(NonZeroU32::new(1_000).unwrap());
    let before = live();
    let gov = RateLimiter::dashmap_with_clock(gquota, FakeRelativeClock::default());
    let gov_new = ns_per(KEYS, |i| {
        std::hint::black_box(gov.check_key(&ip(i)).is_ok());
    });
    let gov_known = ns_per(KEYS, |i| {
        std::hint::black_box(gov.check_key(&known(i)).is_ok());
    });
    let gov_flood = ns_per(FLOOD, |i| {
        std::hint::black_box(gov.check_key(&flooder(i)).is_ok());
    });
    let gov_mixed = ns_per(KEYS, |i| {
        std::hint::black_box(gov.check_key(&flooder(FLOOD + i)).is_ok());
        std::hint::black_box(gov.check_key(&known(i)).is_ok());
        std::hint::black_box(gov.check_key(&known(i + 1)).is_ok());
    });
    // What governor offers to bound its memory: it keeps every key that is not idle.
    gov.retain_recent();
    let gov_bytes = live() - before;
    let gov_held = gov.len();
    drop(gov);

    let mb = |b: isize| b as f64 / 1e6;
    println!();
    println!("key flood: 1,000,000 keys, then 3,000,000 new keys (clock stopped: none idle)");
    println!("| phase                          | tower-throttle | governor | ratio |");
    println!("|--------------------------------|----------------|----------|-------|");
    for (phase, ours, peer) in [
        ("new key, store not full (ns)", ours_new, gov_new),
        ("known key, normal (ns)", ours_known, gov_known),
        ("new key during the flood (ns)", ours_flood, gov_flood),
        ("1 flood + 2 known keys (ns)", ours_mixed, gov_mixed),
        ("memory after the flood (MB)", mb(ours_bytes), mb(gov_bytes)),
    ] {
        println!(
            "| {phase:<30} | {ours:>14.1} | {peer:>8.1} | {:>5.2} |",
            ours / peer
        );
    }
    println!(
        "keys held: ours {ours_held} (bound {DEFAULT_MAX_KEYS}; {overflowed} checks overflowed), \
         governor {gov_held}; bytes per held key: ours {:.1}, governor {:.1}",
        ours_bytes as f64 / ours_held as f64,
        gov_bytes as f64 / gov_held as f64,
    );
    let row = |metric, ours, peer, unit| Row {
        metric,
        ours,
        peer,
        peer_name: "governor 0.10 keyed (fake clock)",
        unit,
        max_ratio: None,
        max_ours: None,
    };
    record(
        "flood",
        &[
            row(
                "flood: new key, store not full",
                ours_new,
                gov_new,
                "ns per check",
            ),
            row(
                "flood: known key, normal",
                ours_known,
                gov_known,
                "ns per check",
            ),
            row(
                "flood: new key, store full",
                ours_flood,
                gov_flood,
                "ns per check",
            ),
            row(
                "flood: 1 new + 2 known keys, store full",
                ours_mixed,
                gov_mixed,
                "ns per 3 checks",
            ),
            row(
                "flood: memory after 3,000,000 new keys",
                mb(ours_bytes),
                mb(gov_bytes),
                "MB held",
            ),
        ],
    );
}
