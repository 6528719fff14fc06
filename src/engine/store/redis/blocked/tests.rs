use std::time::{Duration, Instant as StdInstant};

use tokio::time::Instant;

use super::*;

fn refusal(retry_after: Duration) -> Decision {
    Decision {
        admitted: false,
        denied_mask: 0b10,
        retry_after,
        headline: LimitState {
            index: 1,
            remaining: 0,
            reset_after: retry_after + Duration::from_secs(1),
            retry_after,
        },
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_full_cache_costs_one_bucket_per_operation() {
    let cache = BlockedCache::new(1024);
    let t0 = Instant::now();
    let capacity = cache.stats().capacity;
    assert_eq!(capacity, 1024);
    // At empty: one insert examines one bucket.
    cache.insert(0, &refusal(HOUR), t0);
    assert_eq!(cache.stats().slots_examined, BUCKET_SLOTS as u64);
    // Fill to ten times the capacity with live refusals.
    let n = 10 * capacity as u64;
    for set in 1..n {
        cache.insert(set, &refusal(HOUR), t0);
    }
    let full = cache.stats();
    assert_eq!(full.entries, capacity, "bounded");
    assert_eq!(full.inserts, n);
    // Every insert beyond the capacity replaced exactly one entry...
    assert_eq!(full.replaced, n - capacity as u64);
    // ... and cost exactly one bucket, as at empty.
    assert_eq!(full.slots_examined, n * BUCKET_SLOTS as u64);
    // Lookups at full cost at most one bucket each, hits and misses alike.
    for set in n - 100..n + 100 {
        cache.lookup(set, t0);
    }
    let after = cache.stats();
    assert_eq!(after.lookups, 200);
    assert!(after.slots_examined - full.slots_examined <= 200 * BUCKET_SLOTS as u64);
    // The latest refusal is always kept (only later inserts could replace it).
    assert!(cache.lookup(n - 1, t0).is_some());
}

#[test]
fn a_full_bucket_replaces_the_entry_expiring_first() {
    let cache = BlockedCache::new(BUCKET_SLOTS); // one shard, one bucket
    let t0 = Instant::now();
    for set in 0..BUCKET_SLOTS as u64 {
        cache.insert(set, &refusal(Duration::from_secs(10 + set)), t0);
    }
    cache.insert(100, &refusal(HOUR), t0);
    assert!(
        cache.lookup(0, t0).is_none(),
        "the first to expire was replaced"
    );
    for set in 1..BUCKET_SLOTS as u64 {
        assert!(cache.lookup(set, t0).is_some(), "set {set} kept");
    }
    assert!(cache.lookup(100, t0).is_some());
    assert_eq!(cache.stats().replaced, 1);
}

#[test]
fn entries_expire_at_their_retry_time_and_replay_shorter_waits() {
    let cache = BlockedCache::new(64);
    let t0 = Instant::now();
    cache.insert(7, &refusal(Duration::from_secs(10)), t0);
    let d = cache.lookup(7, t0 + Duration::from_secs(4)).unwrap();
    assert!(!d.admitted);
    assert_eq!(d.denied_mask, 0b10);
    assert_eq!(d.retry_after, Duration::from_secs(6));
    assert_eq!(d.headline.retry_after, Duration::from_secs(6));
    assert_eq!(d.headline.reset_after, Duration::from_secs(7));
    assert_eq!(d.headline.index, 1);
    assert!(cache.lookup(7, t0 + Duration::from_secs(10)).is_none());
    assert_eq!(cache.stats().entries, 0, "an expired entry frees its slot");
    // Admissions and waits of zero are never stored.
    cache.insert(8, &Decision::default(), t0);
    cache.insert(9, &refusal(Duration::ZERO), t0);
    assert_eq!(cache.stats().inserts, 1, "only the first refusal");
}

#[test]
fn the_default_capacity_is_sharded() {
    let cache = BlockedCache::new(100_000);
    assert_eq!(cache.shards.len(), MAX_SHARDS);
    assert!(cache.stats().capacity >= 100_000);
    assert!(cache.stats().capacity < 100_000 + MAX_SHARDS * BUCKET_SLOTS);
    assert_eq!(BlockedCache::new(1).stats().capacity, BUCKET_SLOTS);
}

/// A plain cache, as the baseline of the measurement: one map under one
/// mutex; a refusal that finds it full scans every entry for expired ones.
struct ScanWhenFull(std::sync::Mutex<std::collections::HashMap<u64, (Instant, Decision)>>);

impl ScanWhenFull {
    const MAX: usize = 100_000;

    fn insert(&self, set: u64, decision: &Decision, now: Instant) {
        let mut map = self.0.lock().unwrap();
        if map.len() >= Self::MAX {
            map.retain(|_, (until, _)| *until > now);
            if map.len() >= Self::MAX {
                return;
            }
        }
        map.insert(set, (now + decision.retry_after, *decision));
    }
}

/// The figure of the notes: ns per stored refusal and per cached lookup, at an empty and
/// at a full cache of the default capacity, beside the cache it replaced.
/// `cargo test --release --features redis --lib blocked -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn ns_per_operation_at_empty_and_full() {
    fn report(label: &str, n: u64, started: StdInstant) {
        let ns = started.elapsed().as_nanos() as f64 / n as f64;
        println!("{label}: {ns:.0} ns per operation");
    }
    let t0 = Instant::now();
    let cache = BlockedCache::new(100_000);
    let run = |from: u64, n: u64, insert: bool| {
        let started = StdInstant::now();
        for set in from..from + n {
            if insert {
                cache.insert(set, &refusal(HOUR), t0 + Duration::from_nanos(set));
            } else {
                std::hint::black_box(cache.lookup(set, t0));
            }
        }
        started
    };
    report(
        "insert, empty cache (first 10,000, buckets allocated)",
        10_000,
        run(0, 10_000, true),
    );
    report("lookup, 10% full", 10_000, run(0, 10_000, false));
    report(
        "fill: 990,000 more inserts",
        990_000,
        run(10_000, 990_000, true),
    );
    report(
        "insert, full cache (next 100,000)",
        100_000,
        run(1_000_000, 100_000, true),
    );
    report(
        "lookup, full cache",
        100_000,
        run(1_000_000, 100_000, false),
    );
    println!("{:?}", cache.stats());

    let old = ScanWhenFull(Default::default());
    let started = StdInstant::now();
    for set in 0..10_000 {
        old.insert(set, &refusal(HOUR), t0);
    }
    report(
        "baseline: insert, empty map (first 10,000)",
        10_000,
        started,
    );
    for set in 10_000..100_000 {
        old.insert(set, &refusal(HOUR), t0);
    }
    let started = StdInstant::now();
    for set in 100_000..101_000 {
        old.insert(set, &refusal(HOUR), t0);
    }
    report(
        "baseline: refusal at a full map (next 1,000)",
        1_000,
        started,
    );
}
