use super::*;
use crate::engine::clock::{ManualClock, TokioClock};
use crate::engine::gcra::{decide, GcraParams};
use crate::engine::quota::Quota;

pub(super) fn params(count: u32, period: Duration) -> GcraParams {
    GcraParams::new(&Quota::new(count, period).unwrap(), Duration::ZERO)
}

fn check(key: u64, p: GcraParams) -> Check {
    Check {
        key,
        params: p,
        shadow: false,
        rule: 0,
    }
}

/// A store and the manual clock its test decides at.
#[derive(Clone)]
pub(super) struct Timed {
    store: MemoryStore,
    clock: ManualClock,
}

impl std::ops::Deref for Timed {
    type Target = MemoryStore;
    fn deref(&self) -> &MemoryStore {
        &self.store
    }
}

impl Timed {
    pub(super) fn new(store: MemoryStore, clock: &ManualClock) -> Timed {
        Timed {
            store,
            clock: clock.clone(),
        }
    }

    /// Decides at the clock's time.
    pub(super) fn check_now(&self, checks: &[Check]) -> Decision {
        self.store.check_at(self.clock.now(), checks)
    }

    /// Sweeps at the clock's time.
    pub(super) fn sweep(&self) {
        self.store.sweep(self.clock.now())
    }
}

fn store(max_keys: usize) -> (Timed, ManualClock) {
    let clock = ManualClock::new();
    let s = MemoryStore::builder().max_keys(max_keys).build().unwrap();
    (Timed::new(s, &clock), clock)
}

#[test]
fn exact_limit_and_refill() {
    let (s, clock) = store(1000);
    let c = [check(7, params(5, Duration::from_secs(10)))];
    let admitted = (0..8).filter(|_| s.check_now(&c).admitted).count();
    assert_eq!(admitted, 5);
    let d = s.check_now(&c);
    assert_eq!(d.retry_after, Duration::from_secs(2));
    clock.advance(Duration::from_secs(2));
    assert!(s.check_now(&c).admitted);
    assert!(!s.check_now(&c).admitted);
}

#[test]
fn several_limits_all_or_nothing() {
    let (s, _) = store(1000);
    let global = check(1, params(100, Duration::from_secs(10)));
    let hourly = check(2, params(2, Duration::from_secs(3600)));
    for _ in 0..2 {
        assert!(s.check_now(&[global, hourly]).admitted);
    }
    for _ in 0..10 {
        let d = s.check_now(&[global, hourly]);
        assert!(!d.admitted);
        assert_eq!(d.denied_mask, 0b10);
    }
    // The refused requests did not spend the global quota: 98 remain.
    let admitted = (0..200).filter(|_| s.check_now(&[global]).admitted).count();
    assert_eq!(admitted, 98);
}

#[test]
fn never_exceeds_max_keys() {
    let (s, _) = store(1000);
    let p = params(1000, Duration::from_secs(3600));
    let mut admitted = 0u64;
    for i in 0..100_000u64 {
        // Spread keys over all shards.
        let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        admitted += u64::from(s.check_now(&[check(key, p)]).admitted);
        if i % 97 == 0 {
            assert!(s.len() <= 1000, "after {i} keys: {}", s.len());
        }
    }
    assert!(s.len() <= s.max_keys());
    assert!(s.max_keys() <= 1000);
    // Nothing is idle within the hour: the keys beyond the bound overflowed, and their
    // rule's overflow bucket admitted one quota; new keys then start from that bucket.
    assert_eq!(s.evictions().idle, 0);
    assert_eq!(admitted, s.len() as u64 + 1000);
    assert!(s.evictions().overflowed >= 1000);
}

#[test]
fn idle_keys_are_dropped_without_losing_decisions() {
    let (s, clock) = store(1 << 20);
    let p = params(1, Duration::from_secs(1));
    for key in 0..10_000u64 {
        s.check_now(&[check(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), p)]);
    }
    assert_eq!(s.len(), 10_000);
    clock.advance(Duration::from_secs(1));
    s.sweep();
    assert_eq!(s.len(), 0);
    assert_eq!(
        s.evictions(),
        EvictionStats {
            idle: 10_000,
            overflowed: 0
        }
    );
    // A swept key behaves exactly as before: its quota is full again.
    assert!(s.check_now(&[check(0, p)]).admitted);
    assert!(!s.check_now(&[check(0, p)]).admitted);
}

#[test]
fn insert_path_sweeps_idle_keys_on_its_own() {
    let (s, clock) = store(1 << 20);
    let p = params(1, Duration::from_millis(10));
    for round in 0..20u64 {
        for key in 0..5_000u64 {
            let key = (round * 5_000 + key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            s.check_now(&[check(key, p)]);
        }
        clock.advance(Duration::from_millis(10));
    }
    // 100,000 distinct keys went through; only about the recent ones stay.
    assert!(s.len() < 20_000, "len {}", s.len());
    assert_eq!(s.evictions().overflowed, 0);
}

#[test]
fn exact_under_contention() {
    let (s, _) = store(1 << 16);
    let global = check(1, params(1000, Duration::from_secs(3600)));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mine = check(100 + t, params(10_000, Duration::from_secs(3600)));
                let mut admitted = 0;
                for i in 0..1000 {
                    let d = if i % 2 == 0 {
                        s.check_now(&[global])
                    } else {
                        s.check_now(&[mine, global])
                    };
                    admitted += usize::from(d.admitted);
                }
                admitted
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1000);
}

#[test]
fn builder_validates() {
    assert_eq!(
        MemoryStore::builder().max_keys(0).build().unwrap_err(),
        MemoryStoreError::ZeroMaxKeys
    );
    assert_eq!(
        MemoryStore::builder().shards(3).build().unwrap_err(),
        MemoryStoreError::BadShardCount
    );
    let tiny = MemoryStore::builder().max_keys(3).build().unwrap();
    assert!(tiny.max_keys() >= 1 && tiny.max_keys() <= 3);
}

#[tokio::test(start_paused = true)]
async fn sweeper_task_runs_on_tokio_time() {
    let s = MemoryStore::new();
    let clock = TokioClock::new();
    let p = params(1, Duration::from_secs(1));
    s.check_at(clock.now(), &[check(5, p)]);
    assert_eq!(s.len(), 1);
    let task = s.spawn_sweeper(clock, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(s.len(), 0);
    drop(s);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(task.is_finished());
}

/// No state word keeps the transient key-lock bit once decisions are done.
pub(super) fn assert_no_key_locks(s: &MemoryStore) {
    for shard in s.inner.shards.iter() {
        for (_, state) in lock(shard).table.peek() {
            assert_eq!(state & crate::engine::state::LOCKED, 0);
        }
    }
}

#[test]
fn several_limits_on_known_keys_exact_under_contention() {
    // Known keys take the read-lock path with key locks; singles on the global key race
    // with them. Global demand exceeds its quota, so exactly 500 are admitted in all, and
    // each thread's own key is consumed by exactly its admitted pairs (all-or-nothing).
    for _ in 0..50 {
        let (s, _) = store(1 << 16);
        let global = check(1, params(500, Duration::from_secs(3600)));
        let own = |t: u64| check(100 + t, params(150, Duration::from_secs(3600)));
        for t in 0..4 {
            // Insert every key first, spending one unit of each.
            assert!(s.check_now(&[own(t), global]).admitted);
        }
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let (mut pairs, mut singles) = (0, 0);
                    for i in 0..600 {
                        if i % 2 == 0 {
                            pairs += usize::from(s.check_now(&[own(t), global]).admitted);
                        } else {
                            singles += usize::from(s.check_now(&[global]).admitted);
                        }
                    }
                    (pairs, singles)
                })
            })
            .collect();
        let results: Vec<(usize, usize)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let total: usize = results.iter().map(|(p, s)| p + s).sum();
        assert_eq!(total, 500 - 4);
        assert!(!s.check_now(&[global]).admitted);
        for (t, &(pairs, _)) in results.iter().enumerate() {
            let left = (0..200)
                .filter(|_| s.check_now(&[own(t as u64)]).admitted)
                .count();
            assert_eq!(left, 150 - 1 - pairs, "thread {t}");
        }
        assert_no_key_locks(&s);
    }
}

#[test]
fn several_limits_on_known_keys_all_or_nothing() {
    let (s, _) = store(1000);
    let global = check(1, params(100, Duration::from_secs(10)));
    let hourly = check(2, params(2, Duration::from_secs(3600)));
    // The first request inserts both keys; the rest take the known-key path.
    for _ in 0..2 {
        assert!(s.check_now(&[hourly, global]).admitted);
    }
    for _ in 0..10 {
        let d = s.check_now(&[hourly, global]);
        assert!(!d.admitted);
        assert_eq!(d.denied_mask, 0b01);
        assert_eq!(d.retry_after, Duration::from_secs(1800));
    }
    let admitted = (0..200).filter(|_| s.check_now(&[global]).admitted).count();
    assert_eq!(admitted, 98);
    assert_no_key_locks(&s);
}

#[test]
fn duplicate_keys_in_one_request() {
    // The same key twice (two rules hashing alike) is locked once and decided on one state.
    let (s, _) = store(1000);
    let c = check(9, params(3, Duration::from_secs(3600)));
    assert!(s.check_now(&[c, c]).admitted);
    assert!(s.check_now(&[c, c]).admitted);
    assert!(s.check_now(&[c, c]).admitted);
    assert!(!s.check_now(&[c, c]).admitted);
    assert_no_key_locks(&s);
}

#[test]
fn clock_beyond_the_cap_neither_hangs_nor_sets_the_lock_bit() {
    let (s, clock) = store(1000);
    clock.advance(Duration::MAX);
    let a = check(1, params(1, Duration::from_secs(3600)));
    let b = check(2, params(1, Duration::from_secs(3600)));
    assert!(s.check_now(&[a]).admitted);
    assert!(!s.check_now(&[a]).admitted);
    assert!(!s.check_now(&[a, b]).admitted);
    assert!(s.check_now(&[b]).admitted);
    assert!(!s.check_now(&[a, b]).admitted);
    assert_no_key_locks(&s);
}

#[test]
fn exact_while_shards_are_rebuilt_under_readers() {
    // Readers decide on their cached tables while another thread forces rebuilds (growth,
    // sweeps and idle-key drops in a tiny store): every update to a moved slot must land
    // in the new table, so the hot key still admits exactly its quota.
    for _ in 0..20 {
        let (s, clock) = store(256);
        // Each its own rule: if the tiny store is full when one of them arrives, its
        // overflow bucket is its own.
        let hot = ruled(1, params(2000, Duration::from_secs(3600)), 1);
        let own = |t: u64| ruled(100 + t, params(10_000, Duration::from_secs(3600)), 100 + t);
        let churn_params = params(1_000_000_000, Duration::from_secs(1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churned = Arc::new(AtomicU64::new(0));
        let churn = {
            let (s, stop, churned) = (s.clone(), Arc::clone(&stop), Arc::clone(&churned));
            let clock = clock.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    // Each churn key is idle 100 ns later (the full store drops it); the
                    // hourly keys would need 18 million churns to refill one request.
                    clock.advance(Duration::from_nanos(100));
                    churned.store(i, Ordering::Relaxed);
                    let key = (1000 + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    assert!(s.check_now(&[check(key, churn_params)]).admitted);
                    if i.is_multiple_of(64) {
                        s.sweep();
                    }
                }
                i
            })
        };
        let readers: Vec<_> = (0..3u64)
            .map(|t| {
                let (s, churned) = (s.clone(), Arc::clone(&churned));
                std::thread::spawn(move || {
                    // Start once the churn is under way (rebuilds happen from the start).
                    while churned.load(Ordering::Relaxed) < 300 {
                        std::thread::yield_now();
                    }
                    let (mut pairs, mut singles) = (0usize, 0usize);
                    for i in 0..1500 {
                        if i % 2 == 0 {
                            pairs += usize::from(s.check_now(&[own(t), hot]).admitted);
                        } else {
                            singles += usize::from(s.check_now(&[hot]).admitted);
                        }
                    }
                    (pairs, singles)
                })
            })
            .collect();
        let results: Vec<(usize, usize)> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        let churned = churn.join().unwrap();
        assert!(churned >= 300);
        let total: usize = results.iter().map(|(p, s)| p + s).sum();
        assert_eq!(total, 2000);
        assert!(!s.check_now(&[hot]).admitted);
        for (t, &(pairs, _)) in results.iter().enumerate() {
            let left = (0..10_000)
                .filter(|_| s.check_now(&[own(t as u64)]).admitted)
                .count();
            assert_eq!(left, 10_000 - pairs, "thread {t}");
        }
        assert!(s.evictions().idle > 0);
        assert!(s.len() <= s.max_keys());
        assert_no_key_locks(&s);
    }
}

#[test]
fn a_stale_view_is_refreshed_not_wrong() {
    // This thread caches a shard's table, another thread rebuilds the shard, and this
    // thread's next decisions still see every update (through the moved slot).
    let (s, clock) = store(1 << 12);
    let p = params(3, Duration::from_secs(60));
    assert!(s.check_now(&[check(7, p)]).admitted);
    let shard = s.inner.shard_of(7);
    let cached = view::with(s.inner.owner.id, |t| t[shard].clone()).flatten();
    let cached = cached.expect("the first decision cached the table");
    {
        let (s, clock) = (s.clone(), clock.clone());
        std::thread::spawn(move || {
            assert!(s.check_now(&[check(7, p)]).admitted);
            // Key 8 (same shard) idles out, so the sweep rebuilds the shard.
            assert!(
                s.check_now(&[check(8, params(1000, Duration::from_secs(1)))])
                    .admitted
            );
            clock.advance(Duration::from_millis(1));
            s.sweep();
        })
        .join()
        .unwrap();
    }
    assert_eq!(s.evictions().idle, 1);
    assert!(!Arc::ptr_eq(&cached, &lock(&s.inner.shards[shard]).table));
    assert_eq!(
        cached.find(7).unwrap().load(Ordering::Relaxed),
        crate::engine::state::MOVED
    );
    assert!(s.check_now(&[check(7, p)]).admitted);
    assert!(!s.check_now(&[check(7, p)]).admitted);
    assert!(!s.check_now(&[check(7, p), check(9, p)]).admitted);
}

/// A deterministic xorshift generator for the model test.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn decisions_match_a_model_through_rebuilds_sweeps_and_thread_hops() {
    // Every decision of the store equals `gcra::decide` on a plain map of states, while
    // keys are inserted (growth rebuilds), swept (idle-key rebuilds) and decided from
    // other threads (so this thread's cached tables go stale).
    let (s, clock) = store(1 << 12);
    let quotas = [
        GcraParams::new(
            &Quota::new(3, Duration::from_secs(1)).unwrap(),
            Duration::ZERO,
        ),
        GcraParams::new(
            &Quota::new(5, Duration::from_secs(10)).unwrap(),
            Duration::from_secs(7),
        ),
        params(100, Duration::from_secs(60)),
    ];
    // Keys spread over shards (top bits) and over home slots (low bits).
    let keys: Vec<u64> = (1..=40u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        .collect();
    let mut model: std::collections::HashMap<u64, u64> = Default::default();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for op in 0..20_000u32 {
        clock.advance(Duration::from_millis(rng.below(400)));
        if rng.below(200) == 0 {
            s.sweep();
        }
        let n = 1 + rng.below(3) as usize;
        let mut checks = Vec::new();
        while checks.len() < n {
            let key = keys[rng.below(keys.len() as u64) as usize];
            if checks.iter().all(|c: &Check| c.key != key) {
                checks.push(Check {
                    key,
                    params: quotas[rng.below(3) as usize],
                    shadow: rng.below(10) == 0,
                    rule: 0,
                });
            }
        }
        let mut tats: Vec<u64> = checks
            .iter()
            .map(|c| model.get(&c.key).copied().unwrap_or(0))
            .collect();
        let (expected, changed) = decide(clock.now(), &checks, &mut tats);
        for (i, c) in checks.iter().enumerate() {
            if changed & (1 << i) != 0 {
                model.insert(c.key, tats[i]);
            }
        }
        // One operation in eight runs on another thread.
        let got = if op % 8 == 0 {
            let (s, checks) = (s.clone(), checks.clone());
            std::thread::spawn(move || s.check_now(&checks))
                .join()
                .unwrap()
        } else {
            s.check_now(&checks)
        };
        assert_eq!(got, expected, "operation {op}: {checks:?}");
    }
    assert!(s.evictions().idle > 0, "sweeps dropped idle keys");
    assert_eq!(s.evictions().overflowed, 0);
    assert_no_key_locks(&s);
}

/// Keys spread over shards (top bits) and home slots (low bits).
pub(super) fn spread(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

pub(super) fn ruled(key: u64, params: GcraParams, rule: u64) -> Check {
    Check {
        key,
        params,
        shadow: false,
        rule,
    }
}

mod flood;
mod reclaim;
