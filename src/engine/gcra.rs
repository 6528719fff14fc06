//! The GCRA decision, as pure functions over theoretical arrival times (TATs).
//!
//! A key's whole state is one `u64` (its layout: `engine::state`): its TAT in nanoseconds
//! on the caller's clock, plus a flag while it serves a block period. A key with no state
//! (0) behaves exactly like one whose TAT is `<= now`, so a store may forget any key once
//! [`idle_at`] has passed without changing a single decision: that is what makes eviction
//! and expiry of idle keys lossless.
//!
//! [`decide`] handles several limits for one request at once: either every limit admits the
//! request and all of them are consumed, or none is consumed.
//!
//! ```
//! use std::time::Duration;
//! use tower_throttle::clock::Timestamp;
//! use tower_throttle::gcra::{decide, Check, GcraParams};
//! use tower_throttle::Quota;
//!
//! let params = GcraParams::new(&Quota::per_second(2)?, Duration::ZERO);
//! let checks = [Check::new(7, params)];
//! let mut states = [0u64]; // key 7 has no state yet
//! for admitted in [true, true, false] {
//!     let (decision, changed) = decide(Timestamp::ZERO, &checks, &mut states);
//!     assert_eq!(decision.admitted, admitted);
//!     assert_eq!(changed != 0, admitted); // what to write back
//! }
//! # Ok::<(), tower_throttle::QuotaError>(())
//! ```

use std::time::Duration;

use crate::engine::clock::Timestamp;
use crate::engine::quota::Quota;
pub(crate) use crate::engine::state::{is_idle, tat_of, BLOCKED};

/// GCRA parameters of one limit, in nanoseconds: built from a [`Quota`], read by stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GcraParams {
    /// Emission interval `T = period / count` (at least 1).
    pub(crate) interval_ns: u64,
    /// `burst × T`: how far the TAT may run ahead of now after admitting a request.
    pub(crate) limit_ns: u64,
    /// Once a request is refused, the key stays refused for this long (0 = no block).
    pub(crate) block_ns: u64,
}

impl GcraParams {
    /// Parameters for `quota`, with an optional block period (clamped to
    /// [`MAX_PERIOD`](crate::engine::quota::MAX_PERIOD), 366 days).
    pub fn new(quota: &Quota, block: Duration) -> GcraParams {
        let interval_ns = quota.interval_ns();
        GcraParams {
            interval_ns,
            // Validated by `Quota::with_burst` to be at most `state::MAX_LIMIT_NS`.
            limit_ns: interval_ns.saturating_mul(u64::from(quota.burst())),
            block_ns: block.min(crate::engine::quota::MAX_PERIOD).as_nanos() as u64,
        }
    }

    /// Emission interval `T = period / count`, in nanoseconds (at least 1).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// `burst × T`, in nanoseconds: how far the TAT may run ahead of now after admitting
    /// a request.
    pub fn limit_ns(&self) -> u64 {
        self.limit_ns
    }

    /// The block period in nanoseconds (0: none).
    pub fn block_ns(&self) -> u64 {
        self.block_ns
    }

    /// The parameters in whole multiples of `unit_ns` (at least 1), never more permissive:
    /// the interval and the block rounded up, the burst kept. For a store that keeps
    /// coarser time than nanoseconds (the Redis store keeps microseconds): decide with
    /// these, on timestamps and states in the same unit, and its decisions are exactly
    /// [`decide`]'s.
    pub fn rounded_up_to(&self, unit_ns: u64) -> GcraParams {
        let unit = unit_ns.max(1);
        let interval = self.interval_ns.div_ceil(unit).max(1) * unit;
        let burst = (self.limit_ns / self.interval_ns.max(1)).max(1);
        GcraParams {
            interval_ns: interval,
            limit_ns: interval.saturating_mul(burst),
            block_ns: self.block_ns.div_ceil(unit).saturating_mul(unit),
        }
    }
}

/// One limit to decide for a request: which state (key) and which parameters.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::gcra::{Check, GcraParams};
/// use tower_throttle::Quota;
///
/// let params = GcraParams::new(&Quota::per_minute(60)?, Duration::ZERO);
/// let check = Check::new(42, params).with_rule(7).with_shadow(true);
/// assert_eq!((check.key(), check.rule(), check.is_shadow()), (42, 7, true));
/// # Ok::<(), tower_throttle::QuotaError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Check {
    pub(crate) key: u64,
    pub(crate) params: GcraParams,
    pub(crate) shadow: bool,
    pub(crate) rule: u64,
}

impl Check {
    /// An enforced check of state `key` with `params`, outside any rule.
    pub const fn new(key: u64, params: GcraParams) -> Check {
        Check {
            key,
            params,
            shadow: false,
            rule: 0,
        }
    }

    /// Makes the check a shadow one (or not): decided and counted, but it never refuses
    /// the request.
    pub const fn with_shadow(mut self, shadow: bool) -> Check {
        self.shadow = shadow;
        self
    }

    /// Sets the id of the rule the check comes from (see [`Check::rule`]).
    pub const fn with_rule(mut self, rule: u64) -> Check {
        self.rule = rule;
        self
    }

    /// The state's key: a keyed 64-bit hash of (rule name, request key).
    pub const fn key(&self) -> u64 {
        self.key
    }

    /// The limit's parameters.
    pub const fn params(&self) -> &GcraParams {
        &self.params
    }

    /// Whether the check is a shadow one.
    pub const fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// The id of the rule the check comes from: a keyed 64-bit hash, the same for every
    /// check of one rule and unrelated to its keys (the layer computes it once per rule).
    /// Stores may use it for per-rule bookkeeping: the in-memory store keeps a share of
    /// its capacity per rule and, when full, decides a new key on its rule's *overflow
    /// bucket* (see [`MemoryStore`](crate::engine::store::MemoryStore)). `0` groups checks
    /// made outside any rule.
    pub const fn rule(&self) -> u64 {
        self.rule
    }
}

/// Remaining capacity and timing of one limit after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitState {
    /// Index of the check in the request's list.
    pub index: usize,
    /// Requests that would still be admitted right now.
    pub remaining: u64,
    /// Until the limit is back at full capacity.
    pub reset_after: Duration,
    /// Until a request would be admitted by this limit (zero when it admits now).
    pub retry_after: Duration,
}

/// The outcome of deciding all limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Whether the request is admitted (every enforced limit admits it).
    pub admitted: bool,
    /// Bit `i` is set when check `i` refused the request (shadow checks included).
    pub denied_mask: u64,
    /// Until the request would be admitted by every enforced limit (zero when admitted).
    pub retry_after: Duration,
    /// The limit to report in headers: when refused, the enforced limit with the longest
    /// wait; when admitted, the limit with the fewest remaining requests (ties: the later
    /// reset).
    pub headline: LimitState,
}

/// The most checks one request may carry (one bit each in [`Decision::denied_mask`]).
pub const MAX_CHECKS: usize = 64;

fn ns(d: u64) -> Duration {
    Duration::from_nanos(d)
}

/// Decides `checks` at `now` against their current states in `states` (0 for a key with
/// no state), updating `states` in place to the states to store.
///
/// Returns the decision and a mask of the entries of `states` that changed and must be
/// written back (bit `i`: `states[i]`). When the request is admitted, every limit is
/// consumed; when it is refused, none is, except that a limit with a block period that
/// refuses a request for the first time has its state pushed so the key stays refused
/// until `now + block`. Requests refused during the block do not extend it.
///
/// States are opaque words: store them as they are (a store may drop one once
/// [`idle_at`] has passed). Timestamps above 2^61 ns are capped. Checks beyond
/// [`MAX_CHECKS`] are ignored; callers validate the count beforehand.
pub fn decide(now: Timestamp, checks: &[Check], states: &mut [u64]) -> (Decision, u64) {
    let now = now.as_nanos().min(crate::engine::state::MAX_NOW);
    let (mut decision, changed) = decide_states(now, checks, states);
    fill_headline(&mut decision, now, checks, states);
    (decision, changed)
}

/// From when on a stored state carries no information: a store may forget (expire) the
/// key at that instant without changing any decision.
pub fn idle_at(state: u64) -> Timestamp {
    Timestamp::from_nanos(tat_of(state))
}

/// [`decide`] without [`Decision::headline`] (left at its default): the part a store
/// runs while it holds its keys. [`fill_headline`] completes the decision afterwards (it
/// needs a division per limit, and nothing else waits for it).
pub(crate) fn decide_states(now: u64, checks: &[Check], tats: &mut [u64]) -> (Decision, u64) {
    let n = checks.len().min(tats.len()).min(MAX_CHECKS);
    let mut decision = Decision {
        admitted: true,
        ..Decision::default()
    };
    for i in 0..n {
        if Step::of(now, &checks[i], tats[i]).denied {
            decision.denied_mask |= 1 << i;
            decision.admitted &= checks[i].shadow;
        }
    }
    // Admitted: every limit that admits is consumed. Refused: only the block periods that
    // refusing starts are stored (a shadow refusal never blocks). Steps are recomputed
    // rather than kept: they are a few additions, and room for 64 would be zeroed per call.
    let mut changed = 0u64;
    let mut worst_wait = 0u64;
    for i in 0..n {
        let step = Step::of(now, &checks[i], tats[i]);
        if !decision.admitted {
            worst_wait = worst_wait.max(step.wait_ns);
        }
        // Admitted: the limits that admit it; refused: the ones that refuse it.
        let applies = step.denied != decision.admitted;
        if let (true, Some(new)) = (applies, step.new_state) {
            tats[i] = new;
            changed |= 1 << i;
        }
    }
    decision.retry_after = ns(worst_wait);
    (decision, changed)
}

/// Sets `decision.headline` from the TATs [`decide_states`] left in `tats`.
pub(crate) fn fill_headline(decision: &mut Decision, now: u64, checks: &[Check], tats: &[u64]) {
    let n = checks.len().min(tats.len()).min(MAX_CHECKS);
    decision.headline = headline(now, &checks[..n], &tats[..n], decision);
}

/// What one limit does to its stored state at `now`: the single-check fast path of
/// [`decide`], split so that a store can compare-and-swap [`Step::new_state`] and build the
/// [`Decision`] (which needs a division) after releasing its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// Whether the limit refused the request (shadow refusals included).
    pub(crate) denied: bool,
    /// The state to store, if it changes.
    pub(crate) new_state: Option<u64>,
    /// Until the request would be admitted (zero when admitted).
    pub(crate) wait_ns: u64,
}

impl Step {
    /// The step of `check` on state `stored` at `now`; identical to [`decide`] with one check.
    #[inline]
    pub(crate) fn of(now: u64, check: &Check, stored: u64) -> Step {
        let p = &check.params;
        let tat = tat_of(stored).max(now);
        let ahead = tat + p.interval_ns - now;
        if ahead <= p.limit_ns {
            return Step {
                denied: false,
                new_state: Some(tat + p.interval_ns),
                wait_ns: 0,
            };
        }
        if check.shadow {
            return Step {
                denied: true,
                new_state: None,
                wait_ns: 0,
            };
        }
        let mut step = Step {
            denied: true,
            new_state: None,
            wait_ns: ahead - p.limit_ns,
        };
        if p.block_ns > 0 && stored & BLOCKED == 0 {
            let blocked_tat = now
                .saturating_add(p.block_ns)
                .saturating_add(p.limit_ns - p.interval_ns);
            if blocked_tat > stored {
                step.new_state = Some(blocked_tat | BLOCKED);
                step.wait_ns = step.wait_ns.max(p.block_ns);
            }
        }
        step
    }

    /// The decision, given the state now stored (`new_state` if it was written).
    #[inline]
    pub(crate) fn decision(&self, now: u64, check: &Check, stored: u64) -> Decision {
        Decision {
            admitted: !self.denied || check.shadow,
            denied_mask: u64::from(self.denied),
            retry_after: ns(self.wait_ns),
            headline: state(now, 0, &check.params, tat_of(stored)),
        }
    }
}

/// One 64-bit key for the set of keys of `checks` (order-sensitive), for per-request
/// bookkeeping such as FIFO queues and refusal caches.
pub(crate) fn checks_key(checks: &[Check]) -> u64 {
    checks.iter().fold(0x9E37_79B9_7F4A_7C15, |acc, c| {
        (acc ^ c.key)
            .rotate_left(23)
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// State of check `i` on its stored state after a decision at `now`.
#[cfg(feature = "test-util")]
pub(crate) fn limit_state(now: u64, i: usize, p: &GcraParams, stored: u64) -> LimitState {
    state(now, i, p, tat_of(stored))
}

/// State of check `i` given its (post-decision) TAT.
fn state(now: u64, i: usize, p: &GcraParams, tat: u64) -> LimitState {
    let ahead = tat.saturating_sub(now);
    // Room for further requests: each needs T of slack under `limit`.
    let remaining = p.limit_ns.saturating_sub(ahead) / p.interval_ns;
    let next = tat.max(now) + p.interval_ns - now;
    LimitState {
        index: i,
        remaining,
        reset_after: ns(ahead),
        retry_after: ns(next.saturating_sub(p.limit_ns)),
    }
}

fn headline(now: u64, checks: &[Check], tats: &[u64], d: &Decision) -> LimitState {
    // Chosen on plain integers; the winner's state is built once. Admitted: the fewest
    // remaining, ties to the later reset, then to the first. Refused: the longest wait
    // among the enforced limits that refused, ties to the last.
    let mut best: Option<(usize, u64, u64)> = None;
    for (i, c) in checks.iter().enumerate() {
        let p = &c.params;
        let tat = tat_of(tats[i]);
        let candidate = if d.admitted {
            let ahead = tat.saturating_sub(now);
            let remaining = p.limit_ns.saturating_sub(ahead) / p.interval_ns;
            let better =
                best.is_none_or(|(_, r, a)| remaining < r || (remaining == r && ahead > a));
            better.then_some((i, remaining, ahead))
        } else if !c.shadow && d.denied_mask & (1 << i) != 0 {
            let wait = (tat.max(now) + p.interval_ns - now).saturating_sub(p.limit_ns);
            let better = best.is_none_or(|(_, w, _)| wait >= w);
            better.then_some((i, wait, 0))
        } else {
            None
        };
        if candidate.is_some() {
            best = candidate;
        }
    }
    best.map_or_else(LimitState::default, |(i, _, _)| {
        state(now, i, &checks[i].params, tat_of(tats[i]))
    })
}

#[cfg(test)]
mod tests;
