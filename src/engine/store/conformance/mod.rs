//! A conformance kit for [`Store`] implementations (feature `test-util`).
//!
//! Every property runs on a fresh store from your factory and panics, with the case that
//! failed, when the store departs from the engine's own decision ([`decide`](crate::gcra::decide)) or from the
//! rules in the [store docs](super):
//!
//! | property | what it checks |
//! |---|---|
//! | [`model`](Harness::model) | random quotas, keys, burst sizes, block periods, shadow checks, several checks per request and (with [`Time::Passed`]) random arrival times: every decision equals [`decide`](crate::gcra::decide) on a plain map of states |
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

use std::time::{Duration, Instant};

use super::{Store, Usage, UsageLimits};
use crate::engine::clock::Timestamp;
use crate::engine::gcra::{Check, Decision};
use model::Rng;

mod model;
mod properties;

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
}
