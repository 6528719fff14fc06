//! Time sources for the engine.
//!
//! The engine measures time as nanoseconds since a clock's own epoch (a `u64`), which keeps
//! stored state at 8 bytes per key. The default [`TokioClock`] follows
//! [`tokio::time::Instant`], so tests under `tokio::time::pause()` are exact, while reading
//! the CPU's cycle counter wherever tokio's clock cannot be paused (see [`TokioClock`]);
//! [`ManualClock`] is for tests and benchmarks that step time by hand.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

/// A monotonic time source: nanoseconds since this clock's epoch.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds elapsed since this clock's epoch. Must never decrease.
    fn now_nanos(&self) -> u64;
}

/// The default clock: tokio's time, read cheaply.
///
/// Its readings are always those of [`tokio::time::Instant`] since the clock was made, so
/// under `tokio::time::pause()` (and `#[tokio::test(start_paused = true)]`) every decision
/// is exact. Reading tokio's clock costs a system-clock read (`clock_gettime`, 25–65 ns on
/// virtual machines), so the clock reads it only where tokio's time *can* be paused: on a
/// `current_thread` runtime (the only flavor tokio lets pause). Everywhere else — tasks and
/// `block_on` of a `multi_thread` runtime (what servers run), or no runtime at all — tokio's
/// time is the monotonic system clock, and the clock reads the CPU's invariant cycle
/// counter instead (TSC on x86-64, `CNTVCT_EL0` on aarch64, calibrated against the
/// monotonic clock once per process by [`quanta`]; where there is no usable counter,
/// quanta falls back to the monotonic clock). Which source a task needs is cached per
/// thread by task id, so the check costs two thread-local reads.
///
/// Both sources measure from the same moment, the clock's construction. They agree to the
/// counter's calibration error (parts per million); only a store shared between a
/// `current_thread` runtime and other threads would see both, and GCRA stays correct
/// (never panics, never over-admits by more than that drift) if readings from two sources
/// interleave.
#[derive(Debug, Clone)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
    counter: quanta::Clock,
    counter_epoch: u64,
}

/// Where a reading comes from (see [`TokioClock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockSource {
    /// [`tokio::time::Instant`]: the current thread runs a runtime whose time can be paused.
    Tokio,
    /// The CPU's cycle counter: tokio's time cannot be paused here.
    Counter,
}

/// Slots of the per-thread task cache (a power of two).
const TASK_SLOTS: usize = 64;

thread_local! {
    /// Tasks recently seen on this thread and the source their readings need, in slots
    /// chosen by task id: a server thread interleaves many connection tasks, and
    /// remembering only the last one missed on nearly every request (each miss reads the
    /// runtime handle, cloning and dropping its `Arc`). Task ids are unique in the process
    /// and a task never changes runtime, so a hit is always valid.
    static TASKS: [Cell<Option<(tokio::task::Id, ClockSource)>>; TASK_SLOTS] =
        const { [const { Cell::new(None) }; TASK_SLOTS] };
}

/// The slot of task `id`: its numeric id (tokio hashes it as one `u64`), modulo the slots.
fn task_slot(id: tokio::task::Id) -> usize {
    struct Bits(u64);
    impl Hasher for Bits {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 ^= n;
        }
    }
    let mut bits = Bits(0);
    id.hash(&mut bits);
    bits.finish() as usize % TASK_SLOTS
}

impl ClockSource {
    /// The source a [`TokioClock`] reads on this thread, now.
    pub fn current() -> ClockSource {
        let task = tokio::task::try_id();
        if let Some(id) = task {
            if let Ok(Some((seen, source))) = TASKS.try_with(|t| t[task_slot(id)].get()) {
                if seen == id {
                    return source;
                }
            }
        }
        let source = match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                ClockSource::Counter
            }
            // current_thread (and any future flavor): its time may be paused.
            Ok(_) => ClockSource::Tokio,
            // No runtime: tokio's clock is the system clock.
            Err(_) => ClockSource::Counter,
        };
        if let Some(id) = task {
            let _ = TASKS.try_with(|t| t[task_slot(id)].set(Some((id, source))));
        }
        source
    }
}

impl TokioClock {
    /// A clock whose epoch is now. The first clock of a process calibrates the cycle
    /// counter (about a millisecond, once).
    pub fn new() -> Self {
        let counter = quanta::Clock::new();
        TokioClock {
            counter_epoch: counter.raw(),
            epoch: tokio::time::Instant::now(),
            counter,
        }
    }

    /// Nanoseconds since the epoch by tokio's clock, whatever the context.
    pub fn tokio_nanos(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds since the epoch by the cycle counter, whatever the context.
    pub fn counter_nanos(&self) -> u64 {
        self.counter
            .delta_as_nanos(self.counter_epoch, self.counter.raw())
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        match ClockSource::current() {
            ClockSource::Counter => self.counter_nanos(),
            ClockSource::Tokio => self.tokio_nanos(),
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now_nanos(), 1_500_000_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (saturating at `u64::MAX` ns).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        assert_eq!(clock.now_nanos(), 0);
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(clock.now_nanos(), 2_500_000_000);
    }

    #[tokio::test]
    async fn paused_mid_task_is_exact() {
        // Made before the pause, read in the same task before and after it.
        let clock = TokioClock::new();
        tokio::time::pause();
        let at_pause = clock.now_nanos();
        assert_eq!(clock.now_nanos(), at_pause);
        tokio::time::advance(Duration::from_nanos(1_000_000_007)).await;
        assert_eq!(clock.now_nanos(), at_pause + 1_000_000_007);
    }

    fn in_task(rt: &tokio::runtime::Runtime) -> ClockSource {
        rt.block_on(async { tokio::spawn(async { ClockSource::current() }).await })
            .expect("task")
    }

    #[test]
    fn source_follows_the_runtime_flavor() {
        assert_eq!(ClockSource::current(), ClockSource::Counter, "no runtime");
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        assert_eq!(
            multi.block_on(async { ClockSource::current() }),
            ClockSource::Counter
        );
        assert_eq!(in_task(&multi), ClockSource::Counter);
        drop(multi);
        // The same thread now runs a runtime whose time can be paused: no stale cache.
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert_eq!(
            current.block_on(async { ClockSource::current() }),
            ClockSource::Tokio
        );
        assert_eq!(in_task(&current), ClockSource::Tokio);
        assert_eq!(in_task(&current), ClockSource::Tokio, "cached");
        drop(current);
        assert_eq!(ClockSource::current(), ClockSource::Counter);
    }

    #[test]
    fn cached_sources_stay_per_task() {
        // Many tasks of a current_thread runtime, read in turn (more than the cache's
        // slots, so slots are reused), then tasks of a multi-thread runtime run from the
        // same thread: every reading has its own runtime's source.
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let sources = current.block_on(async {
            let tasks: Vec<_> = (0..3 * TASK_SLOTS)
                .map(|_| {
                    tokio::spawn(async {
                        let first = ClockSource::current();
                        tokio::task::yield_now().await;
                        (first, ClockSource::current())
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("task"));
            }
            out
        });
        assert!(sources
            .iter()
            .all(|&s| s == (ClockSource::Tokio, ClockSource::Tokio)));
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        for _ in 0..TASK_SLOTS {
            assert_eq!(in_task(&multi), ClockSource::Counter);
        }
        assert_eq!(in_task(&current), ClockSource::Tokio);
    }

    #[test]
    fn counter_readings_never_decrease() {
        let clock = TokioClock::new();
        let mut last = clock.counter_nanos();
        for _ in 0..100_000 {
            let now = clock.counter_nanos();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
    }

    #[test]
    fn counter_measures_nanoseconds() {
        // Real time (the counter is a hardware clock): the inner pair of counter readings
        // lies inside the tokio interval and the outer pair contains it, so preemption
        // only widens the slack. 0.1 % covers the calibration error (parts per million).
        let clock = TokioClock::new();
        let outer0 = clock.counter_nanos();
        let a0 = clock.tokio_nanos();
        let inner0 = clock.counter_nanos();
        std::thread::sleep(Duration::from_millis(20));
        let inner1 = clock.counter_nanos();
        let a1 = clock.tokio_nanos();
        let outer1 = clock.counter_nanos();
        let tokio = (a1 - a0) as f64;
        assert!(
            (inner1 - inner0) as f64 <= tokio * 1.001,
            "{inner0}..{inner1} vs {a0}..{a1}"
        );
        assert!(
            (outer1 - outer0) as f64 >= tokio * 0.999,
            "{outer0}..{outer1} vs {a0}..{a1}"
        );
    }

    #[test]
    fn manual_clock_is_shared_and_saturates() {
        let a = ManualClock::new();
        let b = a.clone();
        a.advance(Duration::from_nanos(7));
        assert_eq!(b.now_nanos(), 7);
        b.advance(Duration::MAX);
        assert_eq!(a.now_nanos(), u64::MAX);
    }
}
