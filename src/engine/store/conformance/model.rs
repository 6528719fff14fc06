//! The reference the properties compare with ([`Model`]: a plain map of states decided
//! by [`decide`]), the seeded generator and the limits the properties use.

use std::collections::HashMap;
use std::time::Duration;

use crate::engine::clock::Timestamp;
use crate::engine::gcra::{decide, limit_state, Check, Decision, GcraParams, LimitState};
use crate::engine::quota::Quota;

/// SplitMix64: a small seeded generator (no dependency).
#[derive(Debug, Clone)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The arrival time of the first request (any value works; not zero, to catch stores
/// that treat a zero timestamp specially).
pub(super) const START: Timestamp = Timestamp::from_nanos(1_000_000_000);

pub(super) fn params(count: u32, period: Duration, burst: u32, block: Duration) -> GcraParams {
    let quota = Quota::new(count, period)
        .and_then(|q| q.with_burst(burst))
        .unwrap_or_else(|e| panic!("conformance quota {count}/{period:?}: {e}"));
    GcraParams::new(&quota, block)
}

/// Minutes-long intervals (so arrivals are simultaneous next to them) in whole
/// milliseconds (so no store rounding changes them).
pub(super) fn slow(count: u32, burst: u32, block_secs: u64) -> GcraParams {
    let period = Duration::from_secs(60 * u64::from(count));
    params(count, period, burst, Duration::from_secs(block_secs))
}

/// The plain reference: a map of states decided by [`decide`].
#[derive(Default)]
pub(super) struct Model {
    states: HashMap<u64, u64>,
}

impl Model {
    /// The decision, and the state of every check after it.
    pub(super) fn decide(
        &mut self,
        now: Timestamp,
        checks: &[Check],
    ) -> (Decision, Vec<LimitState>) {
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

/// A pool of 24 keys, each with its own random limit (as a rule gives every key of it):
/// minutes-long limits for an own-clock store, whole milliseconds otherwise (so that a
/// store keeping microseconds rounds nothing). `key(i)` names key `i`.
pub(super) fn pool(rng: &mut Rng, own: bool, key: impl Fn(u64) -> u64) -> Vec<Check> {
    (0..24)
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
                let interval = 1 + rng.below(1_000);
                let period = Duration::from_millis(interval * u64::from(count));
                params(count, period, burst, Duration::from_millis(block * 10))
            };
            Check::new(key(i), p)
                .with_shadow(rng.below(6) == 0)
                .with_rule(i % 3)
        })
        .collect()
}

/// One to three checks drawn from `pool` (repeats allowed: a request may carry one key
/// twice).
pub(super) fn request(rng: &mut Rng, pool: &[Check]) -> Vec<Check> {
    let n = 1 + rng.below(3) as usize;
    (0..n)
        .map(|_| pool[rng.below(pool.len() as u64) as usize])
        .collect()
}
