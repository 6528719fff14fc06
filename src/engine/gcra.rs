//! The GCRA decision, as pure functions over theoretical arrival times (TATs).
//!
//! A key's whole state is one `u64`: its TAT in nanoseconds on the store's clock. A key with
//! no state behaves exactly like one whose TAT is `<= now`, so a store may forget any key
//! whose TAT has passed without changing a single decision: that is what makes eviction of
//! idle keys lossless.
//!
//! [`decide`] handles several limits for one request at once: either every limit admits the
//! request and all of them are consumed, or none is consumed.

use std::time::Duration;

use crate::engine::quota::Quota;

/// GCRA parameters of one limit, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GcraParams {
    /// Emission interval `T = period / count`.
    pub interval_ns: u64,
    /// `burst × T`: how far the TAT may run ahead of now after admitting a request.
    pub limit_ns: u64,
    /// Once a request is refused, the key stays refused for this long (0 = no block).
    pub block_ns: u64,
}

impl GcraParams {
    /// Parameters for `quota`, with an optional block period (clamped to
    /// [`MAX_PERIOD`](crate::engine::quota::MAX_PERIOD), 366 days).
    pub fn new(quota: &Quota, block: Duration) -> GcraParams {
        let interval_ns = quota.interval_ns();
        GcraParams {
            interval_ns,
            // Validated by `Quota::with_burst` to be at most 2^60.
            limit_ns: interval_ns.saturating_mul(u64::from(quota.burst())),
            block_ns: block.min(crate::engine::quota::MAX_PERIOD).as_nanos() as u64,
        }
    }
}

/// One limit to decide for a request: which state (key) and which parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Check {
    /// The state's key: a keyed 64-bit hash of (rule name, request key).
    pub key: u64,
    /// The limit's parameters.
    pub params: GcraParams,
    /// A shadow limit is decided and counted but never refuses the request.
    pub shadow: bool,
    /// The id of the rule the check comes from: a keyed 64-bit hash, the same for every
    /// check of one rule and unrelated to its keys (the layer computes it once per rule).
    /// Stores use it for per-rule bookkeeping: the in-memory store keeps a share of its
    /// capacity per rule and, when full, decides a new key on its rule's *overflow bucket*
    /// (see [`MemoryStore`](crate::engine::store::MemoryStore)). `0` groups checks made outside
    /// any rule.
    pub rule: u64,
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

/// Decides `checks` at time `now` (ns) against their current TATs in `tats` (0 for a key
/// with no state), updating `tats` in place to the state to store.
///
/// Returns the decision and a mask of the entries of `tats` that changed and must be
/// written back. When the request is admitted, every limit is consumed; when it is refused,
/// none is, except that a limit with a block period that refuses a request for the first
/// time has its TAT pushed so the key stays refused until `now + block`. Requests refused
/// during the block do not extend it.
///
/// Checks beyond [`MAX_CHECKS`] are ignored; callers validate the count beforehand.
pub fn decide(now: u64, checks: &[Check], tats: &mut [u64]) -> (Decision, u64) {
    let (mut decision, changed) = decide_states(now, checks, tats);
    fill_headline(&mut decision, now, checks, tats);
    (decision, changed)
}

/// [`decide`] without [`Decision::headline`] (left at its default): the part a store
/// runs while it holds its keys. [`fill_headline`] completes the decision afterwards (it
/// needs a division per limit, and nothing else waits for it).
pub fn decide_states(now: u64, checks: &[Check], tats: &mut [u64]) -> (Decision, u64) {
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
pub fn fill_headline(decision: &mut Decision, now: u64, checks: &[Check], tats: &[u64]) {
    let n = checks.len().min(tats.len()).min(MAX_CHECKS);
    decision.headline = headline(now, &checks[..n], &tats[..n], decision);
}

/// What one limit does to its stored state at `now`: the single-check fast path of
/// [`decide`], split so that a store can compare-and-swap [`Step::new_state`] and build the
/// [`Decision`] (which needs a division) after releasing its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Whether the limit refused the request (shadow refusals included).
    pub denied: bool,
    /// The state to store, if it changes.
    pub new_state: Option<u64>,
    /// Until the request would be admitted (zero when admitted).
    pub wait_ns: u64,
}

impl Step {
    /// The step of `check` on state `stored` at `now`; identical to [`decide`] with one check.
    #[inline]
    pub fn of(now: u64, check: &Check, stored: u64) -> Step {
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
    pub fn decision(&self, now: u64, check: &Check, stored: u64) -> Decision {
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
pub fn checks_key(checks: &[Check]) -> u64 {
    checks.iter().fold(0x9E37_79B9_7F4A_7C15, |acc, c| {
        (acc ^ c.key)
            .rotate_left(23)
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Flag bit of a stored TAT: the key is serving a block period. TATs stay below 2^62:
/// clock readings (below 2^61 ns, 73 years of uptime) plus a limit (at most 2^60 ns) plus
/// a block period (at most 366 days).
pub const BLOCKED: u64 = 1 << 63;

/// The theoretical arrival time in a stored state (without the block flag).
pub fn tat_of(stored: u64) -> u64 {
    stored & !BLOCKED
}

/// Whether a stored state carries no information at `now`: forgetting the key changes no
/// decision.
pub fn is_idle(stored: u64, now: u64) -> bool {
    tat_of(stored) <= now
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
