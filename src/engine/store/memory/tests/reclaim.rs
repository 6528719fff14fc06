//! Overflow-table entries come back: rules that hold no key and whose bucket is idle give
//! their entry to new rules (layers rebuilt with new rule ids, e.g. on config reload).

use std::collections::HashMap;
use std::time::Duration;

use super::flood::{one_shard, FullModel};
use super::{assert_no_key_locks, params, ruled, spread, Rng};
use crate::engine::clock::Clock;
use crate::engine::gcra::{is_idle, GcraParams};
use crate::engine::quota::Quota;
use crate::engine::store::EvictionStats;

#[test]
fn entries_of_rules_gone_idle_go_to_new_rules() {
    // 200 rules (old layers) touch one key each, then go quiet: their keys go idle.
    let (s, clock) = one_shard(1024);
    let short = params(1, Duration::from_secs(1));
    for rule in 0..200u64 {
        assert!(s.check_now(&[ruled(spread(rule), short, rule)]).admitted);
    }
    clock.advance(Duration::from_secs(1));
    // A flood of rule 1 drops the idle keys (the insert path sweeps) and, the only rule
    // holding keys, fills the shard; the rest is decided on its overflow bucket (25).
    let hourly = params(25, Duration::from_secs(3600));
    let admitted = (0..3000u64)
        .filter(|&i| {
            s.check_now(&[ruled(spread(10_000 + i), hourly, 1)])
                .admitted
        })
        .count();
    assert_eq!(admitted, 1024 + 25);
    assert_eq!(s.len(), 1024);
    assert_eq!(
        s.evictions(),
        EvictionStats {
            idle: 200,
            overflowed: 3000 - 1024
        }
    );
    // A new key of a rule that had an entry is decided on its (idle) bucket: admitted.
    let p = params(3, Duration::from_secs(10));
    assert!(s.check_now(&[ruled(spread(20_050), p, 50)]).admitted);
    // The first request of a rule that never had an entry is admitted too: the 94
    // entries of rules holding no key with an idle bucket (all but rules 1 and 50) are
    // free again, and it gets its own full quota.
    let first = ruled(spread(20_150), p, 150);
    assert_eq!((0..5).filter(|_| s.check_now(&[first]).admitted).count(), 3);
    for rule in (100..200).filter(|&r| r != 150).take(93) {
        assert!(
            s.check_now(&[ruled(spread(20_000 + rule), p, rule)])
                .admitted
        );
    }
    // 96 rules now hold a live bucket: the next new rule is refused while the store is
    // full, as before (no live bucket is ever given away).
    assert!(!s.check_now(&[ruled(spread(30_000), p, 500)]).admitted);
    assert_eq!(s.evictions().overflowed, 3000 - 1024 + 2 + 4 + 93 + 1);
    // Once those buckets are idle again (10 s), their entries come back too.
    clock.advance(Duration::from_secs(10));
    assert!(s.check_now(&[ruled(spread(30_000), p, 500)]).admitted);
}

impl FullModel {
    /// What a sweep does to the model: idle keys go; an idle bucket decides like a fresh
    /// one, so it goes too.
    /// Returns how many keys went.
    fn drop_idle(&mut self, now: u64) -> u64 {
        let before = self.held.len();
        self.held.retain(|_, &mut (tat, _)| !is_idle(tat, now));
        self.buckets.retain(|_, &mut tat| !is_idle(tat, now));
        (before - self.held.len()) as u64
    }
}

#[test]
fn a_full_store_with_rules_coming_and_going_decides_like_the_model() {
    // 100 phases of 200 random requests (1-4 limits, each phase within 10 s) on a store
    // of 48 keys. 93 rules live through the whole run (quotas per 366 days, so their keys
    // and buckets never go idle): rules 0 and 1 in most requests, rule 2 in every fourth
    // phase, and 90 others in one request of four (a few keys each, so some hold keys
    // and some only a live bucket). Each phase brings two new hourly rules, idle two hours
    // later, when the next phase begins: 293 rules in all, never more than 95 with live
    // state, so the overflow table (96) is nearly full and entries are reclaimed in every
    // phase. Between phases the idle keys are swept, shard by shard; only before phase
    // 50 does a full sweep free entries, otherwise they are reclaimed on demand. Every
    // decision and overflow count must equal the model, which keeps a bucket per rule and
    // forgets only idle state: reclaiming a live bucket (its rule would start afresh) or
    // a tag still counting keys (fair shares would change) fails it.
    let (s, clock) = one_shard(48);
    let forever = Duration::from_secs(366 * 86_400);
    let lasting = [params(5, forever), params(20, forever), params(3, forever)];
    let hourly = [
        params(5, Duration::from_secs(3600)),
        GcraParams::new(
            &Quota::new(20, Duration::from_secs(3600)).unwrap(),
            Duration::from_secs(600),
        ),
    ];
    let mut model = FullModel {
        cap: 48,
        held: HashMap::new(),
        buckets: HashMap::new(),
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut overflowed, mut dropped) = (0, 0);
    for phase in 0..100u64 {
        clock.advance(Duration::from_secs(7200));
        if phase == 50 {
            s.sweep();
        } else {
            let now = clock.now().as_nanos();
            for shard in s.inner.shards.iter() {
                s.inner.sweep_shard(&mut super::super::lock(shard), now);
            }
        }
        dropped += model.drop_idle(clock.now().as_nanos());
        let new_rules = [1000 + 2 * phase, 1001 + 2 * phase];
        for op in 0..200u32 {
            clock.advance(Duration::from_millis(rng.below(50)));
            let mut rules: Vec<u64> = vec![0, 1, new_rules[0], new_rules[1]];
            if phase % 4 == 0 {
                rules.push(2);
            }
            let mut n = 1 + rng.below(3) as usize;
            if rng.below(4) == 0 {
                rules.push(3 + rng.below(90));
                n += 1;
            }
            let mut checks = Vec::new();
            for _ in 0..n.min(rules.len()) {
                let rule = rules.remove(rng.below(rules.len() as u64) as usize);
                let (pool, p) = match rule {
                    0..=2 => (30, lasting[rule as usize]),
                    3..=92 => (3, lasting[(rule % 3) as usize]),
                    _ => (20, hourly[(rule % 2) as usize]),
                };
                let mut c = ruled(spread(rule * 1000 + rng.below(pool)), p, rule);
                c.shadow = rng.below(10) == 0;
                checks.push(c);
            }
            let (expected, over) = model.decide(clock.now().as_nanos(), &checks);
            overflowed += over;
            let got = s.check_now(&checks);
            assert_eq!(got, expected, "phase {phase}, operation {op}: {checks:?}");
            assert_eq!(s.evictions().overflowed, overflowed, "phase {phase}, {op}");
        }
        assert_eq!(s.len(), model.held.len(), "phase {phase}");
    }
    assert!(
        overflowed > 1000,
        "the store was full most of the run: {overflowed}"
    );
    assert_eq!(s.evictions().idle, dropped);
    assert!(dropped > 50, "{dropped}");
    assert_no_key_locks(&s);
}

#[test]
fn reclaiming_under_contention_loses_no_live_bucket() {
    // A full shard (rule 0's keys), 89 rules whose buckets each admitted their one
    // request of the year, and a hot rule whose new keys all overflow, hammered from
    // three threads, each with a rule of its own allowing one request per millisecond
    // (idle, so reclaimable, most of the time). A fourth thread brings a new rule every
    // millisecond (its request exhausts its bucket for that millisecond), so the table
    // (96) is full and new rules need the entries of idle ones, reclaimed on demand
    // while the others decide; a fifth sweeps. The hot rule admits exactly its 100, no
    // full bucket ever admits again, and every new rule gets a fresh entry (at most 95
    // rules are live at a time).
    let (s, clock) = one_shard(64);
    clock.advance(Duration::from_secs(1));
    let year = Duration::from_secs(366 * 86_400);
    for i in 0..64 {
        assert!(
            s.check_now(&[ruled(spread(i), params(5, year), 0)])
                .admitted
        );
    }
    let full = params(1, year);
    for rule in 1..=89 {
        assert!(
            s.check_now(&[ruled(spread(rule * 1000), full, rule)])
                .admitted
        );
    }
    let hot = params(100, year);
    let hot_admitted: usize = std::thread::scope(|scope| {
        let hammers: Vec<_> = (0..3u64)
            .map(|t| {
                let (s, clock) = (s.clone(), clock.clone());
                scope.spawn(move || {
                    let (mut admitted, mut last_pulse) = (0, 0);
                    for i in 0..3000u64 {
                        let key = spread(1_000_000 * (t + 1) + i);
                        let hot = ruled(key, hot, 200);
                        // One request per millisecond: two admitted ones are at
                        // least 1 ms apart (by the readings around them).
                        let pulse = ruled(key + 1, params(1, Duration::from_millis(1)), 300 + t);
                        let before = clock.now().as_nanos();
                        if s.check_now(&[pulse]).admitted {
                            let after = clock.now().as_nanos();
                            assert!(after >= last_pulse + 1_000_000, "thread {t}, {i}");
                            last_pulse = before;
                        }
                        let d = if i % 3 == 0 {
                            let filler = 1 + (i / 3) % 89;
                            let again = ruled(spread(filler * 1000), full, filler);
                            assert!(!s.check_now(&[again]).admitted);
                            s.check_now(&[hot, ruled(spread(filler * 1000 + 1), full, filler)])
                        } else {
                            s.check_now(&[hot])
                        };
                        admitted += usize::from(d.admitted);
                    }
                    admitted
                })
            })
            .collect();
        let churn = scope.spawn(|| {
            for rule in 1000..3000u64 {
                clock.advance(Duration::from_millis(1));
                let c = ruled(spread(rule), params(1, Duration::from_millis(1)), rule);
                assert!(s.check_now(&[c]).admitted, "rule {rule}");
            }
        });
        let sweeps = scope.spawn(|| {
            for _ in 0..200 {
                s.sweep();
                std::thread::yield_now();
            }
        });
        churn.join().unwrap();
        sweeps.join().unwrap();
        hammers.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(hot_admitted, 100);
    assert_eq!(s.len(), 64);
    for rule in 1..=89 {
        assert!(
            !s.check_now(&[ruled(spread(rule * 1000 + 2), full, rule)])
                .admitted
        );
    }
    assert_no_key_locks(&s);
}

#[test]
fn a_busy_bucket_does_not_make_every_request_of_a_new_rule_scan() {
    // A full shard, 95 rules with a live bucket for the year, and one more whose bucket
    // (two requests per 2 ms, no key) is kept busy: the table is full and stays so. A
    // new rule asking every millisecond for a second finds no entry; a pass is retried
    // when the busy bucket could be idle (2 ms on), but at most every 100 ms.
    let (s, clock) = one_shard(1);
    let year = Duration::from_secs(366 * 86_400);
    assert!(
        s.check_now(&[ruled(spread(0), params(5, year), 0)])
            .admitted
    );
    for rule in 1..=94 {
        assert!(
            s.check_now(&[ruled(spread(rule), params(1, year), rule)])
                .admitted
        );
    }
    let busy = ruled(spread(95), params(2, Duration::from_millis(2)), 95);
    let late = ruled(spread(96), params(1, year), 96);
    let before = s
        .inner
        .overflow
        .passes
        .load(std::sync::atomic::Ordering::Relaxed);
    for ms in 0..1000 {
        let admitted = (0..3).filter(|_| s.check_now(&[busy]).admitted).count();
        assert_eq!(admitted, if ms == 0 { 2 } else { 1 }, "{ms}");
        clock.advance(Duration::from_millis(1));
        assert!(!s.check_now(&[late]).admitted);
    }
    let passes = s
        .inner
        .overflow
        .passes
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(passes <= 11, "{passes} passes");
    // Once the busy rule stops, its entry goes to the new rule within 100 ms.
    clock.advance(Duration::from_millis(100));
    assert!(s.check_now(&[late]).admitted);
}
