//! The properties: each runs on a fresh store and panics with the failing case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::{pool, request, slow, Model, Rng, START};
use super::{Harness, Store, Time};
use crate::engine::gcra::{Check, Decision, LimitState};
use crate::engine::store::UsageLimits;

impl<S: Store, F: Fn() -> S> Harness<F> {
    /// Random requests; every decision equals [`decide`]'s on a model of the states.
    ///
    /// [`decide`]: crate::engine::gcra::decide
    pub async fn model(&self) {
        let store = (self.make)();
        let mut rng = Rng(self.seed);
        let own = self.time == Time::Own;
        let pool = pool(&mut rng, own, |i| self.key(1, i));
        let mut model = Model::default();
        let (started, mut now) = (Instant::now(), START);
        for op in 0..self.ops {
            if !own {
                now = now.saturating_add(Duration::from_micros(rng.below(400_000)));
            }
            let checks = request(&mut rng, &pool);
            let at = if own { START } else { now };
            let (mut want, limits) = model.decide(at, &checks);
            let got = self.ask(&store, now, &checks).await;
            let slack = self.slack(started);
            if own {
                accept_tie(&got, &mut want, &limits, slack);
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
        self.usage_fill_window(&store, key, both, hour).await;
        self.usage_lifetime_only(&store).await;
        if self.time == Time::Passed {
            self.usage_next_window(&store, key, both, hour).await;
        }
    }

    /// `key` (lifetime 3, window 2 per `window`) fills its window; the refusal after it
    /// consumes nothing and reports the reset; a read (amount zero) consumes nothing.
    async fn usage_fill_window(&self, store: &S, key: u64, both: UsageLimits, window: Duration) {
        let started = Instant::now();
        for used in 1..=2 {
            let u = self.usage(store, START, key, 1, both).await;
            assert!(u.admitted, "usage_quotas: unit {used} refused");
            assert_eq!(
                (u.lifetime_used, u.window_used),
                (used, used),
                "usage_quotas"
            );
        }
        let u = self.usage(store, START, key, 1, both).await;
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
            window.saturating_sub(resets) <= self.slack(started),
            "usage_quotas: window resets after {resets:?}"
        );
        let read = self.usage(store, START, key, 0, both).await;
        assert_eq!(
            (read.lifetime_used, read.window_used),
            (2, 2),
            "usage_quotas: a read consumed"
        );
        assert_eq!(read.lifetime_remaining(&both), Some(1));
        assert_eq!(read.window_remaining(&both), Some(0));
    }

    /// A lifetime-only limit of 2: two units in one call, then refused.
    async fn usage_lifetime_only(&self, store: &S) {
        let lifetime = UsageLimits {
            lifetime: Some(2),
            window: None,
        };
        let other = self.key(5, 1);
        assert!(self.usage(store, START, other, 2, lifetime).await.admitted);
        let u = self.usage(store, START, other, 1, lifetime).await;
        assert!(
            !u.admitted && u.lifetime_used == 2,
            "usage_quotas: lifetime limit"
        );
    }

    /// A window later (time passed in only), `key`'s window starts again while its
    /// lifetime count goes on: one unit admitted, the next refused by the lifetime limit.
    async fn usage_next_window(&self, store: &S, key: u64, both: UsageLimits, window: Duration) {
        let next = START.saturating_add(window);
        let u = self.usage(store, next, key, 1, both).await;
        assert!(u.admitted, "usage_quotas: the next window refused");
        assert_eq!(
            (u.lifetime_used, u.window_used),
            (3, 1),
            "usage_quotas: next window"
        );
        let u = self.usage(store, next, key, 1, both).await;
        assert!(
            !u.admitted,
            "usage_quotas: admitted past the lifetime limit"
        );
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

/// On its own clock a store sets states microseconds apart, which may break the model's
/// tie between two limits: where `got` names another limit that ties with `want`'s
/// headline (within `slack`) on what the headline is chosen by, `want` takes it.
fn accept_tie(got: &Decision, want: &mut Decision, limits: &[LimitState], slack: Duration) {
    if got.headline.index == want.headline.index {
        return;
    }
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
