//! Time for the engine: [`Timestamp`] and the clocks that read it.
//!
//! The engine measures time as whole nanoseconds since a clock's epoch ([`Timestamp`], a
//! `u64`), which keeps stored state at 8 bytes per key. Stores never read a clock: the
//! caller (the layer, once per request) reads one and passes the arrival time, so one
//! reading serves every limit of the request and its headers, and a test decides at any
//! time it likes. The default [`TokioClock`] follows [`tokio::time::Instant`] where
//! tokio's time can be paused, so tests under `tokio::time::pause()` are exact, and reads
//! the CPU's cycle counter elsewhere; [`ManualClock`] is for tests and benchmarks that
//! step time by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

/// An instant: whole nanoseconds since a [`Clock`]'s epoch.
///
/// Every [`TokioClock`] of a process shares one epoch, so timestamps from different
/// layers on one store agree. The engine keeps timestamps below 2^61 ns (73 years);
/// stores cap larger ones.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::clock::Timestamp;
///
/// let t = Timestamp::from_nanos(1_500_000_000);
/// assert_eq!(t, Timestamp::ZERO.saturating_add(Duration::from_millis(1500)));
/// assert_eq!(t.as_nanos(), 1_500_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The instant `by` later (saturating at `u64::MAX` ns).
    pub fn saturating_add(self, by: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos_of(by)))
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A monotonic time source.
pub trait Clock: Send + Sync + 'static {
    /// The current instant. Must never decrease.
    fn now(&self) -> Timestamp;
}

/// The default clock: tokio's time, read as cheaply as the CPU allows.
///
/// Where tokio's time can be paused — a `current_thread` runtime, the only flavor tokio
/// lets pause, as in `#[tokio::test(start_paused = true)]` — its readings are those of
/// [`tokio::time::Instant`], so paused-time tests are exact. Everywhere else (tasks and
/// `block_on` of a `multi_thread` runtime, what servers run, or no runtime at all) tokio's
/// time is the monotonic system clock, and the clock reads exactly what governor's
/// default clock reads, at the same cost: [`quanta`]'s counter (the TSC on x86-64 when
/// the CPU reports an invariant TSC and RDTSCP, `CNTVCT_EL0` on aarch64, else
/// `clock_gettime(CLOCK_MONOTONIC)`, which is what makes a reading's cost depend on the
/// machine: many VMs hide those CPUID bits).
///
/// The source is chosen at the clock's first reading, from the runtime that reading runs
/// on, and kept. A clock is meant for one layer, which runs on one runtime.
///
/// All `TokioClock`s of a process share one epoch, up to an hour before the first one was
/// made (so runtimes created, and paused, shortly before still read exact times), and
/// both sources measure from it. They agree to the counter's calibration error (parts per
/// million); GCRA stays correct (never panics, never over-admits by more than that
/// drift) if readings of two sources interleave on one store.
#[derive(Debug)]
pub struct TokioClock {
    /// A copy of the epoch's counter, so a reading touches only this clock's memory.
    counter: quanta::Clock,
    /// The source and, for the counter, the offset to the shared epoch, in one word so a
    /// reading makes one load and one test before quanta's: [`UNDECIDED`] until the first
    /// reading, [`TOKIO`], or the counter's offset ([`Epoch::offset`]).
    state: AtomicU64,
}

/// [`TokioClock::state`] before the first reading.
const UNDECIDED: u64 = u64::MAX;
/// [`TokioClock::state`] of a clock that reads tokio's time.
const TOKIO: u64 = u64::MAX - 1;

/// The process-wide epoch of [`TokioClock`]s, on both sources.
#[derive(Debug)]
struct Epoch {
    tokio: tokio::time::Instant,
    /// Added to tokio readings: the part of [`EPOCH_LEAD_NS`] `tokio` could not go back.
    tokio_shift: u64,
    counter: quanta::Clock,
    /// What the counter's nanoseconds (`delta_as_nanos(0, raw)`, governor's reading) exceed
    /// nanoseconds since the epoch by, modulo 2^64: subtracting it is the whole conversion.
    /// Never [`UNDECIDED`] or [`TOKIO`].
    offset: u64,
}

/// How far the shared epoch lies before the first [`TokioClock`] reading: readings start
/// an hour in, so a counter that runs slightly behind on another core (TSCs can, governor#299),
/// or a paused runtime's clock behind real time, reads a little earlier instead of wrapping
/// below zero to centuries ahead.
const EPOCH_LEAD_NS: u64 = 3_600_000_000_000;

/// The leads tried for tokio's epoch, longest first (see [`epoch`]).
const TOKIO_LEADS: [u64; 4] = [EPOCH_LEAD_NS, 60_000_000_000, 1_000_000_000, 0];

/// The counter's [`Epoch::offset`], given its reading at the epoch's real instant: readings
/// are then [`EPOCH_LEAD_NS`] at that instant, whatever the host's uptime.
fn counter_offset(at_real: u64) -> u64 {
    // Wrapping: the counter may start anywhere (VMs offset it), even below the lead.
    // Clamping moves readings at most 2 ns later and keeps the two marker values free.
    at_real.wrapping_sub(EPOCH_LEAD_NS).min(TOKIO - 1)
}

/// What tokio readings add when tokio's epoch could go back only `tokio_lead` ns: readings
/// are then [`EPOCH_LEAD_NS`] at the epoch's real instant too, so both sources agree.
fn tokio_shift(tokio_lead: u64) -> u64 {
    EPOCH_LEAD_NS - tokio_lead
}

fn epoch() -> &'static Epoch {
    static EPOCH: OnceLock<Epoch> = OnceLock::new();
    EPOCH.get_or_init(|| {
        // Real time, never a paused runtime's: every later reading is at or after it.
        let real = std::time::Instant::now();
        let counter = quanta::Clock::new();
        let at_real = counter.delta_as_nanos(0, counter.raw());
        let offset = counter_offset(at_real);
        // Tokio's epoch goes as far back as the host's uptime allows (`real` minus an hour
        // is no `Instant` on a host up for less), so a paused runtime's clock, frozen when
        // the runtime was built, is not before it; readings add the part of the lead that
        // could not be taken.
        let (tokio_lead, tokio_epoch) = TOKIO_LEADS
            .iter()
            .find_map(|&lead| Some((lead, real.checked_sub(Duration::from_nanos(lead))?)))
            .unwrap_or((0, real));
        Epoch {
            tokio: tokio::time::Instant::from_std(tokio_epoch),
            tokio_shift: tokio_shift(tokio_lead),
            counter,
            offset,
        }
    })
}

/// Where a [`TokioClock`]'s readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClockSource {
    /// [`tokio::time::Instant`]: the current thread runs a runtime whose time can be paused.
    Tokio,
    /// The CPU's cycle counter: tokio's time cannot be paused here.
    Counter,
}

impl ClockSource {
    /// The source tokio's time needs on this thread, now.
    pub(crate) fn current() -> ClockSource {
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                ClockSource::Counter
            }
            // current_thread (and any future flavor): its time may be paused.
            Ok(_) => ClockSource::Tokio,
            // No runtime: tokio's clock is the system clock.
            Err(_) => ClockSource::Counter,
        }
    }
}

impl TokioClock {
    /// A clock on the process's shared epoch. The first clock of a process calibrates the
    /// cycle counter (about a millisecond, once).
    pub fn new() -> Self {
        TokioClock {
            counter: epoch().counter.clone(),
            state: AtomicU64::new(UNDECIDED),
        }
    }

    /// The source of this clock's readings, once it has read.
    #[cfg(test)]
    pub(crate) fn source(&self) -> Option<ClockSource> {
        match self.state.load(Ordering::Relaxed) {
            UNDECIDED => None,
            TOKIO => Some(ClockSource::Tokio),
            _ => Some(ClockSource::Counter),
        }
    }

    /// Nanoseconds since the epoch by tokio's clock, whatever the context.
    pub(crate) fn tokio_nanos(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(epoch().tokio);
        nanos_of(elapsed).saturating_add(epoch().tokio_shift)
    }

    /// Nanoseconds since the epoch by the cycle counter, whatever the context.
    #[cfg(test)]
    pub(crate) fn counter_nanos(&self) -> u64 {
        self.counter_minus(epoch().offset)
    }

    #[inline]
    fn counter_minus(&self, offset: u64) -> u64 {
        let c = &self.counter;
        c.delta_as_nanos(0, c.raw()).wrapping_sub(offset)
    }

    /// Tokio's time, or the first reading: picks the source (the first reading of any
    /// thread wins) and reads it.
    #[cold]
    fn slow_reading(&self) -> Timestamp {
        if self.state.load(Ordering::Relaxed) == UNDECIDED {
            let state = match ClockSource::current() {
                ClockSource::Tokio => TOKIO,
                ClockSource::Counter => epoch().offset,
            };
            let _ =
                self.state
                    .compare_exchange(UNDECIDED, state, Ordering::Relaxed, Ordering::Relaxed);
        }
        match self.state.load(Ordering::Relaxed) {
            TOKIO => Timestamp(self.tokio_nanos()),
            offset => Timestamp(self.counter_minus(offset)),
        }
    }
}

impl Clone for TokioClock {
    /// A clock with the same source (or, before the first reading, one that picks its own).
    fn clone(&self) -> Self {
        TokioClock {
            counter: self.counter.clone(),
            state: AtomicU64::new(self.state.load(Ordering::Relaxed)),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Timestamp {
        // The trick: for the counter, `state` is the offset itself, so the hot path is
        // governor's reading minus one word, behind one test (Relaxed: a plain load; the
        // offset is derived from the immutable epoch, so no ordering is needed).
        match self.state.load(Ordering::Relaxed) {
            UNDECIDED | TOKIO => self.slow_reading(),
            offset => Timestamp(self.counter_minus(offset)),
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::clock::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now(), Timestamp::from_nanos(1_500_000_000));
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
        let by = nanos_of(by);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.nanos.load(Ordering::Acquire))
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(clock.now().as_nanos() - start.as_nanos(), 2_500_000_000);
    }

    #[test]
    fn a_host_up_for_under_a_second_reads_no_wrapped_time() {
        // Uptime too short for any tokio lead, and a counter that has barely started.
        let (at_real, tokio_lead) = (500, 0);
        let offset = counter_offset(at_real);
        // Another core's counter, 1 ns behind: a little earlier, not centuries ahead.
        assert_eq!(499u64.wrapping_sub(offset), EPOCH_LEAD_NS - 1);
        assert_eq!(at_real.wrapping_sub(offset), EPOCH_LEAD_NS);
        // Tokio's reading at the same instant (0 ns after its epoch) agrees.
        assert_eq!(tokio_shift(tokio_lead), EPOCH_LEAD_NS);
    }

    #[test]
    fn readings_start_an_hour_into_the_epoch() {
        // A counter running slightly behind on another core then reads a little earlier,
        // never a wrapped value centuries ahead.
        let clock = TokioClock::new();
        let counter = clock.counter_nanos();
        assert!((EPOCH_LEAD_NS..EPOCH_LEAD_NS * 1000).contains(&counter));
        let tokio = clock.tokio_nanos();
        assert!((EPOCH_LEAD_NS..EPOCH_LEAD_NS * 1000).contains(&tokio));
    }

    #[test]
    fn clocks_share_one_epoch() {
        // Read in one task: both clocks read tokio's paused time, at the same instant.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let a = TokioClock::new();
        rt.block_on(async {
            let b = TokioClock::new();
            let start = a.now();
            assert_eq!(b.now(), start);
            tokio::time::advance(Duration::from_nanos(1_000_000_007)).await;
            assert_eq!(b.now().as_nanos(), start.as_nanos() + 1_000_000_007);
            assert_eq!(a.now(), b.now());
        });
    }

    #[tokio::test]
    async fn paused_mid_task_is_exact() {
        // Made before the pause, read in the same task before and after it.
        let clock = TokioClock::new();
        tokio::time::pause();
        let at_pause = clock.now().as_nanos();
        assert_eq!(clock.now().as_nanos(), at_pause);
        tokio::time::advance(Duration::from_nanos(1_000_000_007)).await;
        assert_eq!(clock.now().as_nanos(), at_pause + 1_000_000_007);
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
        assert_eq!(in_task(&current), ClockSource::Tokio, "again");
        drop(current);
        assert_eq!(ClockSource::current(), ClockSource::Counter);
    }

    #[test]
    fn a_clock_keeps_the_source_of_its_first_reading() {
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let paused = TokioClock::new();
        current.block_on(async { paused.now() });
        let served = TokioClock::new();
        multi.block_on(async { served.now() });
        let outside = TokioClock::new();
        outside.now();
        assert_eq!(paused.source(), Some(ClockSource::Tokio));
        assert_eq!(served.source(), Some(ClockSource::Counter));
        assert_eq!(outside.source(), Some(ClockSource::Counter));
        multi.block_on(async { paused.now() });
        current.block_on(async { served.now() });
        assert_eq!(paused.source(), Some(ClockSource::Tokio));
        assert_eq!(served.source(), Some(ClockSource::Counter));
    }

    #[test]
    fn counter_clocks_share_one_epoch() {
        // Interleaved on one thread: the other clock's reading lies between two of one's.
        let (a, b) = (TokioClock::new(), TokioClock::new());
        let (a0, b0, a1) = (a.now(), b.now(), a.now());
        assert_eq!(b.source(), Some(ClockSource::Counter));
        assert!(a0 <= b0 && b0 <= a1, "{a0:?} {b0:?} {a1:?}");
        assert_eq!(b.clone().source(), Some(ClockSource::Counter));
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
        assert_eq!(b.now(), Timestamp::from_nanos(7));
        b.advance(Duration::MAX);
        assert_eq!(a.now().as_nanos(), u64::MAX);
    }
}
