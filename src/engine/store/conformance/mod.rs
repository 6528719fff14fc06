//! A conformance kit for [`Store`] implementations (feature `test-util`).
//!
//! Every property runs on a fresh store from your factory and panics, with the case that
//! failed, when the store departs from the engine's own decision ([`decide`]) or from the
//! rules in the [store docs](super):
//!
//! | property | what it checks |
//! |---|---|
//! | [`model`](Harness::model) | random quotas, keys, burst sizes, block periods, shadow checks, several checks per request and (with [`Time::Passed`]) random arrival times: every decision equals [`decide`] on a plain map of states |
//! | [`all_or_nothing`](Harness::all_or_nothing) | a request refused by one limit consumes none of the others |
//! | [`block_periods`](Harness::block_periods) | a refusal starts the block period; refusals during it do not extend it |
//! | [`shadow_limits`](Harness::shadow_limits) | a shadow limit is counted and reported, never refuses |
//! | [`usage_quotas`](Harness::usage_quotas) | lifetime and window counters, reads that consume nothing |
//! | [`contention`](Harness::contention) | concurrent requests on one hot key (and on a hot key plus each task's own) admit exactly the quota, all-or-nothing |
//!
//! ```
//! use tower_throttle::store::conformance::{Harness, Time};
//! use tower_throttle::store::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // In a test: `#[tokio::test(flavor = "multi_thread")] async fn conforms() { … }`.
//! Harness::new(MemoryStore::new, Time::Passed).run_all().await;
//! # });
//! ```
//!
//! **Time.** A store that decides at the time passed in ([`Time::Passed`], like
//! [`MemoryStore`](super::MemoryStore)) is driven at arrival times the kit picks, and
//! every field of every decision is compared exactly. A store that decides on its own
//! clock ([`Time::Own`], like the Redis store with `TIME`) cannot be driven: the kit then
//! sends every request as fast as it can, on limits whose intervals (minutes) dwarf the
//! run, and compares with the model taking all arrivals as simultaneous: `admitted`,
//! `denied_mask`, the headline's index and `remaining` exactly, and every duration
//! within the run's elapsed time (plus a millisecond for rounding); where the model's
//! headline is a tie between two limits (which states set microseconds apart may break
//! the other way), either limit is accepted. Refill over time is
//! then not exercised; the arithmetic is `decide`'s in both cases, so a store that
//! stores what `decide` returns and decides atomically passes either way.
//!
//! Run it on a `multi_thread` runtime, so that [`contention`](Harness::contention)'s
//! tasks really run in parallel. The generator is seeded ([`Harness::seed`]): a failure
//! replays exactly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Store, Usage, UsageLimits};
use crate::engine::clock::Timestamp;
use crate::engine::gcra::{decide, limit_state, Check, Decision, GcraParams, LimitState};
use crate::engine::quota::Quota;

/// Whose clock a store decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Time {
    /// The store decides at the `now` passed in (as the in-memory store does).
    Passed,
    /// The store decides on its own clock and ignores `now` (as the Redis store does).
    Own,
}

/// Runs the conformance properties on stores made by `make`. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Harness<F> {
    make: F,
    time: Time,
    seed: u64,
    ops: usize,
}

/// SplitMix64: a small seeded generator (no dependency).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The arrival time of the first request (any value works; not zero, to catch stores
/// that treat a zero timestamp specially).
const START: Timestamp = Timestamp::from_nanos(1_000_000_000);

fn params(count: u32, period: Duration, burst: u32, block: Duration) -> GcraParams {
    let quota = Quota::new(count, period)
        .and_then(|q| q.with_burst(burst))
        .unwrap_or_else(|e| panic!("conformance quota {count}/{period:?}: {e}"));
    GcraParams::new(&quota, block)
}

/// Minutes-long intervals (so arrivals are simultaneous next to them) in whole
/// milliseconds (so no store rounding changes them).
fn slow(count: u32, burst: u32, block_secs: u64) -> GcraParams {
    let period = Duration::from_secs(60 * u64::from(count));
    params(count, period, burst, Duration::from_secs(block_secs))
}

/// The plain reference: a map of states decided by [`decide`].
#[derive(Default)]
struct Model {
    states: HashMap<u64, u64>,
}

impl Model {
    /// The decision, and the state of every check after it.
    fn decide(&mut self, now: Timestamp, checks: &[Check]) -> (Decision, Vec<LimitState>) {
        let mut states: Vec<u64> = checks
            .iter()
            .map(|c| self.states.get(&c.key()).copied().unwrap_or(0))
            .collect();
        let (decision, changed) = decide(now, checks, &mut states);
        for (i, c) in checks.iter().enumerate() {
            if changed & (1 << i) != 0 {
                self.states.insert(c.key(), states[i]);
            }
        }
        let limits = checks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let stored = self.states.get(&c.key()).copied().unwrap_or(0);
                limit_state(now.as_nanos(), i, c.params(), stored)
            })
            .collect();
        (decision, limits)
    }
}

impl<S: Store, F: Fn() -> S> Harness<F> {
    /// A harness for the stores `make` returns (a fresh one per property), deciding on
    /// the clock `time` says.
    pub fn new(make: F, time: Time) -> Harness<F> {
        Harness {
            make,
            time,
            seed: 0x005E_ED0F_C0FF_EE00,
            ops: 2000,
        }
    }

    /// Seeds the generator (default: a fixed seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Requests per [`model`](Harness::model) run (default 2,000).
    pub fn ops(mut self, ops: usize) -> Self {
        self.ops = ops;
        self
    }

    /// Every property, in the order of the module docs.
    pub async fn run_all(&self) {
        self.model().await;
        self.all_or_nothing().await;
        self.block_periods().await;
        self.shadow_limits().await;
        self.usage_quotas().await;
        self.contention().await;
    }

    /// Keys unique to one property and seed, so that properties never share state even
    /// on a store the factory does not reset.
    fn key(&self, property: u64, i: u64) -> u64 {
        let mut rng = Rng(self.seed ^ property.wrapping_mul(0xA24B_AED4_963E_E407) ^ i);
        rng.next()
    }

    async fn ask(&self, store: &S, now: Timestamp, checks: &[Check]) -> Decision {
        store
            .check(now, checks)
            .await
            .unwrap_or_else(|e| panic!("store failed on {checks:?}: {e}"))
    }

    /// Asserts that `got` is `want`: exactly, or (own clock) up to `slack` on durations.
    fn expect(&self, got: &Decision, want: &Decision, slack: Duration, case: &dyn Fn() -> String) {
        let exact = |d: &Decision| {
            (
                d.admitted,
                d.denied_mask,
                d.headline.index,
                d.headline.remaining,
            )
        };
        assert_eq!(exact(got), exact(want), "{}", case());
        let near = |a: Duration, b: Duration| a.abs_diff(b) <= slack;
        let durations = |d: &Decision| {
            (
                d.retry_after,
                d.headline.reset_after,
                d.headline.retry_after,
            )
        };
        let (g, w) = (durations(got), durations(want));
        assert!(
            near(g.0, w.0) && near(g.1, w.1) && near(g.2, w.2),
            "{}: durations {g:?}, expected {w:?} (slack {slack:?})",
            case()
        );
    }

    /// How far an own-clock store's durations may be from the model's: the run so far.
    fn slack(&self, started: Instant) -> Duration {
        match self.time {
            Time::Passed => Duration::ZERO,
            Time::Own => started.elapsed() + Duration::from_millis(1),
        }
    }

    /// Random requests; every decision equals [`decide`]'s on a model of the states.
    pub async fn model(&self) {
        let store = (self.make)();
        let mut rng = Rng(self.seed);
        let own = self.time == Time::Own;
        // A pool of keys, each with its own limit (as a rule gives every key of it).
        let pool: Vec<Check> = (0..24)
            .map(|i| {
                let count = 1 + rng.below(6) as u32;
                let burst = 1 + rng.below(8) as u32;
                let block = if rng.below(4) == 0 {
                    1 + rng.below(600)
                } else {
                    0
                };
                let p = if own {
                    slow(count, burst, block)
                } else {
                    // Whole milliseconds: a store keeping microseconds rounds nothing.
                    let interval = 1 + rng.below(1_000);
                    let period = Duration::from_millis(interval * u64::from(count));
                    params(count, period, burst, Duration::from_millis(block * 10))
                };
                Check::new(self.key(1, i), p)
                    .with_shadow(rng.below(6) == 0)
                    .with_rule(i % 3)
            })
            .collect();
        let mut model = Model::default();
        let (started, mut now) = (Instant::now(), START);
        for op in 0..self.ops {
            if !own {
                now = now.saturating_add(Duration::from_micros(rng.below(400_000)));
            }
            let n = 1 + rng.below(3) as usize;
            let checks: Vec<Check> = (0..n)
                .map(|_| pool[rng.below(pool.len() as u64) as usize])
                .collect();
            let at = if own { START } else { now };
            let (mut want, limits) = model.decide(at, &checks);
            let got = self.ask(&store, now, &checks).await;
            let slack = self.slack(started);
            if own && got.headline.index != want.headline.index {
                // On its own clock a store sets states microseconds apart, which may
                // break the model's tie between two limits: accept the other limit if
                // it ties (within the slack) on what the headline is chosen by.
                let other = limits[got.headline.index.min(limits.len() - 1)];
                let ties = if want.admitted {
                    other.remaining == want.headline.remaining
                } else {
                    other.retry_after.abs_diff(want.headline.retry_after) <= slack
                };
                if ties {
                    want.headline = other;
                }
            }
            let case = || {
                format!(
                    "model, seed {:#x}, request {op} at {now:?}: {checks:?}",
                    self.seed
                )
            };
            self.expect(&got, &want, slack, &case);
        }
    }

    /// A request refused by one limit consumes none of its other limits.
    pub async fn all_or_nothing(&self) {
        let store = (self.make)();
        let wide = Check::new(self.key(2, 0), slow(100, 100, 0));
        let narrow = Check::new(self.key(2, 1), slow(2, 2, 0));
        for _ in 0..2 {
            assert!(self.ask(&store, START, &[wide, narrow]).await.admitted);
        }
        for i in 0..10 {
            let d = self.ask(&store, START, &[wide, narrow]).await;
            assert!(
                !d.admitted,
                "all_or_nothing: request {i} admitted past the narrow limit"
            );
            assert_eq!(d.denied_mask, 0b10, "all_or_nothing: request {i}");
        }
        // The refused requests spent nothing of the wide limit: 98 of 100 remain.
        let d = self.ask(&store, START, &[wide]).await;
        assert!(d.admitted);
        assert_eq!(
            d.headline.remaining, 97,
            "all_or_nothing: the wide limit was consumed"
        );
    }

    /// A refusal starts the block period, and refusals during it do not extend it.
    pub async fn block_periods(&self) {
        let store = (self.make)();
        let block = Duration::from_secs(600);
        let c = Check::new(self.key(3, 0), slow(2, 2, block.as_secs()));
        let started = Instant::now();
        for _ in 0..2 {
            assert!(self.ask(&store, START, &[c]).await.admitted);
        }
        let first = self.ask(&store, START, &[c]).await;
        assert!(!first.admitted, "block_periods: admitted past the limit");
        let slack = self.slack(started);
        assert!(
            first.retry_after.abs_diff(block) <= slack,
            "block_periods: first refusal waits {:?}, expected the block {block:?}",
            first.retry_after
        );
        let later = match self.time {
            Time::Passed => START.saturating_add(Duration::from_secs(300)),
            Time::Own => START,
        };
        let during = self.ask(&store, later, &[c]).await;
        assert!(!during.admitted, "block_periods: admitted during the block");
        let left = block - later.saturating_duration_since(START);
        assert!(
            during.retry_after <= left && left - during.retry_after <= self.slack(started),
            "block_periods: a refusal during the block waits {:?}, expected {left:?} (not extended)",
            during.retry_after
        );
        if self.time == Time::Passed {
            let after = START.saturating_add(block);
            assert!(
                self.ask(&store, after, &[c]).await.admitted,
                "block_periods: still refused after the block"
            );
        }
    }

    /// A shadow limit is decided and reported but never refuses.
    pub async fn shadow_limits(&self) {
        let store = (self.make)();
        let shadow = Check::new(self.key(4, 0), slow(1, 1, 60)).with_shadow(true);
        let enforced = Check::new(self.key(4, 1), slow(10, 10, 0));
        assert!(self.ask(&store, START, &[shadow, enforced]).await.admitted);
        for i in 0..3 {
            let d = self.ask(&store, START, &[shadow, enforced]).await;
            assert!(
                d.admitted,
                "shadow_limits: request {i} refused by a shadow limit"
            );
            assert_eq!(d.denied_mask, 0b01, "shadow_limits: request {i}");
            assert_eq!(d.retry_after, Duration::ZERO, "shadow_limits: request {i}");
        }
        // The enforced limit counted all four.
        let d = self.ask(&store, START, &[enforced]).await;
        assert_eq!(
            d.headline.remaining, 5,
            "shadow_limits: enforced limit miscounted"
        );
    }

    async fn usage(
        &self,
        store: &S,
        now: Timestamp,
        key: u64,
        amount: u64,
        l: UsageLimits,
    ) -> Usage {
        store
            .consume_usage(now, key, amount, l)
            .await
            .unwrap_or_else(|e| panic!("store failed on usage {key:#x}: {e}"))
    }

    /// Lifetime and window counters: consumed only when every limit has room; reading
    /// (amount zero) consumes nothing.
    pub async fn usage_quotas(&self) {
        let store = (self.make)();
        let hour = Duration::from_secs(3600);
        let both = UsageLimits {
            lifetime: Some(3),
            window: Some((2, hour)),
        };
        let key = self.key(5, 0);
        let started = Instant::now();
        for used in 1..=2 {
            let u = self.usage(&store, START, key, 1, both).await;
            assert!(u.admitted, "usage_quotas: unit {used} refused");
            assert_eq!(
                (u.lifetime_used, u.window_used),
                (used, used),
                "usage_quotas"
            );
        }
        let u = self.usage(&store, START, key, 1, both).await;
        assert!(!u.admitted, "usage_quotas: admitted past the window limit");
        assert_eq!(
            (u.lifetime_used, u.window_used),
            (2, 2),
            "usage_quotas: refused but consumed"
        );
        let resets = u
            .window_resets_after
            .expect("usage_quotas: no window reset reported");
        assert!(
            hour.saturating_sub(resets) <= self.slack(started),
            "usage_quotas: window resets after {resets:?}"
        );
        let read = self.usage(&store, START, key, 0, both).await;
        assert_eq!(
            (read.lifetime_used, read.window_used),
            (2, 2),
            "usage_quotas: a read consumed"
        );
        assert_eq!(read.lifetime_remaining(&both), Some(1));
        assert_eq!(read.window_remaining(&both), Some(0));
        let lifetime = UsageLimits {
            lifetime: Some(2),
            window: None,
        };
        let other = self.key(5, 1);
        assert!(self.usage(&store, START, other, 2, lifetime).await.admitted);
        let u = self.usage(&store, START, other, 1, lifetime).await;
        assert!(
            !u.admitted && u.lifetime_used == 2,
            "usage_quotas: lifetime limit"
        );
        if self.time == Time::Passed {
            let next = START.saturating_add(hour);
            let u = self.usage(&store, next, key, 1, both).await;
            assert!(u.admitted, "usage_quotas: the next window refused");
            assert_eq!(
                (u.lifetime_used, u.window_used),
                (3, 1),
                "usage_quotas: next window"
            );
            let u = self.usage(&store, next, key, 1, both).await;
            assert!(
                !u.admitted,
                "usage_quotas: admitted past the lifetime limit"
            );
        }
    }

    /// Concurrent requests: one hot key admits exactly its quota; with each task's own key
    /// alongside, each own key is consumed by exactly its task's admitted requests.
    pub async fn contention(&self) {
        const TASKS: u64 = 8;
        const EACH: usize = 40;
        let store = Arc::new((self.make)());
        let hot = Check::new(self.key(6, 0), slow(100, 100, 0));
        let own = |t: u64| {
            Check::new(
                self.key(6, 1 + t),
                slow(EACH as u32 + 1, EACH as u32 + 1, 0),
            )
        };
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (store, mine) = (Arc::clone(&store), own(t));
                tokio::spawn(async move {
                    let (mut singles, mut pairs) = (0u64, 0u64);
                    for i in 0..EACH {
                        let checks: &[Check] = if i % 2 == 0 { &[hot] } else { &[mine, hot] };
                        let d = store.check(START, checks).await.expect("store failed");
                        match (d.admitted, checks.len()) {
                            (true, 1) => singles += 1,
                            (true, _) => pairs += 1,
                            _ => {}
                        }
                    }
                    (singles, pairs)
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("contention task panicked"));
        }
        let admitted: u64 = results.iter().map(|(s, p)| s + p).sum();
        assert_eq!(
            admitted, 100,
            "contention: the hot key admitted {admitted} of its 100"
        );
        for (t, &(_, pairs)) in results.iter().enumerate() {
            let d = self.ask(&store, START, &[own(t as u64)]).await;
            let expected = EACH as u64 + 1 - pairs - 1;
            assert_eq!(
                d.headline.remaining, expected,
                "contention: task {t}'s own key after {pairs} admitted pairs"
            );
        }
    }
}
