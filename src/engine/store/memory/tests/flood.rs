//! Floods of new keys: a full store keeps every key's state and decides new keys on
//! their rule's overflow bucket, exactly as documented.

use std::collections::HashMap;
use std::time::Duration;

use super::{assert_no_key_locks, params, ruled, spread, Rng, Timed};
use crate::engine::clock::{Clock, ManualClock, Timestamp};
use crate::engine::gcra::{decide, Check, GcraParams, Step};
use crate::engine::quota::Quota;
use crate::engine::store::memory::room::MAX_OVERFLOW_BUCKETS;
use crate::engine::store::{EvictionStats, MemoryStore};

pub(super) fn one_shard(max_keys: usize) -> (Timed, ManualClock) {
    let clock = ManualClock::new();
    let s = MemoryStore::builder()
        .max_keys(max_keys)
        .shards(1)
        .build()
        .unwrap();
    (Timed::new(s, &clock), clock)
}

#[test]
fn a_flood_of_new_keys_never_frees_an_exhausted_key() {
    // One shard of 1,024 keys, so the flood's outcome is exact.
    let (s, clock) = one_shard(1024);
    let sign_in = ruled(7, params(5, Duration::from_secs(10)), 1);
    let admitted = (0..5).filter(|_| s.check_now(&[sign_in]).admitted).count();
    assert_eq!(admitted, 5);
    let hourly = params(25, Duration::from_secs(3600));
    let mut flood_admitted = 0;
    for i in 0..3000u64 {
        let d = s.check_now(&[ruled(spread(i + 100), hourly, 2)]);
        flood_admitted += usize::from(d.admitted);
        if i % 50 == 0 {
            assert!(!s.check_now(&[sign_in]).admitted, "after {i} flood keys");
        }
        assert!(s.len() <= 1024);
    }
    // 895 flood keys got their own bucket, filling 896 slots: the last eighth (128) is
    // reserved for rules below their fair share (1,024 / 2 rules), which the hourly rule
    // is not. The 2,105 others were decided on the hourly rule's overflow bucket, which
    // admitted its quota (25) and refused the rest.
    assert_eq!(flood_admitted, 895 + 25);
    assert_eq!(s.len(), 896);
    assert_eq!(
        s.evictions(),
        EvictionStats {
            idle: 0,
            overflowed: 2105
        }
    );
    // The exhausted key refills at its own rate, exactly: one request per 2 s.
    clock.advance(Duration::from_secs(2));
    let admitted = (0..5).filter(|_| s.check_now(&[sign_in]).admitted).count();
    assert_eq!(admitted, 1);
    // The flood took no room from the other rules: new keys of the sign-in rule, and of
    // a rule never seen before, each get their own bucket in the reserve.
    for key in [spread(50_001), spread(50_002)] {
        let c = ruled(key, params(5, Duration::from_secs(10)), 1);
        assert_eq!((0..9).filter(|_| s.check_now(&[c]).admitted).count(), 5);
    }
    let other = ruled(spread(50_003), params(3, Duration::from_secs(10)), 9);
    assert_eq!((0..9).filter(|_| s.check_now(&[other]).admitted).count(), 3);
    assert_eq!(s.len(), 899);
    assert_eq!(s.evictions().overflowed, 2105);
}

#[test]
fn a_flood_of_two_limit_requests_never_frees_exhausted_keys() {
    // The layer's shape: every flood request carries two new keys (an instance rule and
    // an hourly rule, as Clerk's invitations), decided on the multi-limit slow path.
    let (s, clock) = one_shard(1024);
    let instance = params(100, Duration::from_secs(10));
    let hourly = params(25, Duration::from_secs(3600));
    let sign_in = ruled(7, params(5, Duration::from_secs(10)), 1);
    let user = ruled(8, params(10, Duration::from_secs(10)), 4);
    let api = ruled(9, instance, 2);
    for c in [sign_in, user, api] {
        while s.check_now(&[c]).admitted {}
    }
    let mut admitted = 0;
    for i in 0..3000u64 {
        let flood = [
            ruled(spread(2 * i + 100), instance, 2),
            ruled(spread(2 * i + 101), hourly, 3),
        ];
        admitted += usize::from(s.check_now(&flood).admitted);
        if i % 50 == 0 {
            for c in [sign_in, user, api] {
                assert!(
                    !s.check_now(&[c]).admitted,
                    "{c:?} after {i} flood requests"
                );
            }
            assert!(!s.check_now(&[api, user]).admitted);
        }
        assert!(s.len() <= 1024);
    }
    // 3 exhausted keys + 2 × 446 flood keys leave 129 slots; request 447 gets the
    // 896th slot for its lower key, and the other (its rule above its fair share, 1,024
    // / 4 rules) is decided on its rule's overflow bucket; after that, both keys of every
    // request overflow. The hourly overflow bucket admits its 25 (one of them to request
    // 447 if its hourly key was the one that overflowed); the instance bucket (100 per
    // 10 s) has room for all.
    let hourly_overflowed_first = spread(2 * 446 + 101) > spread(2 * 446 + 100);
    assert_eq!(s.len(), 896);
    assert_eq!(admitted, 447 + 25 - usize::from(hourly_overflowed_first));
    assert_eq!(s.evictions().overflowed, 1 + 2 * (3000 - 447));
    // Refill stays exact: one sign-in per 2 s, one user update per second.
    clock.advance(Duration::from_secs(2));
    let got = [sign_in, user].map(|c| (0..5).filter(|_| s.check_now(&[c]).admitted).count());
    assert_eq!(got, [1, 2]);
    assert_no_key_locks(&s);
}

#[test]
fn a_key_that_overflowed_starts_from_its_bucket_not_afresh() {
    // Room comes back (idle keys drop) after a key was decided on the overflow bucket:
    // the key must not get a fresh quota on top of what the bucket gave it.
    let (s, clock) = one_shard(4);
    let short = params(1, Duration::from_secs(1));
    for k in 0..4 {
        assert!(s.check_now(&[ruled(spread(k), short, 1)]).admitted);
    }
    let hourly = params(3, Duration::from_secs(3600));
    let newcomer = ruled(spread(99), hourly, 2);
    let admitted = (0..3).filter(|_| s.check_now(&[newcomer]).admitted).count();
    assert_eq!(admitted, 3);
    assert_eq!(s.evictions().overflowed, 3);
    clock.advance(Duration::from_secs(1));
    // The short keys are idle now and dropped: the newcomer has room, but starts from the
    // exhausted bucket, so it is refused (and not stored: a refusal changes no state).
    assert!(!s.check_now(&[newcomer]).admitted);
    assert_eq!(
        s.evictions(),
        EvictionStats {
            idle: 4,
            overflowed: 3
        }
    );
    assert_eq!(s.len(), 0);
    // So does any other new key of its rule, until the bucket refills (20 min per request).
    assert!(!s.check_now(&[ruled(spread(100), hourly, 2)]).admitted);
    clock.advance(Duration::from_secs(1200));
    assert!(s.check_now(&[newcomer]).admitted);
    assert!(!s.check_now(&[newcomer]).admitted);
    // Another rule never saw the overflow: its new keys start afresh.
    let other = ruled(spread(200), hourly, 5);
    assert_eq!((0..5).filter(|_| s.check_now(&[other]).admitted).count(), 3);
}

#[test]
fn rules_beyond_the_overflow_table_are_refused_while_full() {
    let (s, _) = one_shard(1);
    let p = params(10, Duration::from_secs(3600));
    assert!(s.check_now(&[ruled(spread(1), p, 0)]).admitted);
    // Rule 0 is tracked (it holds the key); the others overflow into their buckets.
    let rules = MAX_OVERFLOW_BUCKETS as u64 - 1;
    for rule in 1..=rules {
        assert!(s.check_now(&[ruled(spread(1000 + rule), p, rule)]).admitted);
    }
    // The next rule has no overflow bucket: refused, single or with another limit, and a
    // shadow check is still only counted.
    let late = ruled(spread(5000), p, rules + 1);
    let d = s.check_now(&[late]);
    assert!(!d.admitted);
    assert_eq!(d.retry_after, Duration::from_secs(360));
    assert!(!s.check_now(&[late, ruled(spread(5001), p, 3)]).admitted);
    let shadow = Check {
        shadow: true,
        ..late
    };
    assert!(s.check_now(&[shadow]).admitted);
    assert_eq!(s.len(), 1);
    assert_no_key_locks(&s);
}

/// The store's documented behaviour when full, on plain maps: keys held (never dropped
/// here: nothing goes idle), one bucket per rule, new keys start from their rule's bucket;
/// a new key gets a slot while more than an eighth of the store is free, or, in that last
/// eighth, if its rule holds less than its fair share (the lowest keys of a request are
/// granted first); otherwise it is decided on its rule's bucket. Returns the decision and
/// how many checks overflowed.
pub(super) struct FullModel {
    pub(super) cap: usize,
    pub(super) held: HashMap<u64, (u64, u64)>,
    pub(super) buckets: HashMap<u64, u64>,
}

impl FullModel {
    fn grants(&self, rule: u64, pending: &[u64]) -> bool {
        let len = self.held.len() + pending.len();
        if len >= self.cap {
            return false;
        }
        if self.cap - len > self.cap / 8 {
            return true;
        }
        let count = self.held.values().filter(|h| h.1 == rule).count();
        let mut rules: Vec<u64> = self.held.values().map(|h| h.1).collect();
        rules.sort_unstable();
        rules.dedup();
        let rules = rules.len() + usize::from(count == 0);
        let same = pending.iter().filter(|&&r| r == rule).count();
        (count + same) * rules < self.cap
    }

    pub(super) fn decide(
        &mut self,
        now: u64,
        checks: &[Check],
    ) -> (crate::engine::gcra::Decision, u64) {
        let mut missing: Vec<(u64, u64)> = checks
            .iter()
            .filter(|c| !self.held.contains_key(&c.key))
            .map(|c| (c.key, c.rule))
            .collect();
        missing.sort_unstable();
        let mut granted = Vec::new();
        let mut pending = Vec::new();
        for &(key, rule) in &missing {
            if self.grants(rule, &pending) {
                granted.push(key);
                pending.push(rule);
            }
        }
        let mut tats: Vec<u64> = checks
            .iter()
            .map(|c| match self.held.get(&c.key) {
                Some(&(t, _)) => t,
                None => self.buckets.get(&c.rule).copied().unwrap_or(0),
            })
            .collect();
        let (decision, changed) = decide(Timestamp::from_nanos(now), checks, &mut tats);
        let mut overflowed = 0;
        for (i, c) in checks.iter().enumerate() {
            let over = !self.held.contains_key(&c.key) && !granted.contains(&c.key);
            overflowed += u64::from(over);
            if changed & (1 << i) != 0 {
                if over {
                    self.buckets.insert(c.rule, tats[i]);
                } else {
                    self.held.insert(c.key, (tats[i], c.rule));
                }
            }
        }
        (decision, overflowed)
    }
}

#[test]
fn a_full_store_decides_exactly_like_the_model() {
    // 20,000 random requests of 1-3 limits (distinct rules, as the layer makes them) over
    // 3 rules (one of them with 4 times the keys of each other) against a store of 48
    // keys: the model says which checks overflow, and every decision and overflow count
    // must equal it.
    let (s, clock) = one_shard(48);
    let quotas = [
        params(5, Duration::from_secs(3600)),
        GcraParams::new(
            &Quota::new(20, Duration::from_secs(3600)).unwrap(),
            Duration::from_secs(600),
        ),
        params(100, Duration::from_secs(3600)),
    ];
    let mut model = FullModel {
        cap: 48,
        held: HashMap::new(),
        buckets: HashMap::new(),
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut overflowed = 0;
    for op in 0..20_000u32 {
        // At most 10 s in all: no key goes idle within its hour, so none is dropped.
        clock.advance(Duration::from_micros(rng.below(1000)));
        let n = 1 + rng.below(3) as usize;
        let mut rules = vec![0u64, 1, 2];
        let mut checks = Vec::new();
        for _ in 0..n {
            let rule = rules.remove(rng.below(rules.len() as u64) as usize);
            let key = spread(rule * 1000 + rng.below(if rule == 2 { 160 } else { 40 }));
            let mut c = ruled(key, quotas[rule as usize], rule + 10);
            c.shadow = rng.below(10) == 0;
            checks.push(c);
        }
        let (expected, over) = model.decide(clock.now().as_nanos(), &checks);
        overflowed += over;
        let got = s.check_now(&checks);
        assert_eq!(got, expected, "operation {op}: {checks:?}");
        assert_eq!(s.evictions().overflowed, overflowed, "operation {op}");
    }
    assert_eq!(s.len(), model.held.len());
    assert!(s.len() > 42, "the reserve was used: {}", s.len());
    assert!(
        overflowed > 1000,
        "the store was full most of the run: {overflowed}"
    );
    assert_eq!(s.evictions().idle, 0);
    assert_no_key_locks(&s);
}

#[test]
fn no_key_is_ever_admitted_beyond_its_own_limit_through_floods_and_drops() {
    // Many shards, idle drops and floods together: whatever the store decides, the
    // requests it admits for each key conform to that key's own limit (a per-key GCRA fed
    // with the admitted requests only must admit each of them).
    let clock = ManualClock::new();
    let s = Timed::new(
        MemoryStore::builder().max_keys(256).build().unwrap(),
        &clock,
    );
    let quotas = [
        params(3, Duration::from_secs(1)),
        params(5, Duration::from_secs(10)),
        params(25, Duration::from_secs(3600)),
    ];
    let mut own: HashMap<u64, u64> = HashMap::new();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut admitted = 0;
    for op in 0..40_000u32 {
        clock.advance(Duration::from_millis(rng.below(20)));
        // Every other request is a flood key of the hourly rule, never seen again.
        let mut checks = vec![];
        if op % 2 == 0 {
            checks.push(ruled(spread(1_000_000 + u64::from(op)), quotas[2], 2));
        }
        let rule = rng.below(2);
        checks.push(ruled(
            spread(rule * 1000 + rng.below(300)),
            quotas[rule as usize],
            rule,
        ));
        let now = clock.now().as_nanos();
        if s.check_now(&checks).admitted {
            admitted += 1;
            for c in &checks {
                let tat = own.entry(c.key).or_insert(0);
                let step = Step::of(now, c, *tat);
                assert!(
                    !step.denied,
                    "operation {op}: {c:?} admitted beyond its limit"
                );
                *tat = step.new_state.unwrap_or(*tat);
            }
        }
        assert!(s.len() <= s.max_keys());
    }
    let stats = s.evictions();
    assert!(stats.overflowed > 0 && stats.idle > 0, "{stats:?}");
    assert!(admitted > 1000);
    assert_no_key_locks(&s);
}

#[test]
fn a_full_shard_is_not_rebuilt_for_every_new_key() {
    // 896 keys (the line of the reserve) that go idle one per millisecond, and a flood
    // of one new key per millisecond: each step could free exactly one slot. Rebuilding
    // the shard (O(keys)) on each step would be quadratic; the store waits until an
    // eighth of its keys can be idle, so it rebuilds about once per 112 steps.
    let (s, clock) = one_shard(1024);
    let short = params(1, Duration::from_secs(1));
    for i in 0..896 {
        assert!(s.check_now(&[ruled(spread(i), short, 1)]).admitted);
        clock.advance(Duration::from_millis(1));
    }
    clock.advance(Duration::from_millis(1000 - 896));
    let hourly = params(1000, Duration::from_secs(3600));
    let before = s.inner.rebuilds.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..2000 {
        clock.advance(Duration::from_millis(1));
        s.check_now(&[ruled(spread(10_000 + i), hourly, 2)]);
        assert!(s.len() <= 1024);
    }
    let rebuilds = s.inner.rebuilds.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        rebuilds <= 2000 / 100,
        "{rebuilds} rebuilds for 2,000 new keys"
    );
    // The price: up to an eighth of the keys may sit idle a while before they go (new
    // keys meanwhile overflow, conservatively).
    assert!(s.evictions().idle >= 896 - 896 / 8, "{:?}", s.evictions());
}
