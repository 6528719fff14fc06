//! A retry budget shared by every clone of a client (Finagle / tower style).
//!
//! Over a sliding window of `ttl`, retries may add at most `retry_ratio` of the original
//! requests deposited in that window, plus a fixed reserve of `min_per_second × ttl`
//! retries that keeps low-traffic clients able to retry at all:
//!
//! ```text
//! available = min_per_second × ttl_secs + ⌊deposits × retry_ratio⌋ − withdrawals
//! ```
//!
//! where `deposits` and `withdrawals` count only events still inside the window.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Number of time slots in the sliding window.
const SLOTS: usize = 10;
/// `retry_ratio` is kept in millionths so the arithmetic stays integral.
const PPM: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;
/// The largest accepted `retry_ratio`.
const MAX_RATIO: f32 = 1000.0;

/// Why a [`RetryBudget`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetError {
    /// The window `ttl` was zero.
    ZeroTtl,
    /// The retry ratio was NaN, negative or above 1000.
    BadRatio,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetError::ZeroTtl => "retry budget ttl must be longer than zero",
            BudgetError::BadRatio => "retry budget ratio must be a number in [0, 1000]",
        })
    }
}

impl std::error::Error for BudgetError {}

/// Counts recorded during one time slot.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    deposits: u64,
    withdrawals: u64,
}

/// The sliding window: a ring of [`SLOTS`] slots, the newest being slot number `current`
/// (counted from the budget's creation) stored at `current % SLOTS`.
#[derive(Debug, Default)]
struct Window {
    current: u64,
    slots: [Slot; SLOTS],
}

impl Window {
    /// Moves the window forward to slot number `now`, clearing the slots it leaves.
    fn advance(&mut self, now: u64) {
        if now <= self.current {
            return;
        }
        let gap = now - self.current;
        if gap >= SLOTS as u64 {
            self.slots = [Slot::default(); SLOTS];
        } else {
            for n in self.current + 1..=now {
                if let Some(slot) = self.slots.get_mut(ring_index(n)) {
                    *slot = Slot::default();
                }
            }
        }
        self.current = now;
    }

    fn newest(&mut self) -> Option<&mut Slot> {
        self.slots.get_mut(ring_index(self.current))
    }

    fn totals(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(d, w), slot| {
            (
                d.saturating_add(slot.deposits),
                w.saturating_add(slot.withdrawals),
            )
        })
    }
}

/// Where slot number `n` lives in the ring.
fn ring_index(n: u64) -> usize {
    // The remainder is below `SLOTS`, so it always fits a `usize`.
    usize::try_from(n % SLOTS as u64).unwrap_or(0)
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    slot_nanos: u128,
    reserve: u64,
    ratio_ppm: u64,
    window: Mutex<Window>,
}

/// A retry budget: limits retries to a fraction of recent original requests plus a small
/// per-second floor. Clones share one budget.
///
/// Semantics, exactly:
///
/// * The window `ttl` is split into 10 slots of `ttl / 10` each (at least 1 ns), aligned to
///   the budget's creation time on tokio's clock ([`tokio::time::Instant`], so paused-time
///   tests are exact). An event recorded in a slot stays in the window until 10 slots
///   later, i.e. for between `0.9 × ttl` and `ttl`.
/// * [`deposit`](Self::deposit) records an original request; [`withdraw`](Self::withdraw)
///   records a retry if one is available.
/// * `available = reserve + ⌊deposits_in_window × retry_ratio⌋ − withdrawals_in_window`
///   (never below 0), where `reserve = ⌊min_per_second × ttl⌋` retries (`ttl` in seconds,
///   fractional seconds included) and `retry_ratio` is rounded to the nearest millionth.
///   All arithmetic is integral and saturating.
///
/// With the defaults (10 s, 10/s, 0.2) a client may retry 100 times per 10 s regardless of
/// traffic, plus one retry per five requests.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

impl RetryBudget {
    /// A budget over a sliding window of `ttl`, with a floor of `min_per_second` retries
    /// per second of `ttl` and `retry_ratio` retries per deposited request.
    ///
    /// Fails when `ttl` is zero or `retry_ratio` is NaN, negative or above 1000.
    pub fn new(
        ttl: Duration,
        min_per_second: u32,
        retry_ratio: f32,
    ) -> Result<RetryBudget, BudgetError> {
        if ttl.is_zero() {
            return Err(BudgetError::ZeroTtl);
        }
        if retry_ratio.is_nan() || !(0.0..=MAX_RATIO).contains(&retry_ratio) {
            return Err(BudgetError::BadRatio);
        }
        // In [0, 1e9] and finite, so the cast is exact after rounding.
        let ratio_ppm = (f64::from(retry_ratio) * 1e6).round() as u64;
        Ok(RetryBudget::build(ttl, min_per_second, ratio_ppm))
    }

    /// The default budget: `ttl` 10 s, 10 retries per second floor, ratio 0.2.
    pub fn default_budget() -> RetryBudget {
        RetryBudget::build(Duration::from_secs(10), 10, 200_000)
    }

    fn build(ttl: Duration, min_per_second: u32, ratio_ppm: u64) -> RetryBudget {
        let ttl_nanos = ttl.as_nanos();
        let reserve = u128::from(min_per_second).saturating_mul(ttl_nanos) / NANOS_PER_SEC;
        RetryBudget {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                slot_nanos: (ttl_nanos / SLOTS as u128).max(1),
                reserve: u64::try_from(reserve).unwrap_or(u64::MAX),
                ratio_ppm,
                window: Mutex::new(Window::default()),
            }),
        }
    }

    /// Runs `f` on the window moved forward to the current time.
    fn with_window<R>(&self, f: impl FnOnce(&mut Window) -> R) -> R {
        let inner = &*self.inner;
        let elapsed = Instant::now().saturating_duration_since(inner.epoch);
        let slot = u64::try_from(elapsed.as_nanos() / inner.slot_nanos).unwrap_or(u64::MAX);
        // The lock is never held across a panic, but recover from poisoning regardless.
        let mut window = inner.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.advance(slot);
        f(&mut window)
    }

    fn available_in(&self, window: &Window) -> u64 {
        let (deposits, withdrawals) = window.totals();
        let earned = u128::from(deposits) * u128::from(self.inner.ratio_ppm) / PPM;
        let total = u128::from(self.inner.reserve).saturating_add(earned);
        u64::try_from(total.saturating_sub(u128::from(withdrawals))).unwrap_or(u64::MAX)
    }

    /// Record one original request (not a retry).
    pub fn deposit(&self) {
        self.with_window(|window| {
            if let Some(slot) = window.newest() {
                slot.deposits = slot.deposits.saturating_add(1);
            }
        });
    }

    /// Try to spend one retry; `false` when the budget is exhausted.
    pub fn withdraw(&self) -> bool {
        self.with_window(|window| {
            if self.available_in(window) == 0 {
                return false;
            }
            match window.newest() {
                Some(slot) => {
                    slot.withdrawals = slot.withdrawals.saturating_add(1);
                    true
                }
                None => false,
            }
        })
    }

    /// Retries currently available (for tests and metrics).
    pub fn available(&self) -> u64 {
        self.with_window(|window| self.available_in(window))
    }
}

impl Default for RetryBudget {
    /// Same as [`RetryBudget::default_budget`].
    fn default() -> Self {
        RetryBudget::default_budget()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn deposit(budget: &RetryBudget, n: usize) {
        for _ in 0..n {
            budget.deposit();
        }
    }

    fn drain(budget: &RetryBudget) -> usize {
        std::iter::from_fn(|| budget.withdraw().then_some(())).count()
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_allows_exactly_twenty_percent() {
        let budget = RetryBudget::new(secs(10), 0, 0.2).unwrap();
        assert!(!budget.withdraw());
        deposit(&budget, 100);
        assert_eq!(budget.available(), 20);
        for _ in 0..20 {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw());
        assert_eq!(budget.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_ttl() {
        let budget = RetryBudget::new(secs(10), 0, 0.2).unwrap();
        deposit(&budget, 100);
        assert!(budget.withdraw());
        advance(Duration::from_millis(9_999)).await;
        assert_eq!(budget.available(), 19);
        advance(Duration::from_millis(1)).await;
        assert_eq!(budget.available(), 0);
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides_slot_by_slot() {
        let budget = RetryBudget::new(secs(10), 0, 0.2).unwrap();
        deposit(&budget, 50); // slot 0
        advance(secs(5)).await;
        deposit(&budget, 50); // slot 5
        assert_eq!(drain(&budget), 20);
        advance(secs(5)).await; // slot 10: slot 0 gone, slot 5 kept
        assert_eq!(budget.available(), 0); // the 20 withdrawals (slot 5) still count
        deposit(&budget, 100);
        assert_eq!(budget.available(), 10); // (50 + 100) × 0.2 − 20
        advance(secs(5)).await; // slot 15: slot 5 gone
        assert_eq!(budget.available(), 20);
        advance(secs(100)).await;
        assert_eq!(budget.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn floor_without_deposits() {
        let budget = RetryBudget::new(secs(10), 1, 0.2).unwrap();
        assert_eq!(budget.available(), 10);
        // One withdrawal per second, at t = 0 s, 1 s, …, 9 s.
        for second in 0..10 {
            if second > 0 {
                advance(secs(1)).await;
            }
            assert!(budget.withdraw(), "{second}");
        }
        assert!(!budget.withdraw());
        advance(Duration::from_millis(999)).await; // t = 9.999 s: all ten still count
        assert!(!budget.withdraw());
        advance(Duration::from_millis(1)).await; // t = 10 s: the first one expired
        assert_eq!(budget.available(), 1);
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_state() {
        let a = RetryBudget::new(secs(10), 0, 0.5).unwrap();
        let b = a.clone();
        deposit(&a, 4);
        assert_eq!(b.available(), 2);
        assert!(b.withdraw());
        assert_eq!(a.available(), 1);
        assert!(a.withdraw());
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn defaults_and_rounding() {
        let budget = RetryBudget::default();
        assert_eq!(budget.available(), 100);
        deposit(&budget, 5);
        assert_eq!(budget.available(), 101);
        assert_eq!(RetryBudget::default_budget().available(), 100);
        let tenth = RetryBudget::new(secs(10), 0, 0.1).unwrap();
        deposit(&tenth, 9);
        assert_eq!(tenth.available(), 0);
        tenth.deposit();
        assert_eq!(tenth.available(), 1);
        // Fractional seconds count toward the floor: 3 × 2.5 s = 7.5 -> 7.
        let frac = RetryBudget::new(Duration::from_millis(2_500), 3, 0.0).unwrap();
        assert_eq!(frac.available(), 7);
        let generous = RetryBudget::new(secs(1), 0, 1000.0).unwrap();
        generous.deposit();
        assert_eq!(generous.available(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_parameters_do_not_panic() {
        let tiny = RetryBudget::new(Duration::from_nanos(1), u32::MAX, 1000.0).unwrap();
        tiny.deposit();
        assert!(tiny.withdraw());
        advance(secs(1)).await;
        let _ = tiny.available();
        let huge = RetryBudget::new(Duration::MAX, u32::MAX, 0.0).unwrap();
        assert_eq!(huge.available(), u64::MAX);
        assert!(huge.withdraw());
    }

    #[test]
    fn invalid_parameters() {
        assert_eq!(
            RetryBudget::new(Duration::ZERO, 10, 0.2).unwrap_err(),
            BudgetError::ZeroTtl
        );
        for ratio in [f32::NAN, -0.1, 1000.5, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(
                RetryBudget::new(secs(10), 10, ratio).unwrap_err(),
                BudgetError::BadRatio,
                "{ratio}"
            );
        }
        assert!(RetryBudget::new(secs(10), 0, 0.0).is_ok());
        assert!(!BudgetError::BadRatio.to_string().is_empty());
    }

    #[test]
    fn works_outside_a_runtime() {
        let budget = RetryBudget::new(secs(10), 0, 1.0).unwrap();
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }
}
